"""`segal report` on hand-made run directories with known numbers, in a headless browser, and `segal sweep`."""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.cli import main
from segal.errors import UserError
from segal.report import report
from segal.sweep import parse_strategy, run_name, sweep
from tests.tiny import tiny_recipe

S2 = math.sqrt(2)
FRACTIONS = [0.1, 0.2, 0.4]
CURVES = {  # strategy -> seed -> mIoU at FRACTIONS
    "random": {0: [0.40, 0.50, 0.60], 1: [0.44, 0.54, 0.62]},
    "entropy": {0: [0.40, 0.56, 0.70], 1: [0.42, 0.60, 0.74]},
}


def make_run(root: Path, name: str, strategy: str, seed: int, values: list[float], fractions=FRACTIONS,
             mode: str | None = None, per_class: list[dict] | None = None, queries: list[dict] | None = None) -> Path:
    run = root / name
    params = {"mode": mode} if mode else {}
    recipe = {"name": "hand", "seed": seed, "data": {"dataset": "camvid"},
              "model": {"name": "deeplabv3plus", "encoder": "resnet18"},
              "active": {"strategy": strategy, "strategy_params": params}}
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    for k, (f, v) in enumerate(zip(fractions, values, strict=True)):
        cdir = run / "cycles" / str(k)
        cdir.mkdir(parents=True)
        metrics = {"miou": v, "per_class_iou": (per_class or [{}] * len(values))[k], "cycle": k,
                   "labeled": round(f * 100), "pool": 100, "fraction": f, "strategy": strategy, "seed": seed,
                   "train_seconds": 1.0}
        (cdir / "metrics.json").write_text(json.dumps(metrics))
        if queries and k < len(queries):
            (cdir / "queries.json").write_text(json.dumps({"cycle": k, "seconds": 2.0, "diagnostics": queries[k]}))
    return run


@pytest.fixture
def hand_runs(tmp_path) -> list[Path]:
    return [make_run(tmp_path / "runs", f"{s}-seed{seed}", s, seed, v) for s, seeds in CURVES.items()
            for seed, v in seeds.items()]


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_means_std_auc_gain_match_hand_computation(tmp_path, hand_runs):
    out = report(hand_runs, tmp_path / "out")
    s = summary_of(out)
    assert s["metric"] == "miou" and s["seeds"] == 2 and s["fractions"] == FRACTIONS
    assert list(s["strategies"]) == ["random", "entropy"]  # random first: it is the reference
    rnd, ent = s["strategies"]["random"], s["strategies"]["entropy"]
    assert [p["mean"] for p in rnd["curve"]] == pytest.approx([0.42, 0.52, 0.61])
    assert [p["std"] for p in rnd["curve"]] == pytest.approx([0.04 / S2, 0.04 / S2, 0.02 / S2])  # ddof=1
    assert [p["mean"] for p in ent["curve"]] == pytest.approx([0.41, 0.58, 0.72])
    assert [p["std"] for p in ent["curve"]] == pytest.approx([0.02 / S2, 0.04 / S2, 0.04 / S2])
    assert [p["n"] for p in ent["curve"]] == [2, 2, 2]
    # trapezoid over [0.1, 0.2, 0.4] divided by the 0.3 range
    assert rnd["auc"] == pytest.approx((0.1 * (0.42 + 0.52) / 2 + 0.2 * (0.52 + 0.61) / 2) / 0.3)
    assert ent["auc"] == pytest.approx((0.1 * (0.41 + 0.58) / 2 + 0.2 * (0.58 + 0.72) / 2) / 0.3)
    assert rnd["auc_std"] == pytest.approx(abs(0.155 / 0.3 - 0.165 / 0.3) / S2)  # per-seed areas 0.5167, 0.55
    # 95% of the best final mean (entropy, 0.72) = 0.684: entropy gets there at 40%, random never
    assert s["best_final"] == {"strategy": "entropy", "mean": pytest.approx(0.72)}
    assert s["threshold"] == pytest.approx(0.684)
    assert ent["fraction_to_target"] == 0.4 and rnd["fraction_to_target"] is None
    assert [g["gain"] for g in ent["gain_over_random"]] == pytest.approx([-0.01, 0.06, 0.11])
    assert rnd["gain_over_random"] is None
    # labels random needs for entropy's means 0.41, 0.58, 0.72 on random's 0.42, 0.52, 0.61 (10%, 20%, 40%):
    # 0.41 ≤ 0.42: at most 10%; 0.58 = 0.52 + (2/3)·0.09 → 20% + (2/3)·20% = 33.3%; 0.72 > 0.61: more than 40%
    needs = ent["savings"]
    assert [v["bound"] for v in needs] == ["at_most", "exact", "more"] and rnd["savings"] is None
    assert [v["baseline_needs"] for v in needs] == pytest.approx([0.1, 0.2 + 0.2 * 0.06 / 0.09, 0.4])
    assert [v["ratio"] for v in needs] == pytest.approx([1.0, 0.6, 1.0])
    md = (out / "table.md").read_text()
    assert "| 20 (20.0%) | 33.3% (0.60×) |" in md and "| 40 (40.0%) | > 40.0% (< 1.00×) |" in md
    assert "| 10 (10.0%) | ≤ 10.0% (≥ 1.00×) |" in md


