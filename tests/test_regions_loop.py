"""Region-level runs end to end (``active.unit: region``, simulated oracle) on tiny demo scenes.

20 scenes of 32×48 cut into 16-pixel patches: 6 regions of 256 pixels per image, 120 in the pool,
30,720 pixels.  A budget of 5% of the pool's pixels is 1,536 pixels, six patches a cycle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import segal.loop
from segal.cli import main
from segal.config import recipe_from_dict
from segal.cost_records import record_costs
from segal.errors import UserError
from segal.image_costs import whole_image_clicks
from segal.loop import ActiveLoop, initial_selection
from segal.pool import PoolState
from segal.regions.cache import RegionCache
from segal.regions.costs import clicks_precise
from segal.regions.state import load_region_labels
from segal.regions.training import RegionTrainingView
from segal.runs import Run, start_run

N_TRAIN, H, W, PATCH = 20, 32, 48, 16
BUDGET = int(0.05 * N_TRAIN * H * W)  # 1536 pixels
TIMINGS = {"seconds", "eval_seconds", "train_seconds", "cpu_seconds", "eval_cpu_seconds", "train_cpu_seconds"}


def region_recipe(tmp_path: Path, strategy: str = "random", oracle: str = "precise", cycles: int = 2,
                  regions: dict | None = None, **active) -> dict:
    return {
        "name": "regions", "seed": 0, "device": "cpu", "output_dir": str(tmp_path / "run"),
        "data": {"dataset": "demo", "image_size": [H, W], "options": {"size": [H, W], "n_train": N_TRAIN, "n_test": 6}},
        "model": {"name": "deeplabv3plus", "encoder": "resnet18", "weights": None},
        "train": {"steps": 2, "batch_size": 4, "eval_batch_size": 8, "amp": "off"},
        "active": {"initial": 4, "budget": 0.05, "cycles": cycles, "strategy": strategy, "unit": "region",
                   "cost": "pixels", **active},
        "regions": {"method": "grid", "patch": PATCH, "oracle": oracle, **(regions or {})},
    }


def run_regions(tmp_path: Path, **kwargs):
    recipe = recipe_from_dict(region_recipe(tmp_path, **kwargs))
    with start_run(recipe, "<test>") as run:
        ActiveLoop(run).run_loop()
    return run


def metrics(run, cycle: int) -> dict:
    return json.loads((run.cycle_dir(cycle) / "metrics.json").read_text())


def labels_of(run):
    state = PoolState.load(run.state_path)
    return state, load_region_labels(state, run.state_path, RegionCache.open(run.dir / "regions").offsets)


@pytest.mark.parametrize("strategy", ["random", "entropy"])
def test_region_run_spends_its_pixel_budget_and_records_the_cost(tmp_path, strategy):
    run = run_regions(tmp_path, strategy=strategy)
    state, labels = labels_of(run)
    cache = RegionCache.open(run.dir / "regions")
    assert state.stage == "done" and state.cycle == 2 and state.budgets == [0, BUDGET, 2 * BUDGET]
    assert cache.num_regions == N_TRAIN * 6 and (cache.area == PATCH * PATCH).all()

    # the initial whole images are those an image-level run with the same seed starts from, every region labeled
    image_recipe = recipe_from_dict({**region_recipe(tmp_path / "image"), "regions": None,
                                     "active": {"initial": 4, "budget": 4, "cycles": 2, "strategy": strategy}})
    image_run = Run(tmp_path / "image" / "run", image_recipe)
    initial = initial_selection(image_run, image_run.new_state())
    assert state.labeled[0] == initial.tolist()
    assert (labels.status[labels.regions_of(initial)] == 0).all()
    assert labels.labeled_counts().tolist()[0] == 4 * 6

    pixels = 4 * 6 * PATCH * PATCH
    for cycle in (0, 1):
        q = json.loads((run.cycle_dir(cycle) / "queries.json").read_text())
        assert q["unit"] == "region" and q["cost"] == "pixels" and q["budget"] == BUDGET
        chosen = np.asarray(q["regions"])
        assert q["spent"] == cache.area[chosen].sum() <= BUDGET
        assert (labels.status[chosen] == cycle + 1).all()  # labeled by the oracle in the next cycle
        assert q["indices"] == sorted(set(labels.image_of(chosen).tolist()))
        assert q["scores"] == sorted(q["scores"], reverse=True)  # best first
        counts = np.zeros(8, np.int64)  # the acquired regions' ground-truth classes, by hand
        for g in chosen.tolist():
            i = int(cache.image_of(g))
            gt = run.pool.load_target(i)
            counts += np.bincount(gt[cache.region_map(i) == g - cache.offsets[i]], minlength=8)
        shares = q["diagnostics"]["class_histogram"]
        assert list(shares) == list(run.pool.classes.names)
        np.testing.assert_allclose(list(shares.values()), counts / counts.sum(), atol=1e-5)
    for cycle in (0, 1, 2):
        m = metrics(run, cycle)
        labeled = (labels.status >= 0) & (labels.status <= cycle)
        touched = sorted(set(labels.image_of(np.flatnonzero(labeled)).tolist()))
        clicks = 0
        initial = set(labels.image_of(np.flatnonzero(labels.status == 0)).tolist())
        for i in touched:  # the precise oracle's clicks, counted afresh per image
            gt = run.pool.load_target(i)
            local = np.flatnonzero(labeled[cache.offsets[i]:cache.offsets[i + 1]])
            by_region = int(clicks_precise(cache.region_map(i), gt, local).sum())
            if i in initial:  # labeled whole, as an image run labels it: each class piece drawn once
                whole = whole_image_clicks(gt, run.pool.classes.ignore_index)
                assert whole < by_region  # the patches cut class pieces: the two rules differ here
                clicks += whole
            else:
                clicks += by_region
        expected_pixels = pixels + sum(json.loads((run.cycle_dir(k) / "queries.json").read_text())["spent"]
                                       for k in range(cycle))
        assert m["cost"] == {"images_touched": len(touched), "regions_labeled": int(labeled.sum()),
                             "pixels_labeled": expected_pixels, "pixel_share": expected_pixels / (N_TRAIN * H * W),
                             "clicks": clicks}
        assert m["labeled"] == len(touched) and m["fraction"] == m["cost"]["pixel_share"]
        assert m["unit"] == "region" and "label_noise" not in m
    assert metrics(run, 2)["cost"]["pixels_labeled"] == pixels + 2 * BUDGET  # equal patches fill it exactly


@pytest.mark.parametrize("oracle", ["precise", "dominant"])
def test_training_sees_only_the_labeled_regions(tmp_path, monkeypatch, oracle):
    """The loop trains on the images touched, through masks that are void outside their labeled regions:
    the ground truth inside them (precise), or each region's majority class (dominant)."""
    seen: list[tuple[object, list[int]]] = []
    real = segal.loop.train

    def spy(model, dataset, indices, cfg, **kwargs):
        seen.append((dataset, [int(i) for i in indices]))
        return real(model, dataset, indices, cfg, **kwargs)

    monkeypatch.setattr(segal.loop, "train", spy)
    run = run_regions(tmp_path, oracle=oracle, cycles=1)
    _, labels = labels_of(run)
    cache = RegionCache.open(run.dir / "regions")
    assert len(seen) == 2
    for cycle, (dataset, indices) in enumerate(seen):
        assert isinstance(dataset, RegionTrainingView)
        labeled = (labels.status >= 0) & (labels.status <= cycle)
        assert indices == sorted(set(labels.image_of(np.flatnonzero(labeled)).tolist()))
        partial_images = 0
        for i in indices:
            gt, mask = run.pool.load_target(i), dataset.load_target(i)
            region_map = cache.region_map(i)
            inside = labeled[cache.offsets[i]:cache.offsets[i + 1]][region_map]
            assert (mask[~inside] == 255).all()
            partial_images += int(not inside.all())
            if oracle == "precise":
                assert np.array_equal(mask[inside], gt[inside])
            for r in np.unique(region_map[inside]).tolist():
                where = region_map == r
                if oracle == "dominant":
                    majority = int(np.bincount(gt[where & (gt != 255)]).argmax())
                    assert (mask[where & (gt != 255)] == majority).all()
        assert partial_images == (0 if cycle == 0 else len(indices) - 4)  # acquired regions: part of an image


