"""`segal report` on a cost axis (issue 16): image- and region-level runs together against labeled pixels
or clicks, interpolated at a common grid, paired with image-level random; and the cost block every
image-level run's metrics.json now records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.cli import main
from segal.cost_records import record_costs
from segal.data.base import ClassSet, Dataset
from segal.errors import UserError
from segal.image_costs import ImageCosts, whole_image_clicks
from segal.report import report
from segal.results import t_quantile_975
from tests.test_report import make_run
from tests.tiny import TinySeg, tiny_recipe

POOL = 100  # images in the fake runs' pool


def cost_run(root: Path, name: str, strategy: str, seed: int, unit: str, shares: list[float], clicks: list[int],
             values: list[float], oracle: str = "precise", touched: list[int] | None = None) -> Path:
    """A run directory as the loop writes it, with a cost block in every metrics.json."""
    run = root / name
    active = {"strategy": strategy, "strategy_params": {}, "unit": unit,
              "cost": "pixels" if unit == "region" else "images", "initial": 0.1, "budget": 0.1}
    recipe = {"name": "hand", "seed": seed, "data": {"dataset": "camvid"},
              "model": {"name": "deeplabv3plus", "encoder": "resnet18"}, "active": active}
    if unit == "region":
        recipe["regions"] = {"method": "slic", "segments": 400, "oracle": oracle}
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    touched = touched or [round(s * POOL) for s in shares]
    for k, (share, click, value, images) in enumerate(zip(shares, clicks, values, touched, strict=True)):
        cdir = run / "cycles" / str(k)
        cdir.mkdir(parents=True)
        metrics = {"miou": value, "cycle": k, "labeled": images, "pool": POOL,
                   "fraction": share if unit == "region" else images / POOL, "strategy": strategy, "seed": seed,
                   "unit": unit, "cost": {"images_touched": images, "regions_labeled": images,
                                          "pixels_labeled": round(share * 1e6), "pixel_share": share,
                                          "clicks": click}}
        if unit == "region":
            metrics["oracle"] = oracle
        (cdir / "metrics.json").write_text(json.dumps(metrics))
    return run


RANDOM_IMAGES = {0: [0.40, 0.50, 0.60], 1: [0.44, 0.54, 0.62], 2: [0.42, 0.52, 0.61]}  # at 10, 20, 30% of the pixels
RANDOM_CLICKS = {0: [100, 200, 300], 1: [120, 220, 320], 2: [110, 210, 310]}
ENTROPY_REGIONS = {  # seed -> (pixel shares, mIoU); every seed: 50, 150, 250 clicks
    0: ([0.10, 0.22, 0.34], [0.40, 0.58, 0.70]),
    1: ([0.10, 0.18, 0.30], [0.44, 0.58, 0.72]),
    2: ([0.10, 0.20, 0.32], [0.42, 0.56, 0.68]),
}


@pytest.fixture
def mixed_runs(tmp_path) -> list[Path]:
    root = tmp_path / "runs"
    runs = [cost_run(root, f"random-seed{s}", "random", s, "image", [0.1, 0.2, 0.3], RANDOM_CLICKS[s], v)
            for s, v in RANDOM_IMAGES.items()]
    runs += [cost_run(root, f"entropy-regions-seed{s}", "entropy", s, "region", x, [50, 150, 250], v)
             for s, (x, v) in ENTROPY_REGIONS.items()]
    return runs


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def t_interval(gains: list[float]) -> list[float]:
    a = np.asarray(gains)
    half = t_quantile_975(len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a))
    return [a.mean() - half, a.mean() + half]


def test_mixed_runs_default_to_pixels_interpolated_at_a_common_grid(tmp_path, mixed_runs):
    s = summary_of(report(mixed_runs, tmp_path / "out"))
    assert s["axis"] == "pixels" and s["interpolated"] and s["baseline"] == "random (images)"
    assert list(s["strategies"]) == ["random (images)", "entropy (regions)"]
    # cycle means: random 10/20/30%, entropy 10/20/32%; 32% is within a quarter step (2.5%) of 30%: one point
    assert s["fractions"] == pytest.approx([0.1, 0.2, 0.3])
    ent = s["strategies"]["entropy (regions)"]
    # seed 0 at 20%: 0.40 + (0.10 / 0.12) × 0.18 = 0.55; at 30%: 0.58 + (0.08 / 0.12) × 0.12 = 0.66
    # seed 1 at 20%: 0.58 + (0.02 / 0.12) × 0.14 = 0.60333; at 30%: its last point, 0.72
    # seed 2 at 20%: 0.56 exactly; at 30%: 0.56 + (0.10 / 0.12) × 0.12 = 0.66
    assert [p["values"] for p in ent["curve"]] == [pytest.approx(v) for v in (
        [0.40, 0.44, 0.42], [0.55, 0.58 + 0.14 / 6, 0.56], [0.66, 0.72, 0.66])]
    assert [p["mean"] for p in ent["curve"]] == pytest.approx([0.42, (1.69 + 0.14 / 6) / 3, 0.68])
    paired = {round(g["fraction"], 4): g for g in ent["paired"]["per_budget"]}
    assert paired[0.1]["gains"] == pytest.approx([0, 0, 0]) and not paired[0.1]["real"]
    gains_20 = [0.05, 0.58 + 0.14 / 6 - 0.54, 0.04]
    assert paired[0.2]["gains"] == pytest.approx(gains_20)
    assert paired[0.2]["ci"] == pytest.approx(t_interval(gains_20)) and paired[0.2]["real"]  # [+2.2, +8.0] points
    assert paired[0.3]["gains"] == pytest.approx([0.06, 0.10, 0.05])
    assert paired[0.3]["ci"] == pytest.approx(t_interval([0.06, 0.10, 0.05])) and paired[0.3]["real"]
    # the paired area: trapezoid over 10, 20, 30% divided by 20%, (g10 + 2 g20 + g30) / 4 per seed
    auc_gains = [(2 * 0.05 + 0.06) / 4, (2 * gains_20[1] + 0.10) / 4, (2 * 0.04 + 0.05) / 4]
    assert ent["paired"]["auc"]["gains"] == pytest.approx(auc_gains)


def test_clicks_axis_puts_each_budget_within_every_seeds_range_and_never_extrapolates(tmp_path, mixed_runs):
    s = summary_of(report(mixed_runs, tmp_path / "out", axis="clicks"))
    # cycle means 110/210/310 (random) and 50/150/250 (entropy), a step of 100: six grid points; random's first
    # and last move into every seed's range (seed 1 starts at 120, seed 0 ends at 300), so no seed drops out there
    assert s["axis"] == "clicks" and s["fractions"] == pytest.approx([50, 120, 150, 210, 250, 300])
    rnd = {p["fraction"]: p for p in s["strategies"]["random (images)"]["curve"]}
    assert 50 not in rnd  # below every random run's first point: no extrapolation
    assert rnd[120]["seeds"] == [0, 1, 2] and rnd[120]["values"] == pytest.approx([0.42, 0.44, 0.43])
    # at 250: 0.50 + 0.5 × 0.10, 0.54 + 0.3 × 0.08, 0.52 + 0.4 × 0.09; at 300: 0.60, 0.54 + 0.8 × 0.08, 0.52 + 0.9 × 0.09
    assert rnd[250]["values"] == pytest.approx([0.55, 0.564, 0.556])
    assert rnd[300]["values"] == pytest.approx([0.60, 0.604, 0.601])
    ent = s["strategies"]["entropy (regions)"]
    assert [p["fraction"] for p in ent["curve"]] == [50, 120, 150, 210, 250]  # 300 is past its last point
    at_150 = next(g for g in ent["paired"]["per_budget"] if g["fraction"] == 150)
    assert at_150["gains"] == pytest.approx([0.58 - 0.45, 0.58 - 0.47, 0.56 - 0.46])
    assert s["strategies"]["random (images)"]["auc_std"] is not None  # every seed spans the common budgets
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| clicks |" in table and "interpolated linearly" in table


def test_a_seed_without_a_baseline_run_is_named_not_dropped_silently(tmp_path, mixed_runs):
    import shutil

    shutil.rmtree(tmp_path / "runs" / "random-seed1")
    s = summary_of(report([tmp_path / "runs"], tmp_path / "out"))
    ent = s["strategies"]["entropy (regions)"]
    assert ent["paired"]["pairs"] == 2 and ent["paired"]["auc"]["seeds"] == [0, 2]
    assert any(w.startswith("entropy (regions) seed 1: the baseline has no run of that seed") for w in s["warnings"])


def test_a_strategy_outside_every_other_range_keeps_the_others_paired_areas(tmp_path, mixed_runs):
    """On clicks a dominant run's cycles (a click a region) can end before image random's first: then no budget
    is common to all, each paired area is taken over the budgets its strategy shares with the baseline, a
    warning says so, and a gain "at final" is shown only at the strategy's own final budget."""
    root = tmp_path / "runs"
    for s in RANDOM_IMAGES:
        cost_run(root, f"class_balanced-dominant-seed{s}", "class_balanced", s, "region", [0.10, 0.15, 0.20],
                 [10, 20, 30], [0.38, 0.48, 0.50], oracle="dominant")
    out = report([root], tmp_path / "out", axis="clicks")
    s = summary_of(out)
    assert s["common_fractions"] == []
    assert any(w.startswith("no budget on this axis is reached by every strategy") for w in s["warnings"])
    ent, dom = s["strategies"]["entropy (regions)"], s["strategies"]["class_balanced (regions, dominant)"]
    assert ent["paired"]["auc"] is not None and len(ent["paired"]["auc"]["seeds"]) == 3
    assert dom["paired"]["auc"] is None  # it shares no budget with random
    row = next(line for line in (out / "table.md").read_text().splitlines()
               if line.startswith("| class_balanced (regions, dominant) | 3 |"))
    assert row.split(" | ")[5] == "–"  # random has no value at its final 30 clicks