def test_lower_target_is_reached_earlier(tmp_path, hand_runs):
    s = summary_of(report(hand_runs, tmp_path / "out", target=0.8))  # 0.8 × 0.72 = 0.576
    assert s["strategies"]["entropy"]["fraction_to_target"] == 0.2  # 0.58 ≥ 0.576
    assert s["strategies"]["random"]["fraction_to_target"] == 0.4  # 0.52 < 0.576 ≤ 0.61


def test_single_seed_has_zero_std_and_unaligned_fractions_round(tmp_path):
    a = make_run(tmp_path, "a", "random", 0, [0.3, 0.5], fractions=[0.1, 0.2])
    b = make_run(tmp_path, "b", "random", 1, [0.5, 0.7], fractions=[0.100004, 0.2])  # same budget at 4 decimals
    c = make_run(tmp_path, "c", "margin", 0, [0.4], fractions=[0.1])
    s = summary_of(report([a, b, c], tmp_path / "out"))
    rnd, margin = s["strategies"]["random"], s["strategies"]["margin"]
    assert [p["fraction"] for p in rnd["curve"]] == [0.1, 0.2]
    assert [p["mean"] for p in rnd["curve"]] == pytest.approx([0.4, 0.6])
    assert margin["curve"][0]["std"] == 0.0 and margin["curve"][0]["n"] == 1
    # AUC over the budgets every strategy reached (only 10%): the value there
    assert s["common_fractions"] == [0.1]
    assert rnd["auc"] == pytest.approx(0.4) and margin["auc"] == pytest.approx(0.4)


def test_per_class_and_diagnostics_and_vaal_modes(tmp_path):
    pc0 = [{"road": 0.2, "pole": None}, {"road": 0.5, "pole": 0.1}]
    pc1 = [{"road": 0.4, "pole": 0.6}, {"road": 0.7, "pole": None}]
    q0 = [{"auroc": 0.6, "class_histogram": {"road": 0.25, "pole": 0.75}}]
    q1 = [{"auroc": 0.8, "class_histogram": {"road": 0.75, "pole": 0.25}}]
    runs = [
        make_run(tmp_path, "vaal-paper-seed0", "vaal", 0, [0.3, 0.4], [0.1, 0.2], "paper", pc0, q0),
        make_run(tmp_path, "vaal-paper-seed1", "vaal", 1, [0.3, 0.4], [0.1, 0.2], "paper", pc1, q1),
        make_run(tmp_path, "vaal-seed0", "vaal", 0, [0.3, 0.5], [0.1, 0.2]),
    ]
    out = report(runs, tmp_path / "out")
    s = summary_of(out)
    assert sorted(s["strategies"]) == ["vaal", "vaal (paper)"]
    paper = s["strategies"]["vaal (paper)"]
    assert paper["mode"] == "paper" and paper["seeds"] == [0, 1]
    assert paper["per_class"][0]["classes"] == {"road": pytest.approx(0.3), "pole": pytest.approx(0.6)}  # None skipped
    assert paper["per_class"][1]["classes"] == {"road": pytest.approx(0.6), "pole": pytest.approx(0.1)}
    (d,) = paper["diagnostics"]
    assert d["cycle"] == 0 and d["fraction"] == 0.1 and d["n"] == 2
    assert d["auroc"] == pytest.approx(0.7)
    assert d["class_histogram"] == {"road": pytest.approx(0.5), "pole": pytest.approx(0.5)}
    assert s["strategies"]["vaal"]["diagnostics"] == []
    settings = {row["key"]: row["values"] for row in s["settings"]}  # only the paper runs set a mode
    assert settings["active.strategy_params.mode"] == {"vaal (paper)": ["paper"]}
    page = (out / "report.html").read_text()
    assert "discriminator AUROC" in page and "0.700" in page and "vaal (paper)" in page
    assert "Per-class IoU" in page and "<th>pole</th>" in page


def test_default_mode_is_not_a_separate_group(tmp_path):
    from segal.strategies import STRATEGIES

    if "vaal" not in STRATEGIES:
        pytest.skip("the vaal strategy is not registered in this checkout")
    default = next(f.default for f in dataclasses.fields(STRATEGIES.get("vaal").Params) if f.name == "mode")
    runs = [make_run(tmp_path, "a", "vaal", 0, [0.3], [0.1], mode=default), make_run(tmp_path, "b", "vaal", 1, [0.5], [0.1])]
    assert list(summary_of(report(runs, tmp_path / "out"))["strategies"]) == ["vaal"]