def test_dominant_oracle_records_its_label_noise(tmp_path):
    run = run_regions(tmp_path, oracle="dominant", cycles=1)
    _, labels = labels_of(run)
    cache = RegionCache.open(run.dir / "regions")
    for cycle in (0, 1):
        wrong = total = 0
        for i in range(N_TRAIN):  # by hand: per patch, the pixels that are not its majority class
            gt, region_map = run.pool.load_target(i), cache.region_map(i)
            for r in range(6):
                if 0 <= labels.status[cache.offsets[i] + r] <= cycle:
                    classes = gt[(region_map == r) & (gt != 255)]
                    wrong += int(len(classes) - np.bincount(classes).max())
                    total += len(classes)
        noise = metrics(run, cycle)["label_noise"]
        assert noise == {"wrong_pixels": wrong, "labeled_pixels": total, "share": wrong / total}
        assert noise["share"] > 0  # street scenes: patches straddle sky, buildings and road
    assert metrics(run, 0)["cost"]["clicks"] == 4 * 6  # one click per region


def test_slic_regions_and_a_click_budget(tmp_path):
    run = run_regions(tmp_path, strategy="margin", cycles=1, cost="clicks", budget=10,
                      regions={"method": "slic", "segments": 12})
    state, labels = labels_of(run)
    cache = RegionCache.open(run.dir / "regions")
    assert cache.counts.min() > 1 and len(np.unique(cache.area)) > 1  # superpixels, not patches
    q = json.loads((run.cycle_dir(0) / "queries.json").read_text())
    assert q["cost"] == "clicks" and q["budget"] == 10
    chosen = np.asarray(q["regions"])
    clicks = [int(clicks_precise(cache.region_map(i), run.pool.load_target(i), [g - cache.offsets[i]])[0])
              for g, i in zip(chosen.tolist(), labels.image_of(chosen).tolist(), strict=True)]
    assert q["spent"] == sum(clicks) and (sum(clicks) <= 10 or len(chosen) == 1)
    assert metrics(run, 1)["cost"]["clicks"] == metrics(run, 0)["cost"]["clicks"] + q["spent"]


