"""tools/run_records.py: a finished grid's records survive a fresh machine — saved without weights,
restored, skipped as finished by the sweep, and reported as the original runs were."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.config import load_recipe
from segal.loop import ActiveLoop
from segal.report import report
from segal.runs import start_run
from segal.sweep import sweep
from tests.test_report import write_tiny_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import run_records  # noqa: E402

OVERRIDES = {"train.steps": 2}


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("records")
    recipe = write_tiny_recipe(tmp)
    out = tmp / "grid"
    sweep(recipe, ["random", "entropy"], [0], out, OVERRIDES, write_report=False)
    # an unfinished run: cycle 0 trained, then the "kill"
    partial = load_recipe(recipe, {**OVERRIDES, "output_dir": str(out / "coreset-seed0"), "active.strategy": "coreset"})
    ActiveLoop(start_run(partial, str(recipe)), max_cycles=1).run_loop()
    return recipe, out


def summary(out: Path) -> dict:
    """The report's numbers per strategy, without the run folders' paths (which moved)."""
    strategies = json.loads((out / "summary.json").read_text())["strategies"]
    return {name: {k: v for k, v in s.items() if k != "runs"} for name, s in strategies.items()}


def test_save_keeps_records_not_weights_and_leaves_unfinished_out(grid, tmp_path, capsys):
    _, out = grid
    records = tmp_path / "records"
    assert run_records.main(["save", str(out), str(records)]) == 0
    printed = capsys.readouterr().out
    assert "2 run(s) saved, 1 left out" in printed and "coreset-seed0" in printed
    assert sorted(p.name for p in records.iterdir()) == ["entropy-seed0", "random-seed0"]
    kept = sorted(str(p.relative_to(records / "random-seed0")) for p in (records / "random-seed0").rglob("*")
                  if p.is_file())
    assert kept == ["cycles/0/metrics.json", "cycles/0/queries.json", "cycles/0/train.json",
                    "cycles/1/metrics.json", "cycles/1/train.json", "log.jsonl", "recipe.yaml", "state.json"]
    for name in kept:  # byte for byte
        assert (records / "random-seed0" / name).read_bytes() == (out / "random-seed0" / name).read_bytes()
    assert list(out.rglob("task.pt")) and not list(records.rglob("*.pt"))
    # saving again changes nothing, and the report reads the records folder itself
    assert run_records.main(["save", str(out), str(records)]) == 0
    assert summary(report([records], tmp_path / "from-records")) == \
        summary(report([out / "random-seed0", out / "entropy-seed0"], tmp_path / "from-runs"))


def test_restored_runs_are_skipped_by_the_sweep_and_report_alike(grid, tmp_path):
    recipe, out = grid
    records = tmp_path / "records"
    run_records.main(["save", str(out), str(records)])
    fresh = tmp_path / "fresh-machine"
    assert run_records.main(["restore", str(records), str(fresh)]) == 0
    logs = {p: p.read_bytes() for p in fresh.rglob("log.jsonl")}
    assert len(logs) == 2
    dirs = sweep(recipe, ["random", "entropy"], [0], fresh, OVERRIDES, write_report=False)
    assert [d.name for d in dirs] == ["random-seed0", "entropy-seed0"]
    assert not list(fresh.rglob("task.pt"))  # finished: nothing retrained
    assert {p: p.read_bytes() for p in fresh.rglob("log.jsonl")} == logs
    assert summary(report(dirs, tmp_path / "a")) == \
        summary(report([out / "random-seed0", out / "entropy-seed0"], tmp_path / "b"))
    # a run already in the grid is left alone, even where it differs from its record
    (fresh / "random-seed0" / "log.jsonl").write_bytes(b"this machine's own\n")
    done = run_records.restore_records(records, fresh)
    assert done.copied == [] and len(done.skipped) == 2
    assert (fresh / "random-seed0" / "log.jsonl").read_bytes() == b"this machine's own\n"


def test_bad_folders_are_one_line_exit_2(grid, tmp_path, capsys):
    _, out = grid
    assert run_records.main(["save", str(tmp_path / "nope"), str(tmp_path / "r")]) == 2
    err = capsys.readouterr().out
    assert "no such run directory" in err and "Traceback" not in err
    assert run_records.main(["save", str(out), str(out / "records")]) == 2
    assert "inside the grid folder" in capsys.readouterr().out
    assert not (out / "records").exists()


def test_the_committed_camvid_records_are_finished_runs_that_the_report_reads(tmp_path):
    """docs/records/camvid backs docs/results.md: every record is a finished run, and the report reads them."""
    from segal.records import is_finished, record_files
    from segal.results import find_runs

    records = Path(__file__).resolve().parents[1] / "docs" / "records" / "camvid"
    runs = find_runs([records])
    assert runs and all(is_finished(r) for r in runs)
    for run in runs:  # nothing but records was committed
        assert sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file()) == record_files(run)
    seed0 = json.loads((records / "random-seed0" / "cycles" / "6" / "metrics.json").read_text())
    assert (seed0["labeled"], round(100 * seed0["miou"], 2)) == (145, 54.59)  # the value docs/results.md gives
    s = json.loads((report(runs, tmp_path / "report") / "summary.json").read_text())
    assert "random" in s["strategies"]


def test_the_committed_camvid_region_records_are_finished_region_runs_paired_with_their_image_runs(tmp_path):
    """docs/records/camvid-regions backs results.md's region table: finished region runs whose cycle 0 is the
    image runs' of their seed, so the report pairs them (no environment note) on the pixel axis."""
    from segal.records import is_finished
    from segal.results import find_runs

    docs = Path(__file__).resolve().parents[1] / "docs" / "records"
    regions = find_runs([docs / "camvid-regions"])
    assert regions and all(is_finished(r) for r in regions)
    image = [docs / "camvid" / "random-seed2"]
    s = json.loads((report(regions + image, tmp_path / "report") / "summary.json").read_text())
    assert s["axis"] == "pixels" and "random (images)" in s["strategies"] and "entropy (regions)" in s["strategies"]
    assert {"vaal (regions)", "class_balanced (regions, dominant)"} <= set(s["strategies"])
    assert not s.get("environment_notes")  # the dominant run's own cycle 0 (44.12 against 46.10) is by design
    final = s["strategies"]["class_balanced (regions)"]["final"]
    assert round(100 * final["mean"], 2) == 53.07  # the value docs/results.md gives