def test_files_png_csv_md_html(tmp_path, hand_runs):
    out = report(hand_runs, tmp_path / "out")
    image = matplotlib.image.imread(out / "curves.png")
    assert image.shape[0] >= 300 and image.shape[1] >= 400
    assert image[..., :3].std() > 0.05  # lines and text, not a blank canvas
    rows = list(csv.reader((out / "table.csv").open()))
    assert rows[0] == ["labeled_percent", "random mean", "random std", "random n",
                       "entropy mean", "entropy std", "entropy n"]
    assert [float(v) for v in rows[3][4:6]] == pytest.approx([72.0, 4 / S2], abs=1e-4)
    md = (out / "table.md").read_text()
    assert "| 40 (40.0%) | 61.00 ± 1.41 | 72.00 ± 2.83 |" in md
    page = (out / "report.html").read_text()
    embedded = re.search(r'<img id="curves"[^>]*src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(embedded) == (out / "curves.png").read_bytes()
    assert '<table id="results">' in page
    assert not re.search(r'(src|href)="(?!data:)', page) and "<link" not in page and "@import" not in page


def test_parent_dir_is_searched_and_default_out(tmp_path, hand_runs):
    root = tmp_path / "runs"
    out = report([root])
    assert out == root.resolve() / "report"
    assert len(summary_of(out)["strategies"]["random"]["runs"]) == 2
    again = report([root])  # the report folder itself is not mistaken for a run
    assert summary_of(again)["strategies"]["entropy"]["curve"][2]["n"] == 2


def test_errors_are_user_errors(tmp_path, hand_runs):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds none"):
        report([tmp_path / "empty"], tmp_path / "o")
    with pytest.raises(UserError, match="no such run directory"):
        report([tmp_path / "missing"])
    bare = tmp_path / "bare"
    (bare / "cycles" / "0").mkdir(parents=True)
    (bare / "recipe.yaml").write_text("name: x\n")
    with pytest.raises(UserError, match="no evaluated cycle"):
        report([hand_runs[0], bare], tmp_path / "o")
    acc = make_run(tmp_path, "acc", "random", 0, [0.5], fractions=[0.1])
    m = acc / "cycles" / "0" / "metrics.json"
    m.write_text(json.dumps({**{k: v for k, v in json.loads(m.read_text()).items() if k != "miou"}, "accuracy": 0.5}))
    with pytest.raises(UserError, match="mix segmentation"):
        report([hand_runs[0], acc], tmp_path / "o")
    with pytest.raises(UserError):
        report([], tmp_path / "o")


def test_cli_report_with_target(tmp_path, hand_runs, capsys):
    code = main(["report", *map(str, hand_runs), "--out", str(tmp_path / "cli"), "--target", "0.8"])
    assert code == 0
    assert summary_of(tmp_path / "cli")["target"] == 0.8
    assert "entropy" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing-here")]) == 2


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium) — browser check skipped")
def test_report_renders_in_headless_chromium(tmp_path, hand_runs):
    out = report(hand_runs, tmp_path / "out")
    url = (out / "report.html").resolve().as_uri()
    flags = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=2000",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    table = re.search(r'<table id="results">.*?</table>', dom, re.S).group(0)
    body_rows = re.findall(r"<tr><td>(.*?)</td>", table)
    assert body_rows == ["10 (10.0%)", "20 (20.0%)", "40 (40.0%)"]
    assert "72.00 ± 2.83" in table
    img = re.search(r'<img[^>]*id="curves"[^>]*>', dom).group(0)
    width = int(re.search(r'data-rendered-width="(\d+)"', img).group(1))  # set by the page's script on load
    assert width == matplotlib.image.imread(out / "curves.png").shape[1]

    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,900", f"--screenshot={shot}", url], capture_output=True, timeout=120)
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (900, 1200)
    # the curve's coloured lines are on screen: matplotlib's default blue (#1f77b4) appears
    blue = np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255).max(axis=-1) < 0.08
    assert blue.sum() > 100


# ---------------------------------------------------------------------------- sweep

def test_strategy_specs():
    assert parse_strategy("vaal:paper") == ("vaal", "paper") and parse_strategy("entropy") == ("entropy", None)
    assert run_name("vaal:paper", 0) == "vaal-paper-seed0" and run_name("random", 3) == "random-seed3"
    with pytest.raises(UserError):
        parse_strategy("vaal:paper:x")


def write_tiny_recipe(tmp_path: Path) -> Path:
    data = tiny_recipe(tmp_path)
    data["active"]["cycles"] = 1
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_sweep_unknown_strategy_fails_before_training(tmp_path):
    with pytest.raises(UserError, match="unknown strategy 'nope'"):
        sweep(write_tiny_recipe(tmp_path), ["random", "nope"], [0], tmp_path / "sweep", {})
    assert not (tmp_path / "sweep" / "random-seed0").exists()
    # the mode reaches active.strategy_params: entropy has no `mode` parameter, so it is refused up front
    with pytest.raises(UserError, match="active.strategy_params.mode"):
        sweep(write_tiny_recipe(tmp_path), ["entropy:paper"], [0], tmp_path / "sweep", {})
    assert not (tmp_path / "sweep").exists()