def test_pixels_to_reach_the_ceiling(tmp_path, mixed_runs):
    ceilings = [make_run(tmp_path / "runs", f"ceiling-seed{s}", "random", s, [v], fractions=[1.0])
                for s, v in ((0, 0.68), (1, 0.72))]
    s = summary_of(report(mixed_runs + ceilings, tmp_path / "out"))
    assert s["ceiling"]["mean"] == pytest.approx(0.70)
    ent, rnd = s["strategies"]["entropy (regions)"], s["strategies"]["random (images)"]
    # 90% = 0.63, 95% = 0.665: entropy's means 0.42, 0.5711, 0.68 reach both at 30% of the pixels; random's
    # 0.42, 0.52, 0.61 neither
    assert ent["fraction_to_ceiling"]["0.9"] == pytest.approx(0.3) and ent["fraction_to_ceiling"]["0.95"] == pytest.approx(0.3)
    assert rnd["fraction_to_ceiling"] == {"0.9": None, "0.95": None}
    assert ent["of_ceiling"] == pytest.approx(0.68 / 0.70)
    table = (tmp_path / "out" / "table.md").read_text()
    assert "pixels to 95% of ceiling" in table and "labeled pixels (% of pool)" in table
    assert "Paired gain over random (images)" in table


def test_fraction_axis_places_region_runs_at_their_images_touched(tmp_path, mixed_runs):
    region = cost_run(tmp_path / "more", "random-regions-seed0", "random", 0, "region", [0.1, 0.2], [40, 90],
                      [0.41, 0.5], oracle="dominant", touched=[10, 35])
    s = summary_of(report(mixed_runs + [region], tmp_path / "out", axis="fraction"))
    assert list(s["strategies"]) == ["random (images)", "entropy (regions)", "random (regions, dominant)"]
    dominant = s["strategies"]["random (regions, dominant)"]
    assert dominant["unit"] == "region" and dominant["oracle"] == "dominant"
    # 10 and 35 of the 100 images touched: 35% is a grid point of its own (more than a quarter step past 30%);
    # at the others it is interpolated, 0.41 + (0.1 / 0.25) × 0.09 and 0.41 + (0.2 / 0.25) × 0.09
    assert {round(p["fraction"], 4): p["mean"] for p in dominant["curve"]} == pytest.approx(
        {0.1: 0.41, 0.2: 0.446, 0.3: 0.482, 0.35: 0.5})


