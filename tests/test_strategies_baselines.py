"""The VAAL paper's baselines: core-set, MC dropout, ensembles, QBC and suggestive annotation."""

import json
import math
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from segal.data.base import ClassSet, Dataset
from segal.device import Compute
from segal.errors import UserError
from segal.strategies import STRATEGIES
from segal.strategies.context import build_context
from segal.strategies.kcenter import kcenter_greedy
from segal.strategies.mc_dropout import mc_stats
from segal.strategies.suggestive import greedy_max_cover
from tests.tiny import TinySeg

# ---------------------------------------------------------------------- tiny task networks and data


class TinyClsData(Dataset):
    task = "classification"
    classes = ClassSet(("a", "b", "c"), ((0, 0, 0), (1, 1, 1), (2, 2, 2)))

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def image_id(self, i):
        return f"cls_{i:03d}"

    def load_image(self, i):
        rng = np.random.default_rng(i)
        return rng.normal(60 + 50 * (i % 3), 30, (16, 16, 3)).clip(0, 255).astype(np.uint8)

    def load_target(self, i):
        return i % 3


class TinyNet(nn.Module):
    """Conv + BN (+ dropout) + head; segmentation keeps the map, classification pools it."""

    def __init__(self, segmentation: bool, dropout: float = 0.3, classes: int = 3):
        super().__init__()
        self.segmentation = segmentation
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        if segmentation:
            self.drop = nn.Dropout2d(dropout) if dropout else nn.Identity()
            self.head = nn.Conv2d(8, classes, 1)
        else:
            self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
            self.head = nn.Linear(8, classes)

    def embed(self, x):
        return self.body(x).mean((2, 3))

    def forward(self, x):
        if self.segmentation:
            return self.head(self.drop(self.body(x)))
        return self.head(self.drop(self.embed(x)))


def make_ctx(task, workdir, *, budget=4, seed=0, dropout=0.3, n=24):
    seg = task == "segmentation"
    pool = TinySeg(n, salt=0, size=16) if seg else TinyClsData(n)
    labeled = np.arange(0, n, 4)
    calls = []

    def build_model():
        torch.manual_seed(5)
        return TinyNet(seg, dropout)

    def train_model(model, indices, member_seed):
        """A stand-in for training: a perturbation that depends on the images and the seed."""
        calls.append((member_seed, tuple(int(i) for i in indices)))
        g = torch.Generator().manual_seed(member_seed * 7919 + int(np.sum(indices)))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5 * torch.randn(p.shape, generator=g))
        return model

    model = train_model(build_model(), labeled, 99)
    calls.clear()
    ctx = build_context(
        pool, labeled, budget, compute=Compute(image_size=[16, 16], batch_size=8), num_classes=3, seed=seed,
        model=model.eval(), build_model=build_model, train_model=train_model, workdir=workdir,
    )
    return ctx, calls


FAST_PARAMS = {
    "coreset": {"chunk": 5},
    "mc_dropout": {"T": 3},
    "ensemble_varratio": {"M": 3},
    "qbc": {"M": 3},
    "suggestive_annotation": {"K": 3},
}


def strategy(name, **params):
    cls = STRATEGIES.get(name)
    return cls(cls.Params(**{**FAST_PARAMS[name], **params}))


# (every registered strategy, both tasks: the contract in tests/test_contracts.py)


# ---------------------------------------------------------------------- core-set


def brute_kcenter(pool, centres, k, first=0):
    allp = np.concatenate([pool, centres])
    dist = np.sqrt(((allp[:, None] - allp[None]) ** 2).sum(-1))  # the O(N²) matrix
    n = len(pool)
    nearest = dist[:n, n:].min(1) if len(centres) else np.full(n, np.inf)
    chosen = []
    for step in range(k):
        d = nearest.copy()
        d[chosen] = -np.inf
        i = first if step == 0 and not len(centres) else int(np.argmax(d))
        chosen.append(i)
        nearest = np.minimum(nearest, dist[:n, i])
    return chosen


@pytest.mark.parametrize("n_labeled", [0, 7])
def test_kcenter_matches_brute_force(n_labeled):
    rng = np.random.default_rng(3)
    pool, centres = rng.normal(size=(80, 2)), rng.normal(size=(n_labeled, 2))
    expected = brute_kcenter(pool, centres, 12, first=5)
    for chunk in (3, 16, 1000):
        got, dists, before, after = kcenter_greedy(
            torch.from_numpy(pool), torch.from_numpy(centres), 12, chunk=chunk, first=5
        )
        assert got == expected
    rest = np.delete(np.arange(80), got)
    radius = np.sqrt(((pool[rest, None] - np.concatenate([centres, pool[got]])[None]) ** 2).sum(-1)).min(1).max()
    assert after == pytest.approx(radius)
    if n_labeled:
        assert before == pytest.approx(np.sqrt(((pool[:, None] - centres[None]) ** 2).sum(-1)).min(1).max())
        assert after < before