def test_strategy_params_belong_to_their_strategy():
    from segal.sweep import _params

    extra = {"vaal": {"latent_dim": 8}, "vaal:paper": {"epochs": 3}}
    assert _params("vaal:paper", "vaal", {"beta": 1}, extra) == {"beta": 1, "latent_dim": 8, "epochs": 3, "mode": "paper"}
    assert _params("vaal", "entropy", {"beta": 1}, extra) == {"latent_dim": 8}
    assert _params("random", "vaal", {"beta": 1}, extra) == {}


def test_cli_sweep_bad_lists_exit_2(tmp_path, capsys):
    recipe = str(write_tiny_recipe(tmp_path))
    assert main(["sweep", recipe, "--strategies", "random,nope", "--out", str(tmp_path / "s"), "--quiet"]) == 2
    assert "unknown strategy 'nope'" in capsys.readouterr().err
    assert main(["sweep", recipe, "--strategies", "random", "--seeds", "0,x", "--out", str(tmp_path / "s")]) == 2
    assert "bad seeds list" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_runs_grid_reports_and_rerun_retrains_nothing(tmp_path):
    from segal.config import load_recipe
    from segal.loop import ActiveLoop
    from segal.runs import start_run

    recipe = write_tiny_recipe(tmp_path)
    out = tmp_path / "sweep"
    # an interrupted run: only cycle 0 trained before the "kill"
    overrides = {"train.steps": 2}
    partial = load_recipe(recipe, {**overrides, "output_dir": str(out / "entropy-seed0")})
    ActiveLoop(start_run(partial, str(recipe)), max_cycles=1).run_loop()
    first_task = out / "entropy-seed0" / "cycles" / "0" / "task.pt"
    first_mtime = first_task.stat().st_mtime_ns

    dirs = sweep(recipe, ["random", "entropy"], [0], out, overrides)
    assert [d.name for d in dirs] == ["random-seed0", "entropy-seed0"]
    assert first_task.stat().st_mtime_ns == first_mtime  # resumed, not restarted
    assert "resume" in (out / "entropy-seed0" / "log.jsonl").read_text()
    s = summary_of(out / "report")
    assert list(s["strategies"]) == ["random", "entropy"]
    assert [p["fraction"] for p in s["strategies"]["entropy"]["curve"]] == [0.2, 0.3]  # 8 and 12 of 40
    assert (out / "report" / "report.html").is_file()

    tasks = sorted(out.glob("*/cycles/*/task.pt"))
    assert len(tasks) == 4
    before = {p: p.stat().st_mtime_ns for p in tasks}
    logs = {d: (d / "log.jsonl").read_text() for d in dirs}
    sweep(recipe, ["random", "entropy"], [0], out, overrides)
    assert {p: p.stat().st_mtime_ns for p in tasks} == before
    assert {d: (d / "log.jsonl").read_text() for d in dirs} == logs  # finished runs are skipped outright


# ---------------------------------------------------------------------------- paired statistics, ceiling

PAIRED = {  # strategy -> seed -> mIoU at 10%, 20%, 40%
    "random": {0: [0.40, 0.50, 0.56], 1: [0.42, 0.52, 0.57], 2: [0.44, 0.54, 0.58]},
    "entropy": {0: [0.43, 0.55, 0.61], 1: [0.46, 0.56, 0.56], 2: [0.46, 0.57, 0.60]},
}
T975_2 = 4.303  # Student t quantile t(0.975, 2), from the table


def write_state(run: Path, initial: list[int], fingerprint: str = "pool-a") -> Path:
    (run / "state.json").write_text(json.dumps({"labeled": {"0": initial}, "pool_fingerprint": fingerprint}))
    return run


def paired_runs(root: Path, initial_of=lambda strategy, seed: [seed, seed + 10]) -> list[Path]:
    return [write_state(make_run(root, f"{s}-seed{seed}", s, seed, v), initial_of(s, seed))
            for s, seeds in PAIRED.items() for seed, v in seeds.items()]


