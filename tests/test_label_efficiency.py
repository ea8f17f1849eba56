"""tools/label_efficiency.py: the converged schedule by default, and its settings reach the recipe."""

from __future__ import annotations

import argparse
from pathlib import Path

from segal.config import load_recipe
from segal.engine import planned_steps
from tests.tool_loader import load_tool

TOOL = Path(__file__).resolve().parents[1] / "tools" / "label_efficiency.py"
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "camvid.yaml"


def args(tool, **changes) -> argparse.Namespace:
    base = dict(data_root="/data/camvid", image_size=[96, 128], steps=None, epochs=tool.EPOCHS,
                min_steps=tool.MIN_STEPS, batch_size=8, cycles=6, device="cpu", vae_size=32, z_dim=32, vae_width=32,
                vae_epochs=tool.VAE_EPOCHS, vae_steps=None, warm_epochs=None, vae_batch=32, vaal_diversity=0)
    return argparse.Namespace(**(base | changes))


def test_default_schedule_is_epochs_with_a_floor_and_reaches_40_percent():
    tool = load_tool("label_efficiency")
    overrides, params = tool.settings(args(tool))
    recipe = load_recipe(RECIPE, overrides)
    assert recipe.train.steps is None and recipe.train.epochs == tool.EPOCHS and recipe.train.min_steps == tool.MIN_STEPS
    assert recipe.active.cycles == 6  # 10% + 6 × 5% = 40%
    small, large = planned_steps(recipe.train, 37), planned_steps(recipe.train, 147)
    assert small == max(tool.MIN_STEPS, -(-tool.EPOCHS * 37 // 8))
    assert large == max(tool.MIN_STEPS, -(-tool.EPOCHS * 147 // 8))
    assert params["vaal"]["epochs"] == tool.VAE_EPOCHS and params["vaal"]["steps"] is None


def test_fixed_steps_restore_the_old_protocol():
    tool = load_tool("label_efficiency")
    overrides, _ = tool.settings(args(tool, steps=200))
    assert load_recipe(RECIPE, overrides).train.steps == 200


def test_warm_epochs_warm_start_every_later_cycle():
    from segal.engine import cycle_schedule

    tool = load_tool("label_efficiency")
    cold = load_recipe(RECIPE, tool.settings(args(tool))[0])
    warm = load_recipe(RECIPE, tool.settings(args(tool, warm_epochs=30))[0])
    assert cold.train.reinit is True and cold.train.warm_epochs is None
    assert warm.train.reinit is False and warm.train.warm_epochs == 30 and warm.data.cache is True
    assert planned_steps(cycle_schedule(warm.train, warm=True), 145) == -(-30 * 145 // 8)  # 544, no floor
    assert planned_steps(cycle_schedule(warm.train, warm=False), 37) == planned_steps(cold.train, 37)


def test_a_region_run_trains_epochs_over_its_labeled_pixels_in_whole_images_with_the_floor(tmp_path):
    """Demo scenes of 32×48 = 1536 pixels in six 16-pixel patches; 4 initial images and 1536 pixels (six
    patches) a cycle: 4, 5, 6 whole-image equivalents, however many images the patches lie in."""
    import json

    from segal.config import recipe_from_dict
    from segal.loop import ActiveLoop
    from segal.regions.cache import RegionCache
    from segal.runs import start_run
    from tests.test_regions_loop import labels_of, region_recipe

    data = region_recipe(tmp_path)
    data["train"] = {**data["train"], "steps": None, "epochs": 3, "min_steps": 4}
    with start_run(recipe_from_dict(data), "<test>") as run:
        ActiveLoop(run).run_loop()
    steps = [json.loads((run.cycle_dir(k) / "train.json").read_text())["steps"] for k in range(3)]
    assert steps == [max(4, -(-3 * 4 // 4)), -(-3 * 5 // 4), -(-3 * 6 // 4)] == [4, 4, 5]
    _, labels = labels_of(run)
    assert RegionCache.open(run.dir / "regions").shape == (32, 48)
    assert len(labels.images_touched(2)) > 6  # counted in images touched, the steps would be more


def region_args(tool, **changes) -> argparse.Namespace:
    return args(tool, **({"pixel_budget": 0.05, "region_cycles": 4, "segments": 400, "region_resolution": [180, 240],
                          "region_vae_steps": tool.REGION_VAE_STEPS, "max_unlabeled": 20000,
                          "region_warm_epochs": None} | changes))


def test_region_runs_share_the_image_settings_and_add_4_cycles_of_5_percent_of_the_pixels():
    tool = load_tool("label_efficiency")
    image = load_recipe(RECIPE, tool.settings(region_args(tool, warm_epochs=30))[0])
    overrides, params = tool.region_settings(region_args(tool, warm_epochs=30))
    region = load_recipe(RECIPE, overrides)
    assert (region.active.unit, region.active.cost, region.active.budget, region.active.cycles) == \
        ("region", "pixels", 0.05, 4)  # 10% of the images, then 4 × 5% of the pixels: 30%
    assert region.active.initial == image.active.initial and region.seed == image.seed
    assert region.train == image.train and region.model == image.model and region.data == image.data
    r = region.regions
    assert (r.method, r.segments, r.resolution, r.oracle) == ("slic", 400, [180, 240], "precise")
    assert params["vaal"]["steps"] == tool.REGION_VAE_STEPS and params["vaal"]["max_unlabeled"] == 20000


def test_the_image_report_leaves_the_region_folders_out(tmp_path):
    tool = load_tool("label_efficiency")
    for name in ("random-seed0", "ceiling/random-seed0", "regions/random-seed0", "regions-dominant/vaal-seed0",
                 "regions-warm60/random-seed0", "regions-dominant-warm60/class_balanced-seed0"):
        (tmp_path / name / "cycles").mkdir(parents=True)
        (tmp_path / name / "recipe.yaml").write_text("{}")
    (tmp_path / "report").mkdir()
    found = sorted(str(p.relative_to(tmp_path)) for p in tool.image_report_dirs(tmp_path))
    assert found == ["ceiling/random-seed0", "random-seed0"]


def test_the_cifar10_benchmark_is_the_same_protocol_on_its_own_recipe():
    tool = load_tool("label_efficiency")
    bench = tool.BENCHMARKS["cifar10"]
    a = tool.parse_args(["--benchmark", "cifar10", "--warm-epochs", "30"])
    assert (a.batch_size, a.image_size, a.epochs, a.min_steps) == (128, [32, 32], bench.epochs, bench.min_steps)
    assert a.data_root.endswith("shared/data/cifar10-jpg") and a.out == "runs/label-efficiency-cifar10"
    overrides, params = tool.settings(a)
    recipe = load_recipe(Path(TOOL).parents[1] / "recipes" / bench.recipe, overrides)
    assert recipe.task == "classification" and recipe.active.cycles == 6 and recipe.active.initial == 0.1
    assert planned_steps(recipe.train, 1000) == max(bench.min_steps, -(-bench.epochs * 1000 // 128))
    assert planned_steps(recipe.train, 4000) == max(bench.min_steps, -(-bench.epochs * 4000 // 128))
    assert recipe.train.reinit is False and recipe.train.warm_epochs == 30
    assert params["vaal"]["epochs"] == bench.vae_epochs and params["vaal"]["batch_size"] == 64
    assert bench.strategies == "random,entropy,coreset,vaal"  # the 4 strategies: no vaal:paper
    assert tool.parse_args(["--benchmark", "cifar10", "--batch-size", "64"]).batch_size == 64  # a flag given wins


def test_regions_of_the_cifar10_benchmark_are_refused_in_one_line(capsys):
    tool = load_tool("label_efficiency")
    assert tool.main(["--benchmark", "cifar10", "--unit", "region"]) == 2
    assert "needs segmentation masks" in capsys.readouterr().out


def test_a_later_invocation_takes_cycle_0_from_the_runs_already_in_out(tmp_path, monkeypatch):
    """One strategy at a time (two workers on a queue) still trains one cycle 0 a seed."""
    import segal.sweep

    tool = load_tool("label_efficiency")
    for name in ("random-seed0", "regions/random-seed0"):
        (tmp_path / name / "cycles").mkdir(parents=True)
        (tmp_path / name / "recipe.yaml").write_text("{}")
    seen = {}
    monkeypatch.setattr(segal.sweep, "sweep", lambda *a, **kw: seen.update(kw))
    assert tool.main(["--quick", "--strategies", "entropy", "--out", str(tmp_path)]) == 0
    assert seen["donors"] == [tmp_path / "random-seed0"]  # not the region runs: another experiment


def test_an_empty_or_runless_out_folder_has_no_donors_and_is_no_error(tmp_path, monkeypatch):
    """A fresh machine's first invocation: --out made beforehand (or holding records only being restored)."""
    import segal.sweep

    tool = load_tool("label_efficiency")
    seen = {}
    monkeypatch.setattr(segal.sweep, "sweep", lambda *a, **kw: seen.update(kw))
    (tmp_path / "empty").mkdir()
    assert tool.main(["--quick", "--strategies", "random", "--out", str(tmp_path / "empty")]) == 0
    assert seen["donors"] == []
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("queue notes")  # a folder with files but no run
    assert tool.main(["--quick", "--strategies", "random", "--out", str(tmp_path / "notes")]) == 0
    assert seen["donors"] == []


def test_ceiling_only_trains_the_seeds_ceilings_and_no_strategy_run(tmp_path, monkeypatch):
    """A seed's ceiling without its grid (the grid's seed runs on another machine), then the report."""
    import segal.report
    import segal.sweep
    from segal.config import CEILING_OVERRIDES

    tool = load_tool("label_efficiency")
    calls, reported = [], []

    def fake_sweep(recipe, strategies, seeds, out, overrides, *args, **kwargs):
        calls.append((strategies, seeds, out, overrides))
        (out / "random-seed2" / "cycles").mkdir(parents=True)
        (out / "random-seed2" / "recipe.yaml").write_text("{}")

    monkeypatch.setattr(segal.sweep, "sweep", fake_sweep)
    monkeypatch.setattr(segal.report, "report", lambda dirs, out, **kw: reported.append((dirs, out)))
    assert tool.main(["--ceiling-only", "--seeds", "2", "--out", str(tmp_path)]) == 0
    assert [(s, seeds, out) for s, seeds, out, _ in calls] == [(["random"], [2], tmp_path / "ceiling")]
    assert all(calls[0][3][key] == value for key, value in CEILING_OVERRIDES.items())
    assert reported == [([tmp_path / "ceiling" / "random-seed2"], tmp_path / "report")]


def test_ceiling_only_is_refused_for_the_region_benchmark_in_one_line(capsys):
    tool = load_tool("label_efficiency")
    assert tool.main(["--unit", "region", "--ceiling-only"]) == 2
    assert "drop --unit region" in capsys.readouterr().out


def test_vaal_diversity_runs_go_to_their_own_folder_and_take_cycle_0_from_out(tmp_path, monkeypatch):
    """The VAAL variant with a diversity step: same names as plain VAAL's runs, so a folder of its own, and the
    seed's cycle 0 from the runs already in OUT."""
    import segal.sweep

    tool = load_tool("label_efficiency")
    (tmp_path / "vaal-seed0" / "cycles").mkdir(parents=True)
    (tmp_path / "vaal-seed0" / "recipe.yaml").write_text("{}")
    seen = {}
    monkeypatch.setattr(segal.sweep, "sweep", lambda recipe, strategies, seeds, out, *a, **kw:
                        seen.update(kw, out=out, strategies=strategies))
    assert tool.main(["--quick", "--strategies", "vaal", "--vaal-diversity", "4", "--out", str(tmp_path)]) == 0
    assert seen["out"] == tmp_path / "vaal-diversity-4" and seen["strategies"] == ["vaal"]
    assert seen["strategy_params"]["vaal"]["diversity_factor"] == 4
    assert seen["donors"] == [tmp_path / "vaal-seed0"]
    assert "diversity_factor" not in tool.settings(args(tool))[1]["vaal"]  # off: the paper's top-b


def test_vaal_diversity_is_refused_off_vaal_or_below_2_in_one_line(capsys):
    tool = load_tool("label_efficiency")
    for argv in (["--strategies", "random,vaal", "--vaal-diversity", "4"], ["--strategies", "vaal", "--vaal-diversity", "1"],
                 ["--unit", "region", "--strategies", "vaal", "--vaal-diversity", "4"],  # --dominant class_balanced
                 ["--unit", "region", "--strategies", "entropy", "--dominant", "", "--vaal-diversity", "4"]):
        assert tool.main(argv) == 2
        assert "fix: give --strategies vaal" in capsys.readouterr().out


def test_region_warm_epochs_train_the_region_runs_longer_in_their_own_folders_from_the_same_cycle_0(tmp_path, monkeypatch):
    """The region runs' 2×-steps check: only ``train.warm_epochs`` changes (cycle 0 stays shared), and the runs,
    whose names repeat the plain region runs', go to OUT/regions-warmN and OUT/regions-dominant-warmN."""
    import segal.report
    import segal.results
    import segal.sweep

    tool = load_tool("label_efficiency")
    plain = load_recipe(RECIPE, tool.region_settings(region_args(tool, warm_epochs=30))[0])
    longer = load_recipe(RECIPE, tool.region_settings(region_args(tool, warm_epochs=30, region_warm_epochs=60))[0])
    assert (plain.train.warm_epochs, longer.train.warm_epochs) == (30, 60)
    assert {**vars(longer.train), "warm_epochs": 30} == vars(plain.train)
    assert tool.region_folders(region_args(tool, warm_epochs=30, region_warm_epochs=60)) == \
        ("regions-warm60", "regions-dominant-warm60")
    assert tool.region_folders(region_args(tool, warm_epochs=30, region_warm_epochs=30)) == ("regions", "regions-dominant")
    calls = []
    monkeypatch.setattr(segal.sweep, "sweep", lambda recipe, strategies, seeds, out, overrides, *a, **kw:
                        calls.append((out, strategies, overrides.get("train.warm_epochs"), kw.get("donors"))))
    monkeypatch.setattr(segal.report, "report", lambda *a, **kw: None)
    monkeypatch.setattr(segal.results, "find_runs", lambda dirs: [])  # no run was made
    argv = ["--quick", "--unit", "region", "--warm-epochs", "30", "--region-warm-epochs", "60",
            "--baselines", "random", "--strategies", "random", "--out", str(tmp_path)]
    assert tool.main(argv) == 0
    assert [c[:3] for c in calls] == [(tmp_path, ["random"], 30), (tmp_path / "regions-warm60", ["random"], 60),
                                      (tmp_path / "regions-dominant-warm60", ["class_balanced"], 60)]
    assert calls[1][3] == calls[2][3] == [tmp_path / "random-seed0"]  # cycle 0 from the image baseline


def test_region_vaal_diversity_runs_go_to_their_own_region_folder_with_the_factor(tmp_path, monkeypatch):
    import segal.report
    import segal.results
    import segal.sweep

    tool = load_tool("label_efficiency")
    assert tool.region_settings(region_args(tool, vaal_diversity=4))[1]["vaal"]["diversity_factor"] == 4
    assert "diversity_factor" not in tool.region_settings(region_args(tool))[1]["vaal"]
    calls = []
    monkeypatch.setattr(segal.sweep, "sweep", lambda recipe, strategies, seeds, out, overrides, *a, **kw:
                        calls.append((out, strategies, kw["strategy_params"])))
    monkeypatch.setattr(segal.report, "report", lambda *a, **kw: None)
    monkeypatch.setattr(segal.results, "find_runs", lambda dirs: [])
    argv = ["--quick", "--unit", "region", "--warm-epochs", "30", "--region-warm-epochs", "180", "--baselines", "random",
            "--strategies", "vaal", "--dominant", "", "--vaal-diversity", "4", "--out", str(tmp_path)]
    assert tool.main(argv) == 0
    assert [c[:2] for c in calls] == [(tmp_path, ["random"]), (tmp_path / "regions-warm180-vaal-diversity-4", ["vaal"])]
    assert calls[1][2]["vaal"]["diversity_factor"] == 4 and "diversity_factor" not in calls[0][2]["vaal"]


def test_a_region_invocation_records_costs_of_its_own_runs_only(tmp_path, monkeypatch):
    """Two invocations split a seed's region strategies over two cores in one OUT: the first to finish must not
    touch the other's run, still training under its lock (it failed with "the run is in use" at the end)."""
    import segal.cost_records
    import segal.report
    import segal.sweep

    tool = load_tool("label_efficiency")
    for name in ("random-seed0", "regions/entropy-seed0", "regions/class_balanced-seed0", "regions-dominant/x-seed0"):
        (tmp_path / name / "cycles").mkdir(parents=True)
        (tmp_path / name / "recipe.yaml").write_text("{}")
    monkeypatch.setattr(segal.sweep, "sweep", lambda *a, **kw: None)
    monkeypatch.setattr(segal.report, "report", lambda *a, **kw: None)
    recorded = []
    monkeypatch.setattr(segal.cost_records, "record_costs", recorded.append)
    argv = ["--quick", "--unit", "region", "--seeds", "0", "--baselines", "random", "--strategies", "class_balanced",
            "--dominant", "", "--out", str(tmp_path)]
    assert tool.main(argv) == 0
    assert recorded == [tmp_path / "random-seed0", tmp_path / "regions" / "class_balanced-seed0"]


def test_region_warm_epochs_are_refused_off_the_warm_started_region_benchmark_in_one_line(capsys):
    tool = load_tool("label_efficiency")
    for argv in (["--region-warm-epochs", "60", "--warm-epochs", "30"], ["--unit", "region", "--region-warm-epochs", "60"],
                 ["--unit", "region", "--warm-epochs", "30", "--region-warm-epochs", "0"]):
        assert tool.main(argv) == 2
        assert "fix: give it with --unit region and --warm-epochs" in capsys.readouterr().out