def test_kcenter_never_repeats_a_pick_among_duplicates():
    pool = torch.tensor([[0.0, 0.0], [1.0, 0.0]]).repeat(4, 1)  # two distinct points, four copies each
    got, _, _, after = kcenter_greedy(pool, pool[:0], 6, chunk=3, first=0)
    assert got == [0, 1, 2, 3, 4, 5] and after == 0.0


class LargestTensor(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_kcenter_never_builds_a_pool_sized_matrix():
    n, chunk = 400, 16
    pool, centres = torch.randn(n, 2), torch.randn(60, 2)
    with LargestTensor() as probe:
        kcenter_greedy(pool, centres, 10, chunk=chunk)
    assert 0 < probe.largest <= max(n, chunk * chunk) < n * 60


# ---------------------------------------------------------------------- MC dropout and committee statistics


def test_bald_and_variation_ratio_hand_values():
    # two pixels of one image: the passes agree on pixel 0 and split 2:1 on pixel 1 (B×C×H×W = 1×2×1×2)
    passes = [torch.tensor([[[[0.9, 0.9]], [[0.1, 0.1]]]]),
              torch.tensor([[[[0.9, 0.6]], [[0.1, 0.4]]]]),
              torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])]
    stats = mc_stats(passes)

    def h(p):
        return -sum(q * math.log(q) for q in p if q > 0)

    mean1 = [1.7 / 3, 1.3 / 3]
    bald1 = h(mean1) - (h([0.9, 0.1]) + h([0.6, 0.4]) + h([0.2, 0.8])) / 3
    assert stats.bald()[0, 0].tolist() == pytest.approx([0.0, bald1], abs=1e-6)
    assert stats.variation_ratio()[0, 0].tolist() == pytest.approx([0.0, 1 / 3])
    assert stats.vote_entropy()[0, 0].tolist() == pytest.approx([0.0, h([2 / 3, 1 / 3])], abs=1e-6)
    assert stats.predictive_entropy()[0, 0, 1].item() == pytest.approx(h(mean1), abs=1e-6)
    # classification: complete disagreement of two confident passes
    two = mc_stats([torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])])
    assert two.bald().item() == pytest.approx(math.log(2), abs=1e-6)
    assert two.variation_ratio().item() == pytest.approx(0.5)


def test_bald_is_zero_when_passes_agree():
    p = torch.softmax(torch.randn(4, 5, 3, 3), dim=1)
    stats = mc_stats([p.clone() for _ in range(6)])
    assert stats.bald().abs().max().item() < 1e-5
    assert stats.variation_ratio().abs().max().item() == 0


def test_mean_kl_and_variance_match_direct_formulas():
    from segal.strategies.scoring import SampleStats

    ps = torch.softmax(torch.randn(4, 2, 3, 5), dim=2)  # 4 members, B=2, C=3, 5 pixels
    stats = SampleStats(variance=True)
    for p in ps:
        stats.add(p)
    mean = ps.mean(0)
    kl = (ps * (ps.log() - mean.log())).sum(2).mean(0)
    assert torch.allclose(stats.mean_kl_to_consensus(), kl, atol=1e-5)
    assert torch.allclose(stats.variance(), ps.var(0, unbiased=False).mean(1), atol=1e-6)


def test_mc_dropout_leaves_model_in_eval_mode(tmp_path):
    ctx, _ = make_ctx("segmentation", tmp_path)
    ctx.model.train()
    strategy("mc_dropout").select(ctx)
    assert not any(m.training for m in ctx.model.modules())


def test_mc_dropout_passes_differ_but_batchnorm_is_frozen(tmp_path):
    ctx, _ = make_ctx("classification", tmp_path)
    bn = ctx.model.body[1]
    before = bn.running_mean.clone()
    sel = strategy("mc_dropout", score="var_ratio", T=8).select(ctx)
    assert torch.equal(bn.running_mean, before)  # BN never ran in train mode
    assert sel.diagnostics["pool_score_mean"] > 0  # dropout was active: the passes disagreed somewhere


def test_mc_dropout_without_dropout_is_user_error(tmp_path):
    ctx, _ = make_ctx("segmentation", tmp_path, dropout=0.0)
    with pytest.raises(UserError, match=r"model\.options\.dropout"):
        strategy("mc_dropout").select(ctx)


# ---------------------------------------------------------------------- committees: checkpoints


@pytest.mark.parametrize(("name", "trained"), [("ensemble_varratio", 2), ("qbc", 3), ("suggestive_annotation", 3)])
def test_committee_checkpoints_are_reused(name, trained, tmp_path):
    ctx, calls = make_ctx("classification", tmp_path)
    first = strategy(name).select(ctx)
    assert len(calls) == trained
    assert len({c[0] for c in calls}) == trained  # distinct seeds
    if name != "ensemble_varratio":  # bootstraps: resampled with replacement, so the members differ
        assert len({c[1] for c in calls}) == trained and all(len(c[1]) == len(ctx.labeled) for c in calls)
    ctx2, calls2 = make_ctx("classification", tmp_path)  # same cycle dir: a resume
    second = strategy(name).select(ctx2)
    assert calls2 == []
    assert np.array_equal(first.indices, second.indices)