def test_paired_gain_and_t_interval_match_hand_computation(tmp_path):
    s = summary_of(report(paired_runs(tmp_path / "runs"), tmp_path / "out"))
    paired = s["strategies"]["entropy"]["paired"]
    assert s["warnings"] == [] and paired["pairs"] == 3 and s["strategies"]["random"]["paired"] is None
    at = {g["fraction"]: g for g in paired["per_budget"]}
    assert at[0.1]["gains"] == pytest.approx([0.03, 0.04, 0.02]) and at[0.1]["seeds"] == [0, 1, 2]
    # gains 0.03, 0.04, 0.02: mean 0.03, sd 0.01 → 0.03 ± 4.303 · 0.01 / √3
    half = T975_2 * 0.01 / math.sqrt(3)
    assert at[0.1]["mean"] == pytest.approx(0.03)
    assert at[0.1]["ci"] == pytest.approx([0.03 - half, 0.03 + half], abs=1e-5) and at[0.1]["real"]
    assert at[0.2]["mean"] == pytest.approx(0.04) and at[0.2]["real"]
    # gains 0.05, −0.01, 0.02: mean 0.02, sd 0.03 → the interval holds 0, so no real difference
    half = T975_2 * 0.03 / math.sqrt(3)
    assert at[0.4]["ci"] == pytest.approx([0.02 - half, 0.02 + half], abs=1e-5) and not at[0.4]["real"]
    # AUC gain per seed: trapezoid over [0.1, 0.2, 0.4] of the per-budget gains, divided by 0.3
    auc = [(0.1 * (a + b) / 2 + 0.2 * (b + c) / 2) / 0.3 for a, b, c in [(0.03, 0.05, 0.05), (0.04, 0.04, -0.01),
                                                                         (0.02, 0.03, 0.02)]]
    mean, sd = np.mean(auc), np.std(auc, ddof=1)
    assert paired["auc"]["gains"] == pytest.approx(auc)
    assert paired["auc"]["ci"] == pytest.approx([mean - T975_2 * sd / math.sqrt(3), mean + T975_2 * sd / math.sqrt(3)],
                                                abs=1e-5)
    assert paired["auc"]["real"] == (mean - T975_2 * sd / math.sqrt(3) > 0)
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| 10 (10.0%) | +3.00 [+0.52, +5.48] * |" in md and "| 40 (40.0%) | +2.00 [-5.45, +9.45] |" in md
    assert 'id="paired"' in (tmp_path / "out" / "report.html").read_text()


def test_baseline_needs_is_the_first_crossing_of_the_interpolated_curve():
    from segal.results import baseline_needs

    xs, ys = [0.1, 0.2, 0.3], [0.5, 0.4, 0.6]  # not monotone: the first crossing counts
    assert baseline_needs(xs, ys, 0.55) == (pytest.approx(0.275), "exact")  # 0.2 + (0.15 / 0.2) · 0.1
    assert baseline_needs(xs, ys, 0.45) == (0.1, "at_most")
    assert baseline_needs(xs, ys, 0.6) == (pytest.approx(0.3), "exact")
    assert baseline_needs(xs, ys, 0.61) == (0.3, "more")


def test_t_quantiles_against_known_values():
    from segal.results import t_quantile_975

    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3) and t_quantile_975(2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile_975(30) == pytest.approx(2.042, abs=1e-3) and t_quantile_975(60) == pytest.approx(2.000, abs=1e-3)
    assert t_quantile_975(10**6) == pytest.approx(1.960, abs=1e-3)
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in [*range(1, 41), 60, 120, 1000]:
        assert t_quantile_975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=1e-4)


def test_unpaired_initial_sets_are_left_out_with_a_warning(tmp_path):
    runs = paired_runs(tmp_path / "runs", lambda s, seed: [99, 98] if (s, seed) == ("entropy", 2) else [seed, seed + 10])
    (runs[0] / "state.json").unlink()  # random seed 0: cannot be checked, kept
    s = summary_of(report(runs, tmp_path / "out"))
    paired = s["strategies"]["entropy"]["paired"]
    assert paired["pairs"] == 2 and [g["seeds"] for g in paired["per_budget"]] == [[0, 1]] * 3
    assert len(s["warnings"]) == 2
    assert "entropy seed 2" in s["warnings"][1] and "left out" in s["warnings"][1]
    assert "cannot check" in s["warnings"][0]
    assert "warning: entropy seed 2" in (tmp_path / "out" / "table.md").read_text()