def test_image_runs_alone_keep_the_fraction_axis_and_exact_budgets(tmp_path, mixed_runs):
    s = summary_of(report(mixed_runs[:3], tmp_path / "out"))
    assert s["axis"] == "fraction" and not s["interpolated"] and list(s["strategies"]) == ["random"]
    assert s["fractions"] == [0.1, 0.2, 0.3]
    s = summary_of(report(mixed_runs[:3], tmp_path / "out2", axis="pixels"))  # on request, on pixels
    assert s["axis"] == "pixels" and [p["mean"] for p in s["strategies"]["random"]["curve"]] == pytest.approx(
        [0.42, 0.52, 0.61])


def test_old_runs_without_costs_report_on_the_fraction_axis_only(tmp_path, mixed_runs, capsys):
    old = make_run(tmp_path / "old", "random-seed0", "random", 0, [0.3, 0.4], fractions=[0.1, 0.2])
    s = summary_of(report([old], tmp_path / "out"))
    assert s["axis"] == "fraction" and s["strategies"]["random"]["curve"][1]["mean"] == 0.4
    with pytest.raises(UserError, match="cannot be placed on the pixels axis.*predate the cost records"):
        report([old, mixed_runs[3]], tmp_path / "out2")  # a region run: pixels by default
    assert not (tmp_path / "out2").exists()  # refused before anything is written
    assert main(["report", str(old), "--x", "clicks", "--out", str(tmp_path / "out3")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--x fraction" in err and str(old) in err


def test_cli_report_takes_the_axis(tmp_path, mixed_runs):
    assert main(["report", *map(str, mixed_runs), "--x", "clicks", "--out", str(tmp_path / "out")]) == 0
    assert summary_of(tmp_path / "out")["axis"] == "clicks"
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0
    assert "annotator clicks" in (tmp_path / "out" / "report.html").read_text()


def test_strategies_lists_the_region_strategies(capsys):
    assert main(["strategies"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert "entropy" in lines and "entropy (region)" in lines and "class_balanced (region)" in lines
    assert "class_balanced" not in lines  # region only


# ---------------------------------------------------------------------------- the image-level cost block

class Masks(Dataset):
    """Fixed masks (no files), to count costs on."""

    classes = ClassSet(("a", "b"), ((0, 0, 0), (255, 255, 255)))

    def __init__(self, masks: list[np.ndarray]):
        self.masks = masks

    def __len__(self) -> int:
        return len(self.masks)

    def image_id(self, index: int) -> str:
        return f"m{index}"

    def load_image(self, index: int) -> np.ndarray:
        return np.zeros((*self.masks[index].shape, 3), np.uint8)

    def load_target(self, index: int) -> np.ndarray:
        return self.masks[index]


def test_whole_image_clicks_and_pixels_by_hand(tmp_path):
    split = np.zeros((4, 6), np.uint8)
    split[:, 3:] = 1  # two rectangles: 4 + 4 clicks
    dotted = np.zeros((5, 5), np.uint8)
    dotted[2, 2] = 1  # a one-pixel piece costs the minimum 3; the class around it, a square, 4
    dotted[0, :] = 255  # void is not drawn, but its pixels count
    assert whole_image_clicks(split, 255) == 8 and whole_image_clicks(dotted, 255) == 7
    pool = Masks([split, dotted, np.full((2, 2), 255, np.uint8)])
    costs = ImageCosts(pool, tmp_path / "cache")
    assert costs.block(np.array([0, 1])) == {"images_touched": 2, "regions_labeled": 2, "pixels_labeled": 24 + 25,
                                             "pixel_share": 49 / 53, "clicks": 15}
    cached = json.loads((tmp_path / "cache" / "image_costs.json").read_text())
    assert cached["images"] == {"0": [24, 8], "1": [25, 7]} and cached["total_pixels"] == 53
    pool.masks[0] = np.zeros((4, 6), np.uint8)  # counted once per run: the cache answers
    assert ImageCosts(pool, tmp_path / "cache").block(np.array([0]))["clicks"] == 8
    (tmp_path / "cache" / "image_costs.json").write_text("{torn")  # a torn cache is recounted, not an error
    assert ImageCosts(pool, tmp_path / "cache").block(np.array([0]))["clicks"] == 4


def test_whole_image_clicks_are_clicks_precise_of_one_region():
    from segal.regions.costs import clicks_precise

    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(24, 31), p=[0.5, 0.3, 0.15, 0.05])
        mask = np.repeat(mask, 2, axis=0)  # pieces of several pixels, holes and voids
        one = clicks_precise(np.zeros(mask.shape, np.int32), mask, np.array([0]), 255)[0]
        assert whole_image_clicks(mask, 255) == one == whole_image_clicks(mask.astype(np.int64), 255)


def test_image_run_metrics_record_the_cost_block(tmp_path):
    recipe = tiny_recipe(tmp_path, strategy="random", cycles=1)
    recipe["train"]["steps"] = 1
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["acquire", str(path), "--quiet"]) == 0
    run = tmp_path / "run"
    state = json.loads((run / "state.json").read_text())
    pool = TinySeg(40, salt=0)
    for cycle, count in ((0, 8), (1, 12)):
        m = json.loads((run / "cycles" / str(cycle) / "metrics.json").read_text())
        labeled = [i for c, ids in state["labeled"].items() if int(c) <= cycle for i in ids]
        assert m["unit"] == "image" and m["labeled"] == len(labeled) == count
        assert m["cost"] == {"images_touched": count, "regions_labeled": count, "pixels_labeled": count * 32 * 32,
                             "pixel_share": count / 40,
                             "clicks": sum(whole_image_clicks(pool.load_target(i), 255) for i in labeled)}
    assert summary_of(report([run], tmp_path / "out", axis="clicks"))["axis"] == "clicks"
    # a run from before the cost records gets the same blocks afterwards, every other key kept
    paths = sorted(run.glob("cycles/*/metrics.json"))
    recorded = [json.loads(p.read_text()) for p in paths]
    for path in paths:
        m = json.loads(path.read_text())
        del m["cost"], m["unit"]
        path.write_text(json.dumps(m))
    (run / "cache" / "image_costs.json").unlink()
    with pytest.raises(UserError, match="cannot be placed on the clicks axis") as refused:
        report([run], tmp_path / "out2", axis="clicks")
    assert f"segal costs {run}" in str(refused.value)
    assert main(["costs", str(run)]) == 0 and record_costs(run) == 0
    assert [json.loads(p.read_text()) for p in paths] == recorded


def test_an_image_run_and_a_region_run_share_the_pixel_axis(tmp_path):
    """Real runs: the same seed starts both from the same whole images, at the same pixel share, and the
    report pairs the region run with image-level random without a warning."""
    from segal.config import recipe_from_dict
    from segal.loop import ActiveLoop
    from segal.runs import start_run
    from tests.test_regions_loop import region_recipe

    region = region_recipe(tmp_path / "regions", strategy="random", cycles=0)  # cycle 0: the initial images
    image = {**region_recipe(tmp_path / "images", strategy="random", cycles=0), "regions": None}
    image["active"] = {**image["active"], "unit": "image", "cost": "images", "budget": 2}
    dirs = []
    for recipe in (region, image):
        recipe["train"]["steps"] = 1
        with start_run(recipe_from_dict(recipe), "<test>") as run:
            ActiveLoop(run).run_loop()
            dirs.append(run.dir)
    first = [json.loads((d / "cycles" / "0" / "metrics.json").read_text())["cost"] for d in dirs]
    assert first[0]["pixel_share"] == first[1]["pixel_share"] == 4 / 20  # 4 of 20 equal-sized scenes
    assert first[0]["images_touched"] == first[1]["images_touched"] == 4
    s = summary_of(report(dirs, tmp_path / "out"))
    assert s["axis"] == "pixels" and s["baseline"] == "random (images)" and s["warnings"] == []
    assert s["strategies"]["random (regions)"]["paired"]["pairs"] == 1


def test_the_cost_grid_keeps_every_cycle_of_a_strategy_whose_cycles_cost_little():
    """On clicks a dominant run's cycles (a click a region) cost ~1/20 of a precise run's: one median step for
    all would merge its whole curve into two points.  Each strategy's own step decides, points of two
    strategies within a quarter of the smaller step merge into the smaller, and a group never holds two
    points of one strategy."""
    from types import SimpleNamespace

    from segal.results import cost_grid

    def runs(*xs):
        return [SimpleNamespace(x=list(x)) for x in xs]

    curves = {"precise": runs([44_000, 182_480, 322_997], [44_000, 182_480, 322_997]),
              "images": runs([44_000, 70_329, 96_000]),
              "dominant": runs([13_233, 19_932, 26_628, 32_725])}
    assert cost_grid(curves) == [13_233, 19_932, 26_628, 32_725, 44_000, 70_329, 96_000, 182_480, 322_997]
    curves["images"] = runs([44_000, 70_329, 96_000], [44_100, 70_429, 96_100])  # seeds' mean x: 44,050 …
    # 44,050 merges into the precise run's 44,000, and the point moves to 44,100, where the images seed that
    # starts there has a value too
    assert cost_grid(curves)[4:6] == [44_100, 70_379]
    close = {"a": runs([0, 10, 1000, 2000]), "b": runs([5, 1003])}  # a's step 990 (median): 0 and 10 stay apart
    assert cost_grid(close) == [5, 10, 1000, 2000]  # 0 and 5 are one point, at 5: b has no value below it


def test_the_dominant_oracles_label_noise_is_reported_per_cycle_over_seeds(tmp_path, mixed_runs):
    """metrics.json's ``label_noise`` (dominant oracle) becomes a table: each cycle's mean ± sample std of the
    seeds' wrong shares, at the cycle's mean x; runs without it (precise, image) add no row."""
    root = tmp_path / "runs"
    noise = {0: [(70, 1000), (110, 1000), (150, 1000)], 1: [(90, 1000), (130, 1000), (150, 1000)]}
    for s, cells in noise.items():
        run = cost_run(root, f"class_balanced-dominant-seed{s}", "class_balanced", s, "region", [0.10, 0.20, 0.30],
                       [40, 80, 120], [0.40, 0.55, 0.60], oracle="dominant")
        for k, (wrong, labeled) in enumerate(cells):
            path = run / "cycles" / str(k) / "metrics.json"
            metrics = json.loads(path.read_text())
            metrics["label_noise"] = {"wrong_pixels": wrong, "labeled_pixels": labeled, "share": wrong / labeled}
            path.write_text(json.dumps(metrics))
    out = report([root], tmp_path / "rep")
    s = summary_of(out)["strategies"]
    assert s["entropy (regions)"]["label_noise"] is None and s["random (images)"]["label_noise"] is None
    rows = s["class_balanced (regions, dominant)"]["label_noise"]
    assert [r["cycle"] for r in rows] == [0, 1, 2] and [r["n"] for r in rows] == [2, 2, 2]
    assert [r["mean"] for r in rows] == pytest.approx([0.08, 0.12, 0.15])
    assert [r["std"] for r in rows] == pytest.approx([0.02 / math.sqrt(2), 0.02 / math.sqrt(2), 0.0])
    assert rows[0]["seeds"] == {"0": pytest.approx(0.07), "1": pytest.approx(0.09)}
    table = (out / "table.md").read_text()
    assert "| class_balanced (regions, dominant) | 1 | 20.0% | 12.00 ± 1.41 | 2 |" in table
    assert 'id="label-noise"' in (out / "report.html").read_text()