def test_stale_member_checkpoint_is_retrained(tmp_path):
    ctx, calls = make_ctx("classification", tmp_path)
    strategy("qbc").select(ctx)
    ctx2, calls2 = make_ctx("classification", tmp_path, seed=1)  # another seed: other bootstraps
    strategy("qbc").select(ctx2)
    assert len(calls2) == 3


# ---------------------------------------------------------------------- suggestive annotation: greedy cover


def brute_cover(sim, k):
    chosen = []
    for _ in range(k):
        values = [-np.inf if s in chosen else sim[chosen + [s]].max(0).sum() for s in range(len(sim))]
        chosen.append(int(np.argmax(values)))
    return chosen, sim[chosen].max(0).sum()


def test_greedy_max_cover_matches_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(9, 4)), rng.normal(size=(30, 4))
    a[6] = a[2]  # an exact duplicate: its gain drops to 0 once its twin is chosen
    sim = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    for k in (1, 4, 9):
        expected, value = brute_cover(sim, k)
        got, gains, cover = greedy_max_cover(torch.from_numpy(sim), k)
        assert got == expected
        assert cover == pytest.approx(value)
        assert all(g1 >= g2 - 1e-12 for g1, g2 in zip(gains, gains[1:], strict=False))  # submodular


def test_suggestive_candidates_are_the_most_uncertain(tmp_path):
    ctx, _ = make_ctx("segmentation", tmp_path, budget=3)
    sel = strategy("suggestive_annotation", candidates_factor=1.0).select(ctx)  # no room for representativeness
    d = sel.diagnostics
    assert d["candidates"] == 3
    assert min(sel.scores) >= d["pool_uncertainty_mean"]


# ---------------------------------------------------------------------- the real loop


@pytest.mark.slow
@pytest.mark.parametrize(("name", "params", "options"), [
    ("coreset", {}, {}),
    ("mc_dropout", {"T": 3}, {"dropout": 0.2}),
    ("ensemble_varratio", {"M": 2}, {}),
    ("qbc", {"M": 2}, {}),
    ("suggestive_annotation", {"K": 2}, {}),
])
def test_loop_runs_each_baseline(name, params, options, tmp_path):
    import tests.tiny  # noqa: F401  (registers tiny-seg)
    from segal.config import recipe_from_dict
    from segal.loop import ActiveLoop
    from segal.runs import start_run
    from tests.tiny import tiny_recipe

    data = tiny_recipe(tmp_path, strategy=name, strategy_params=params, cycles=1)
    data["model"]["options"] = options
    run = start_run(recipe_from_dict(data), "<test>")
    ActiveLoop(run).run_loop()
    queries = json.loads((run.cycle_dir(0) / "queries.json").read_text())
    assert len(set(queries["indices"])) == 4 and queries["strategy"] == name
    members = sorted(p.name for p in run.cycle_dir(0).glob("*/member*.pt"))
    assert len(members) == {"ensemble_varratio": 1, "qbc": 2, "suggestive_annotation": 2}.get(name, 0)


# ---------------------------------------------------------------------- torchrun: ranks agree with one process

WORKER = """
import json, sys
from pathlib import Path
import torch
from segal import distributed as dist
from tests.test_strategies_baselines import make_ctx, strategy
out = Path(sys.argv[1])
dist.init_from_env(torch.device("cpu"))
result = {}
for name in ("coreset", "ensemble_varratio", "qbc", "suggestive_annotation"):
    for task in ("segmentation", "classification"):
        ctx, _ = make_ctx(task, out / f"work{dist.world()}" / name / task, budget=5)
        result[f"{name}/{task}"] = strategy(name).select(ctx).indices.tolist()
(out / f"rank{dist.rank()}_of{dist.world()}.json").write_text(json.dumps(result))
if dist.is_distributed():
    torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
def test_torchrun_ranks_select_what_one_process_selects(tmp_path):
    # tests.launch: a hang fails the test with the ranks' output instead of stalling it
    from tests.launch import failure_report, run_workers, torchrun_command

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    single = run_workers([sys.executable, str(script), str(tmp_path)])
    assert single.returncode == 0, single.stderr[-2000:]
    run = run_workers(torchrun_command(str(script), str(tmp_path)))
    assert run.returncode == 0, failure_report(run)
    reference = json.loads((tmp_path / "rank0_of1.json").read_text())
    assert json.loads((tmp_path / "rank0_of2.json").read_text()) == reference
    assert json.loads((tmp_path / "rank1_of2.json").read_text()) == reference
    assert (tmp_path / "work2" / "qbc" / "segmentation" / "qbc" / "member0.pt").exists()


def test_scores_of_looks_up_any_order():
    from segal.strategies.base import scores_of

    indices = np.array([7, 2, 9, 4])
    scores = np.array([0.7, 0.2, 0.9, 0.4])
    assert scores_of(np.array([9, 2]), indices, scores) == [0.9, 0.2]
    assert scores_of(np.array([], dtype=np.int64), indices, scores) == []