def test_ceiling_run_is_a_line_and_a_reference(tmp_path):
    runs = paired_runs(tmp_path / "runs")
    ceilings = [make_run(tmp_path / "runs" / "ceiling", f"random-seed{seed}", "random", seed, [v], fractions=[1.0])
                for seed, v in enumerate([0.60, 0.62, 0.64])]
    out = report(runs + ceilings, tmp_path / "out")
    s = summary_of(out)
    assert list(s["strategies"]) == ["random", "entropy"]  # the ceiling is no strategy and has no curve
    assert s["ceiling"]["mean"] == pytest.approx(0.62) and s["ceiling"]["n"] == 3
    assert s["ceiling"]["std"] == pytest.approx(0.02)
    rnd, ent = s["strategies"]["random"], s["strategies"]["entropy"]
    assert rnd["of_ceiling"] == pytest.approx(0.57 / 0.62) and ent["of_ceiling"] == pytest.approx(0.59 / 0.62)
    # 90% of 0.62 = 0.558, 95% = 0.589: random 0.52 → 0.57 reaches 90% at 40% only; entropy 0.56 at 20%, 0.59 at 40%
    assert rnd["fraction_to_ceiling"] == {"0.9": 0.4, "0.95": None}
    assert ent["fraction_to_ceiling"] == {"0.9": 0.2, "0.95": 0.4}
    # what random (0.42, 0.52, 0.57) needs for entropy's result there: 0.56 at 20% → 20% + 0.8 · 20% = 36%
    # (entropy used 0.2 / 0.36 of it); 0.59 at 40% → random never gets there
    assert ent["at_ceiling"]["0.9"]["baseline_needs"] == pytest.approx(0.36)
    assert ent["at_ceiling"]["0.9"]["ratio"] == pytest.approx(0.2 / 0.36)
    assert ent["at_ceiling"]["0.95"]["bound"] == "more" and rnd["at_ceiling"] is None
    md = (out / "table.md").read_text()
    assert "ceiling (whole pool labeled, 3 seeds): mIoU 62.00 ± 2.00" in md
    assert "| 91.9 | 40 (40.0%) | never |" in md  # random: 57/62 of the ceiling
    assert "| entropy | 20 (20.0%) | 36.0% (0.56×) | 40 (40.0%) | > 40.0% (< 1.00×) |" in md
    assert 'id="at-ceiling"' in (out / "report.html").read_text()
    assert "ceiling (whole pool labeled" in (out / "report.html").read_text()
    with_line = matplotlib.image.imread(out / "curves.png")
    without = matplotlib.image.imread(report(runs, tmp_path / "plain") / "curves.png")
    assert with_line.shape == without.shape and not np.array_equal(with_line, without)  # the line is drawn


def test_cli_ceiling_trains_on_the_whole_pool_beside_the_run(tmp_path, capsys):
    recipe = write_tiny_recipe(tmp_path)  # output_dir: tmp_path/run
    assert main(["acquire", str(recipe), "--ceiling", "--steps", "2", "--quiet"]) == 0
    ceiling = tmp_path / "run-ceiling"
    assert not (tmp_path / "run").exists()  # the recipe's own run directory is left alone
    assert sorted(p.name for p in (ceiling / "cycles").iterdir()) == ["0"]
    metrics = json.loads((ceiling / "cycles" / "0" / "metrics.json").read_text())
    assert metrics["fraction"] == 1.0 and metrics["labeled"] == metrics["pool"] == 40
    rnd = make_run(tmp_path / "runs", "random-seed0", "random", 0, [0.3, 0.4], fractions=[0.2, 0.3])
    s = summary_of(report([rnd, ceiling], tmp_path / "out"))
    assert list(s["strategies"]) == ["random"] and s["ceiling"]["mean"] == pytest.approx(metrics["miou"])
    assert s["ceiling"]["runs"] == [str(ceiling)]