def write(tmp_path: Path, name: str, **kwargs) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(region_recipe(tmp_path / name, **kwargs)))
    return path


@pytest.mark.parametrize(("key", "value", "message"), [
    ("label_noise", 0.2, "label_noise corrupts whole images"),
    ("strategy", "coreset", "strategy 'coreset' has no region-level variant yet"),
])
def test_what_a_region_run_cannot_do_yet_fails_before_anything_is_written(tmp_path, capsys, key, value, message):
    data = region_recipe(tmp_path / "bad")
    data["active"][key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["acquire", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_resuming_with_other_regions_is_refused(tmp_path):
    run_regions(tmp_path, cycles=0)
    recipe = recipe_from_dict(region_recipe(tmp_path, cycles=0, regions={"patch": 8}))
    with pytest.raises(UserError, match="regions differ"):
        start_run(recipe, "<test>")


def results(run_dir: Path) -> dict:
    """Everything a run decided (state, region labels, queries, metrics), without wall-clock fields."""
    state = json.loads((run_dir / "state.json").read_text())
    out = {"state": state, "labels": (run_dir / state["regions"]["file"]).read_bytes()}
    for path in sorted(run_dir.glob("cycles/*/*.json")):
        out[str(path.relative_to(run_dir))] = {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMINGS}
    return out


def test_sigkill_anywhere_resumes_to_the_uninterrupted_run(tmp_path):
    from tests.test_crash_torture import ForkServer

    server = ForkServer(tmp_path / "children.log")
    try:
        ref = write(tmp_path, "ref", strategy="entropy", oracle="dominant", cycles=1)
        assert server.run(["acquire", str(ref), "--quiet"])["code"] == 0, (tmp_path / "children.log").read_text()
        killed = write(tmp_path, "killed", strategy="entropy", oracle="dominant", cycles=1)
        points = ["regions.chunk:1", "train.step:2", "score.batch:1", "write.before_rename:3", "write.after_rename:4"]
        for point in points:
            result = server.run(["acquire", str(killed), "--quiet"], crash=point)
            assert result["killed"], (point, result, (tmp_path / "children.log").read_text()[-3000:])
            if (tmp_path / "killed" / "run" / "state.json").exists():
                PoolState.load(tmp_path / "killed" / "run" / "state.json")  # loads after every kill
        assert server.run(["acquire", str(killed), "--quiet"])["code"] == 0
    finally:
        server.close()
    assert results(tmp_path / "killed" / "run") == results(tmp_path / "ref" / "run")
    assert not list((tmp_path / "killed" / "run").glob("regions-labels-*.npy"))[1:]  # older label files deleted


class RampNet(torch.nn.Module):
    """Two-class logits that depend only on the column: entropy varies across each image, known in closed form."""

    def forward(self, images):
        b, _, h, w = images.shape
        ramp = torch.linspace(-4.0, 4.0, w).expand(b, h, w)
        return torch.stack([ramp, torch.zeros_like(ramp)], dim=1)


def test_region_entropy_is_the_mean_of_its_pixels_entropy(tmp_path):
    from segal.data import DATASETS
    from segal.device import Compute
    from segal.regions.maps import RegionSpec
    from segal.regions.state import RegionLabels
    from segal.strategies import REGION_STRATEGIES
    from segal.strategies.context import build_context
    from segal.strategies.region_base import RegionContext

    pool = DATASETS.get("demo")(None, "train", size=[H, W], n_train=3)
    cache = RegionCache.build(pool, RegionSpec(method="grid", patch=PATCH), tmp_path / "regions")
    labels = RegionLabels.empty(cache.offsets)
    labels.add_labeled([0, 1, 7], cycle=0)
    candidates = labels.unlabeled_regions()
    base = build_context(pool, [0], 1, unlabeled=[0, 1, 2], num_classes=2, model=RampNet(),
                         compute=Compute(image_size=(H, W), batch_size=2))
    scores = REGION_STRATEGIES.get("entropy")().score(RegionContext(base, cache, labels, candidates))
    p = 1 / (1 + np.exp(-np.linspace(-4.0, 4.0, W)))  # softmax of (ramp, 0)
    column = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    pixel = np.broadcast_to(column, (H, W))
    expected = [pixel[cache.region_map(i) == g - cache.offsets[i]].mean()
                for g, i in zip(candidates.tolist(), cache.image_of(candidates).tolist(), strict=True)]
    assert len(scores) == len(candidates) == 3 * 6 - 3
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    margin = REGION_STRATEGIES.get("margin")().score(RegionContext(base, cache, labels, candidates))
    gap = np.broadcast_to(-np.abs(2 * p - 1), (H, W))
    np.testing.assert_allclose(margin, [gap[cache.region_map(i) == g - cache.offsets[i]].mean() for g, i in
                                        zip(candidates.tolist(), cache.image_of(candidates).tolist(), strict=True)],
                               rtol=1e-5, atol=1e-6)


def test_an_image_level_run_writes_what_it_always_wrote(tmp_path):
    """No region key leaks into an image-level run: its state.json keeps its old keys, and metrics.json gains only
    the cost ledger every run records (segal.image_costs), counted in whole images."""
    data = region_recipe(tmp_path, cycles=1)
    data["active"] = {"initial": 4, "budget": 2, "cycles": 1, "strategy": "entropy"}
    del data["regions"]
    with start_run(recipe_from_dict(data), "<test>") as run:
        ActiveLoop(run).run_loop()
    state = json.loads(run.state_path.read_text())
    assert set(state) == {"version", "size", "budgets", "seed", "pool_fingerprint", "cycle", "stage", "num_labeled",
                          "pending", "labeled"}
    assert state["budgets"] == [4, 6] and not (run.dir / "regions").exists()
    assert not list(run.dir.glob("regions-labels-*"))
    m = metrics(run, 1)
    assert "label_noise" not in m and m["fraction"] == 6 / N_TRAIN
    assert m["unit"] == "image" and m["cost"]["images_touched"] == 6 and m["cost"]["regions_labeled"] == 6


def test_raising_cycles_continues_a_finished_region_run_as_if_planned(tmp_path):
    direct = run_regions(tmp_path / "direct", strategy="entropy", cycles=2)
    run_regions(tmp_path / "grown", strategy="entropy", cycles=1)
    grown = run_regions(tmp_path / "grown", strategy="entropy", cycles=2)
    assert results(grown.dir) == results(direct.dir)


def test_the_training_input_cache_changes_no_result_of_a_region_run(tmp_path):
    """``data.cache: true`` holds the ground truth the partial masks are cut from: on scenes rendered at the
    working size (nothing shrunk) the run equals the uncached one."""
    plain = run_regions(tmp_path / "plain", strategy="entropy", oracle="dominant", cycles=1)
    data = region_recipe(tmp_path / "cached", strategy="entropy", oracle="dominant", cycles=1)
    data["data"]["cache"] = True
    with start_run(recipe_from_dict(data), "<test>") as cached:
        ActiveLoop(cached).run_loop()
    assert (cached.dir / "cache" / f"train-{H}x{W}" / "targets.npy").exists()
    assert results(cached.dir) == results(plain.dir)


def test_a_sweep_runs_region_strategies_that_have_no_image_variant(tmp_path):
    """`segal sweep` over a region recipe takes its strategies from the region registry: class_balanced
    has no image-level variant, and a bad parameter of it fails before any run starts."""
    from segal.progress import Progress
    from segal.sweep import sweep

    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump(region_recipe(tmp_path, cycles=1)))
    with pytest.raises(UserError, match="temperature"):
        sweep(path, ["class_balanced"], [0], tmp_path / "bad", {}, Progress(),
              sets={"active.strategy_params.temperature": 0})
    assert not (tmp_path / "bad").exists()
    dirs = sweep(path, ["random", "class_balanced"], [0], tmp_path / "sweep", {}, Progress())
    assert [d.name for d in dirs] == ["random-seed0", "class_balanced-seed0"]
    for d in dirs:
        assert json.loads((d / "cycles" / "1" / "metrics.json").read_text())["cost"]["pixels_labeled"] > 0


def test_segal_costs_recounts_the_initial_images_of_a_region_run_from_before_they_were_charged_whole(tmp_path):
    """A precise run written when its initial images cost the sum of their regions' clicks: every cycle's
    count shifts by the same amount, to what the run records today; a second pass changes nothing."""
    run = run_regions(tmp_path, strategy="random", cycles=1)
    state, labels = labels_of(run)
    cache = RegionCache.open(run.dir / "regions")
    today = [metrics(run, k)["cost"]["clicks"] for k in (0, 1)]
    old_rule = 0
    for i in state.labeled[0]:  # the initial images region by region, as segal counted them before
        gt = run.pool.load_target(i)
        old_rule += int(clicks_precise(cache.region_map(i), gt, np.arange(cache.counts[i])).sum())
    assert old_rule > today[0]
    for k in (0, 1):
        path = run.cycle_dir(k) / "metrics.json"
        m = metrics(run, k)
        m["cost"]["clicks"] += old_rule - today[0]
        path.write_text(json.dumps(m))
    assert main(["costs", str(run.dir)]) == 0
    assert [metrics(run, k)["cost"]["clicks"] for k in (0, 1)] == today
    assert record_costs(run.dir) == 0
