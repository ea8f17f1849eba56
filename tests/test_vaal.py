"""VAAL: losses against hand computation, a discriminator that separates two image distributions,
determinism, checkpoint reuse, and the loop running VAAL with no task network consulted."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segal.data.base import ClassSet, Dataset
from segal.device import Compute
from segal.metrics import auroc
from segal.models.vaal import (
    VAE,
    Discriminator,
    adversarial_loss,
    discriminator_loss,
    kl_divergence,
    vae_loss,
)
from segal.strategies import STRATEGIES
from segal.strategies.context import build_context

C32B8 = Compute(image_size=[32, 32], batch_size=8)


# ---------------------------------------------------------------- losses, by hand
def test_kl_reductions_by_hand():
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # per element: -0.5 * (1 + logvar - mu^2 - exp(logvar))
    per = [[0.5, -0.5 * (1 + math.log(2) - 2)], [0.0, 2.0]]
    assert kl_divergence(mu, logvar, "sum").item() == pytest.approx(sum(map(sum, per)))
    assert kl_divergence(mu, logvar, "mean").item() == pytest.approx(sum(map(sum, per)) / 2)


def test_bce_modes_agree_where_both_are_exact_and_paper_clamps():
    logits = torch.tensor([2.0, -1.0])
    expected_ones = -(math.log(1 / (1 + math.exp(-2))) + math.log(1 / (1 + math.exp(1)))) / 2
    expected_zeros = -(math.log(1 - 1 / (1 + math.exp(-2))) + math.log(1 - 1 / (1 + math.exp(1)))) / 2
    for mode in ("paper", "fixed"):
        a = adversarial_loss(logits, logits, mode).item()
        d = discriminator_loss(logits, logits, mode).item()
        assert a == pytest.approx(2 * expected_ones, rel=1e-5)
        assert d == pytest.approx(expected_ones + expected_zeros, rel=1e-5)
    # a saturated logit: BCELoss on a sigmoid clamps log at -100, BCEWithLogits stays exact
    big = torch.tensor([200.0])
    assert discriminator_loss(big, big, "paper").item() == pytest.approx(100.0)
    assert discriminator_loss(big, big, "fixed").item() == pytest.approx(200.0, rel=1e-4)


def test_vae_loss_is_mse_plus_beta_kl():
    x = torch.zeros(2, 3, 2, 2)
    recon = torch.ones(2, 3, 2, 2) * 0.5
    mu, logvar = torch.ones(2, 4), torch.zeros(2, 4)  # KL per element 0.5
    assert vae_loss(x, recon, mu, logvar, 2.0, "sum").item() == pytest.approx(0.25 + 2.0 * 4.0)
    assert vae_loss(x, recon, mu, logvar, 2.0, "mean").item() == pytest.approx(0.25 + 2.0 * 2.0)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_vae_shapes_follow_the_authors_at_32_and_generalise(size):
    vae = VAE(z_dim=8, size=size, width=8)
    recon, z, mu, logvar = vae(torch.randn(2, 3, size, size))
    assert recon.shape == (2, 3, size, size) and mu.shape == z.shape == logvar.shape == (2, 8)
    assert vae.fc_mu.in_features == 64 * (size // 16) ** 2
    paper = VAE(z_dim=32, size=32)  # the authors' 32×32 VAE: 1024×2×2 → z, z → 1024×4×4
    assert paper.fc_mu.in_features == 4096 and paper.fc_dec.out_features == 1024 * 16
    assert len([m for m in Discriminator(32, 5).modules() if isinstance(m, torch.nn.Linear)]) == 5
    with pytest.raises(ValueError):
        VAE(size=40)


def test_auroc_by_hand_with_ties():
    assert auroc([0.9, 0.8], [0.1, 0.8]) == pytest.approx(3.5 / 4)
    assert auroc([1, 2, 3], [4, 5]) == 0.0
    assert math.isnan(auroc([], [1.0]))


# ---------------------------------------------------------------- two visibly different distributions
class TwoLooks(Dataset):
    """Index < split: dark, textured 'street' images; index >= split: bright, smooth 'snow' images."""

    task = "classification"
    classes = ClassSet(("a", "b"), ((0, 0, 0), (255, 255, 255)))

    def __init__(self, n: int, split: int):
        self.n, self.split = n, split

    def __len__(self):
        return self.n

    def image_id(self, i):
        return f"img{i:03d}"

    def load_image(self, i):
        rng = np.random.default_rng(i)
        if i < self.split:
            return rng.normal(60, 30, (32, 32, 3)).clip(0, 255).astype(np.uint8)
        return np.full((32, 32, 3), 200, np.uint8) + rng.integers(0, 20, (32, 32, 3), dtype=np.uint8)

    def load_target(self, i):
        return int(i >= self.split)


def _vaal(**params):
    base = dict(image_size=32, z_dim=8, width=8, batch_size=8, steps=60, holdout=0.0, auroc_min=1)  # no cross-fit
    return STRATEGIES.get("vaal")(STRATEGIES.get("vaal").Params(**(base | params)))


def _context(pool, labeled, unlabeled, budget, workdir):
    return build_context(pool, labeled, budget, unlabeled=unlabeled, compute=C32B8, num_classes=2,
                         seed=3, workdir=workdir)


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_discriminator_separates_distributions_and_vaal_picks_the_unseen_one(tmp_path, seed):
    # pool: 0..47 look A, 48..95 look B; labeled = 24 A; unlabeled = 4 A + 24 B; the rest never seen.
    # No adversary and a small β: this checks that the discriminator, the scoring and the selection
    # work, on a claim that holds by a wide margin.  With the adversarial game on (λ = 0.1, β = 1)
    # the held-out AUROC after 100 steps is a race between the discriminator and the VAE (and the
    # KL's pull of μ to 0): 0.36–0.96 over seeds, and for one seed 0.77–0.96 depending only on the
    # processor's float kernels (AVX2 vs AVX-512), which is why it failed on other machines.  Those
    # numbers, one thread, conftest's pin: measured by H4 on issue 13.
    pool = TwoLooks(96, split=48)
    labeled, unlabeled = np.arange(24), np.r_[np.arange(24, 28), np.arange(48, 72)]
    ctx = build_context(pool, labeled, 8, unlabeled=unlabeled, compute=Compute(image_size=[32, 32]), num_classes=2,
                        seed=seed, workdir=tmp_path)
    strategy = _vaal(steps=100, batch_size=16, adversary_weight=0.0, beta=0.1)
    selection = strategy.select(ctx)
    # 24 of the 28 unlabeled images are look B: random picks 8 of them with p ≈ 0.25; VAAL picked 8 of 8
    # B on each of 20 seeds, on AVX-512 and on AVX2 kernels alike
    assert len(set(selection.indices.tolist())) == 8 and (selection.indices >= 48).sum() >= 7
    vae, disc = strategy.build()
    strategy._load(tmp_path / "vaal.pt", vae, disc)
    # images the VAE never saw: 28..47 (look A) vs 72..95 (look B)
    _, s_a = strategy.score(ctx, vae, disc, np.arange(28, 48))
    _, s_b = strategy.score(ctx, vae, disc, np.arange(72, 96))
    assert auroc(s_a, s_b) > 0.9  # 20 seeds × {AVX-512, AVX2}: min 1.0, mean 1.0
    d = selection.diagnostics
    assert d["mode"] == "fixed" and d["kl_reduction"] == "mean" and d["auroc_on"] == "train" and d["steps"] == 100
    # on its training pools, where 4 of the 28 "unlabeled" are look A (≈ 0.93 if only the look counts):
    assert d["auroc"] > 0.8  # 20 seeds × {AVX-512, AVX2}: min 0.89, mean 0.94
    assert sum(d["pool_score_histogram"]["counts"]) == len(unlabeled)


def test_paper_mode_uses_the_authors_arithmetic(tmp_path):
    pool = TwoLooks(40, split=20)
    ctx = build_context(pool, np.arange(10), 4, compute=C32B8, num_classes=2, seed=0, workdir=tmp_path)
    sel = _vaal(mode="paper", steps=5).select(ctx)
    assert sel.diagnostics["mode"] == "paper" and sel.diagnostics["kl_reduction"] == "sum"
    assert len(set(sel.indices.tolist())) == 4


def test_selection_is_deterministic_and_resumes_from_checkpoint(tmp_path, monkeypatch):
    pool = TwoLooks(60, split=40)
    labeled, unlabeled = np.arange(0, 60, 3), np.setdiff1d(np.arange(60), np.arange(0, 60, 3))
    a = _vaal(holdout=0.2).select(_context(pool, labeled, unlabeled, 6, tmp_path / "a"))
    b = _vaal(holdout=0.2).select(_context(pool, labeled, unlabeled, 6, tmp_path / "b"))
    assert a.indices.tolist() == b.indices.tolist()
    assert np.allclose(a.scores, b.scores)
    assert a.diagnostics["auroc_on"] == "holdout" and a.diagnostics["auroc_labeled"] == 4

    strategy = _vaal(holdout=0.2)
    monkeypatch.setattr(strategy, "train", lambda *args: pytest.fail("retrained despite a checkpoint"))
    again = strategy.select(_context(pool, labeled, unlabeled, 6, tmp_path / "a"))
    assert again.indices.tolist() == a.indices.tolist() and again.diagnostics["resumed_from_checkpoint"]


def test_corrupt_or_foreign_checkpoint_is_retrained_not_trusted(tmp_path):
    pool = TwoLooks(30, split=15)
    ctx = _context(pool, np.arange(10), np.arange(10, 30), 3, tmp_path)
    (tmp_path / "vaal.pt").write_bytes(b"torn write")
    first = _vaal(steps=3).select(ctx)
    assert "resumed_from_checkpoint" not in first.diagnostics
    assert _vaal(steps=3, z_dim=4).select(ctx).diagnostics.get("resumed_from_checkpoint") is None


def test_warm_start_loads_the_previous_cycle(tmp_path):
    pool = TwoLooks(30, split=15)
    (tmp_path / "0").mkdir()
    (tmp_path / "1").mkdir()
    ctx0 = _context(pool, np.arange(10), np.arange(10, 30), 3, tmp_path / "0")
    _vaal(steps=3, warm_start=True).select(ctx0)
    ctx1 = build_context(pool, np.arange(13), 3, compute=C32B8, num_classes=2, seed=3, cycle=1,
                         workdir=tmp_path / "1")
    assert _vaal(steps=3, warm_start=True).select(ctx1).diagnostics["warm_started"] is True
    cold = build_context(pool, np.arange(13), 3, compute=C32B8, num_classes=2, seed=3, cycle=1,
                         workdir=tmp_path / "cold")
    assert _vaal(steps=3).select(cold).diagnostics["warm_started"] is False


def test_scoring_modes_fixed_is_batch_independent_paper_is_not(tmp_path):
    pool = TwoLooks(40, split=20)
    ctx = _context(pool, np.arange(10), np.arange(10, 40), 4, tmp_path)
    for mode, independent in (("fixed", True), ("paper", False)):
        strategy = _vaal(mode=mode)
        vae, disc = strategy.build()
        strategy.train(ctx, vae, disc, np.arange(10), np.arange(10, 40))
        strategy.params.batch_size = 4
        _, small = strategy.score(ctx, vae, disc, np.arange(10, 40))
        strategy.params.batch_size = 30
        _, large = strategy.score(ctx, vae, disc, np.arange(10, 40))
        assert np.allclose(small, large, atol=1e-5) == independent


def test_diversity_step_picks_spread_candidates(tmp_path):
    pool = TwoLooks(60, split=30)
    ctx = _context(pool, np.arange(10), np.arange(10, 60), 5, tmp_path)
    sel = _vaal(diversity_factor=3).select(ctx)
    assert len(set(sel.indices.tolist())) == 5 and np.isin(sel.indices, ctx.unlabeled).all()
    plain = _vaal().select(_context(pool, np.arange(10), np.arange(10, 60), 15, tmp_path / "p"))
    # the diverse picks come from the 15 lowest-scored candidates
    assert set(sel.indices.tolist()) <= set(plain.indices.tolist())


def test_bad_params_are_user_errors(tmp_path):
    from segal.errors import UserError

    pool = TwoLooks(20, split=10)
    ctx = _context(pool, np.arange(5), np.arange(5, 20), 2, tmp_path)
    for bad in ({"image_size": 40}, {"holdout": 1.0}, {"diversity_factor": 1}):
        with pytest.raises(UserError):
            _vaal(**bad).select(ctx)


def test_loop_runs_vaal_without_consulting_the_task_network(tmp_path, monkeypatch):
    import json

    from segal.config import Recipe, from_dict
    from segal.loop import ActiveLoop
    from segal.runs import start_run
    from tests.tiny import tiny_recipe

    recipe = from_dict(Recipe, tiny_recipe(tmp_path, strategy="vaal", cycles=1, strategy_params={
        "image_size": 32, "z_dim": 8, "width": 8, "batch_size": 4, "steps": 5}), "test")
    run = start_run(recipe, "test")
    loop = ActiveLoop(run)
    seen = []
    real = STRATEGIES.get("vaal").select

    def spy(self, ctx):
        seen.append(ctx.model)
        return real(self, ctx)

    monkeypatch.setattr(STRATEGIES.get("vaal"), "select", spy)
    loop.run_loop()
    assert seen == [None]  # the task network is never handed to VAAL
    queries = json.loads((run.cycle_dir(0) / "queries.json").read_text())
    assert queries["strategy"] == "vaal" and len(queries["indices"]) == 4
    assert "auroc" in queries["diagnostics"] and "class_histogram" in queries["diagnostics"]
    assert (run.cycle_dir(0) / "vaal.pt").exists()