def test_paired_runs_with_different_training_are_flagged(tmp_path):
    runs = paired_runs(tmp_path / "runs")
    recipe = yaml.safe_load((runs[3] / "recipe.yaml").read_text())  # entropy seed 0
    recipe["train"] = {"steps": 800}
    (runs[3] / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    s = summary_of(report(runs, tmp_path / "out"))
    assert s["strategies"]["entropy"]["paired"]["pairs"] == 3
    assert len(s["warnings"]) == 1 and "entropy seed 0" in s["warnings"][0] and "train.steps" in s["warnings"][0]


def test_budgets_spreads_settings_and_version_as_a_person_reads_them(tmp_path):
    """Issue 17: labeled counts beside %, ± std in per-class tables, the AUROC's spread and interval,
    the settings and the segal version used."""
    pc0 = [{"road": 0.2, "pole": None}, {"road": 0.5, "pole": 0.1}]
    pc1 = [{"road": 0.4, "pole": 0.6}, {"road": 0.7, "pole": None}]
    q0, q1 = [{"auroc": 0.6, "auroc_ci": [0.5, 0.7]}], [{"auroc": 0.8, "auroc_ci": [0.7, 0.9]}]
    runs = [make_run(tmp_path, f"vaal-seed{seed}", "vaal", seed, [0.3, 0.4], [0.1011, 0.2022], None, pc, q)
            for seed, pc, q in ((0, pc0, q0), (1, pc1, q1))]
    for run in runs:  # a pool of 366: 37 and 74 labeled; seed 1 trained with another lr
        for k, n in enumerate((37, 74)):
            m = run / "cycles" / str(k) / "metrics.json"
            m.write_text(json.dumps({**json.loads(m.read_text()), "labeled": n, "pool": 366,
                                     "segal_version": "9.8.7"}))
    recipe = yaml.safe_load((runs[1] / "recipe.yaml").read_text())
    (runs[1] / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "train": {"lr": 0.01}}))
    out = report(runs, tmp_path / "out")
    s = summary_of(out)
    assert s["budgets"] == [{"fraction": 0.1011, "labeled": 37.0}, {"fraction": 0.2022, "labeled": 74.0}]
    pc = s["strategies"]["vaal"]["per_class"][0]
    assert pc["classes"]["road"] == pytest.approx(0.3) and pc["std"]["road"] == pytest.approx(0.2 / S2)
    assert pc["n"] == {"road": 2, "pole": 1} and pc["std"]["pole"] == 0.0
    (d,) = s["strategies"]["vaal"]["diagnostics"]
    assert d["auroc_n"] == 2 and d["auroc_std"] == pytest.approx(0.2 / S2)
    assert d["auroc_seeds_ci"] == [0.0, 1.0]  # 0.7 ± 12.706·0.1414/√2 = [-0.57, 1.97], clipped to [0, 1]
    settings = {row["key"]: row["values"] for row in s["settings"]}
    assert settings["data.dataset"] == {"all": "camvid"} and settings["train.lr"] == {"vaal": ["–", "0.01"]}
    assert "seed" not in settings and s["segal_versions"] == ["9.8.7"]
    page = (out / "report.html").read_text()
    results = re.search(r'<table id="results">.*?</table>', page, re.S).group(0)
    assert re.findall(r"<tr><td>(.*?)</td>", results) == ["37 (10.1%)", "74 (20.2%)"]
    assert "<td>37 (10.1%)</td><td>30.0 ± 14.1</td><td>60.0</td>" in page  # road: 2 seeds; pole: 1
    assert "<td>0.700 ± 0.141 (n = 2)</td><td>[0.000, 1.000]</td><td>[0.50, 0.70]; [0.70, 0.90]</td>" in page
    assert "lr [vaal: – / 0.01]" in page and "<td>data</td><td>dataset camvid</td>" in page and "segal 9.8.7" in page
    md = (out / "table.md").read_text()  # the AUROC is in the table's notes too, not only the HTML page
    assert "| vaal | 0 | 37 (10.1%) | 0.700 ± 0.141 (n = 2) | [0.000, 1.000] | [0.50, 0.70]; [0.70, 0.90] |" in md


def test_one_seed_auroc_shows_its_own_interval(tmp_path):
    run = make_run(tmp_path, "vaal-seed0", "vaal", 0, [0.3, 0.4], [0.1, 0.2],
                   queries=[{"auroc": 0.6, "auroc_ci": [0.45, 0.75]}])
    out = report([run], tmp_path / "out")
    page = (out / "report.html").read_text()
    assert "<td>0.600 (n = 1)</td><td>[0.450, 0.750]</td><td>[0.45, 0.75]</td>" in page
    assert "| vaal | 0 | 10 (10.0%) | 0.600 (n = 1) | [0.450, 0.750] | [0.45, 0.75] |" in (out / "table.md").read_text()
    assert "segal version: not recorded" in page


def test_curves_legend_covers_no_point(tmp_path, hand_runs):
    """The legend sits outside the axes: no plotted point (the last budgets included) lies under it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from segal.report import curves_figure
    from segal.results import find_runs, load_run, summarize

    summary = summarize([load_run(d) for d in find_runs(hand_runs)])
    fig = curves_figure(summary)
    FigureCanvasAgg(fig).draw()  # lays the figure out as savefig does
    (ax,) = fig.axes
    (legend,) = fig.legends
    box = legend.get_window_extent()
    points = [ax.transData.transform(xy) for line in ax.get_lines() for xy in line.get_xydata()]
    assert len(points) == 6
    assert not any(box.contains(x, y) for x, y in points)
    assert box.x0 >= ax.get_window_extent().x1  # right of the axes
    (top,) = ax.child_axes  # labeled counts on top: every budget is a pool of 100
    assert top.get_xlabel() == "labeled images"


def test_the_report_states_each_strategys_cpu_hours_per_run(tmp_path, hand_runs):
    before = report(hand_runs, tmp_path / "before")  # no run recorded CPU time: no table, no guess
    assert summary_of(before)["compute"] is None and "CPU hours" not in (before / "table.md").read_text()
    for run in hand_runs:  # 3 cycles of 100 steps at 0.5 CPU s, random acquiring in 1 s, entropy in 7 s
        for k in range(3):
            (run / "cycles" / str(k) / "train.json").write_text(json.dumps({"steps": 100, "cpu_seconds": 50.0}))
            if k < 2:
                cpu = 1.0 if run.name.startswith("random") else 7.0
                (run / "cycles" / str(k) / "queries.json").write_text(json.dumps({"cycle": k, "cpu_seconds": cpu}))
    out = report(hand_runs, tmp_path / "out")
    c = summary_of(out)["compute"]
    assert c["per_run"]["random"]["total"] == pytest.approx(152 / 3600)
    assert c["per_run"]["entropy"]["total"] == pytest.approx(164 / 3600) and c["estimated_hours"] == 0
    md = (out / "table.md").read_text()
    assert "CPU hours per run" in md and "| entropy | 2 | 0.04 | 0.00 | 0.00 | 0.05 | 0.00 |" in md
    assert 'id="compute"' in (out / "report.html").read_text()


def test_runs_differing_in_a_strategy_parameter_get_their_own_label(tmp_path):
    """vaal runs with and without VAAL's diversity step are two curves, not one curve of four seeds; a parameter
    every vaal run shares (or that only equals the default) names nothing."""
    runs = []
    for seed in (0, 1):
        runs.append(make_run(tmp_path, f"random-seed{seed}", "random", seed, [0.30, 0.40], fractions=[0.1, 0.2]))
        for name, params in (("vaal", {"width": 32}), ("vaal-div", {"width": 32, "diversity_factor": 4}),
                             ("vaal-paper", {"width": 32, "mode": "paper"})):
            run = make_run(tmp_path, f"{name}-seed{seed}", "vaal", seed, [0.30, 0.40 + 0.01 * len(params)],
                           fractions=[0.1, 0.2])
            recipe = yaml.safe_load((run / "recipe.yaml").read_text())
            recipe["active"]["strategy_params"] = params
            (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
            runs.append(run)
    strategies = summary_of(report(runs, tmp_path / "out"))["strategies"]
    assert sorted(strategies) == ["random", "vaal (diversity_factor=0)", "vaal (diversity_factor=4)", "vaal (paper)"]
    assert strategies["vaal (diversity_factor=4)"]["seeds"] == [0, 1]
    assert strategies["vaal (diversity_factor=4)"]["final"]["mean"] == pytest.approx(0.42)
    assert strategies["vaal (diversity_factor=0)"]["final"]["mean"] == pytest.approx(0.41)


def test_runs_of_one_seed_differing_in_training_are_two_curves_not_one_mean(tmp_path):
    """The same seed's runs trained for different numbers of steps (the region schedule check: warm_epochs 30
    against 180) would otherwise be one label with a seed counted twice and a made-up std."""
    runs = [make_run(tmp_path, "random-seed0", "random", 0, [0.30, 0.40], fractions=[0.1, 0.2])]
    for name, warm, final in (("short", 30, 0.36), ("long", 180, 0.44)):
        run = make_run(tmp_path / name, "entropy-seed0", "entropy", 0, [0.30, final], fractions=[0.1, 0.2])
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        recipe.setdefault("train", {})["warm_epochs"] = warm
        (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        runs.append(run)
    strategies = summary_of(report(runs, tmp_path / "out"))["strategies"]
    assert sorted(strategies) == ["entropy (train.warm_epochs=180)", "entropy (train.warm_epochs=30)", "random"]
    assert strategies["entropy (train.warm_epochs=180)"]["final"]["mean"] == pytest.approx(0.44)
    assert strategies["entropy (train.warm_epochs=30)"]["seeds"] == [0]
    # seeds 0 and 1 of one schedule stay one label, even if their training settings differ
    other = make_run(tmp_path / "other", "entropy-seed1", "entropy", 1, [0.30, 0.38], fractions=[0.1, 0.2])
    recipe = yaml.safe_load((other / "recipe.yaml").read_text())
    recipe.setdefault("train", {})["warm_epochs"] = 31
    (other / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    strategies = summary_of(report([runs[0], runs[1], other], tmp_path / "out2"))["strategies"]
    assert sorted(strategies) == ["entropy", "random"] and strategies["entropy"]["seeds"] == [0, 1]


def test_a_seed_given_twice_with_the_same_settings_is_warned_about(tmp_path):
    """A run and its copy (two record folders passed at once) cannot be told apart by any setting; the
    report still draws them, but says that the seed is counted twice."""
    runs = [make_run(tmp_path / name, "random-seed0", "random", 0, [0.30, 0.40], fractions=[0.1, 0.2])
            for name in ("a", "b")]
    s = summary_of(report(runs, tmp_path / "out"))
    (w,) = s["warnings"]
    assert "random seed 0: 2 runs" in w and str(runs[0]) in w and str(runs[1]) in w
    assert "warning: random seed 0" in (tmp_path / "out" / "table.md").read_text()
    other = make_run(tmp_path / "c", "random-seed1", "random", 1, [0.30, 0.40], fractions=[0.1, 0.2])
    assert summary_of(report([runs[0], other], tmp_path / "out2"))["warnings"] == []
    # ceilings of one seed at two schedules (1x and 2x steps) would be one mean over a seed counted twice
    ceilings = [make_run(tmp_path / name / "ceiling", "random-seed1", "random", 1, [v], fractions=[1.0])
                for name, v in (("x1", 0.53), ("x2", 0.56))]
    (w,) = summary_of(report([runs[0], *ceilings], tmp_path / "out3"))["warnings"]
    assert w.startswith("ceiling seed 1: 2 runs")
