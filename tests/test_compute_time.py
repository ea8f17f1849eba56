"""segal.compute_time: CPU hours per run against hand sums, and estimates kept apart from measurements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segal.compute_time import compute_summary, run_compute


def cycle(run: Path, k: int, train: dict | None = None, queries: dict | None = None, metrics: dict | None = None):
    d = run / "cycles" / str(k)
    d.mkdir(parents=True)
    for name, value in (("train", train), ("queries", queries), ("metrics", metrics)):
        if value is not None:
            (d / f"{name}.json").write_text(json.dumps(value))


def test_a_run_sums_its_cycles_and_counts_what_it_did_not_measure(tmp_path):
    run = tmp_path / "r"
    cycle(run, 0, {"steps": 100, "seconds": 900.0, "cpu_seconds": 50.0}, {"seconds": 30.0, "cpu_seconds": 10.0},
          {"eval_cpu_seconds": 4.0})
    cycle(run, 1, {"steps": 40, "seconds": 700.0}, {"seconds": 12.0}, {"eval_seconds": 3.0})  # before segal counted
    cycle(run, 2, {"steps": 60, "seconds": 80.0, "cpu_seconds": None}, None, {"eval_cpu_seconds": 2.0})  # old checkpoint
    r = run_compute(run)
    assert (r.train, r.train_steps, r.unmeasured_steps) == (50.0, 100, 100)
    assert (r.acquire, r.unmeasured_acquire_wall) == (10.0, 12.0)
    assert (r.evaluate, r.evaluations, r.unmeasured_evaluations) == (6.0, 2, 1)


def test_the_summary_estimates_unmeasured_steps_at_the_measured_rate_and_says_how_much(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "ceiling"
    cycle(a, 0, {"steps": 100, "cpu_seconds": 50.0}, {"cpu_seconds": 10.0}, {"eval_cpu_seconds": 4.0})
    cycle(b, 0, {"steps": 300, "cpu_seconds": 150.0}, {"seconds": 20.0}, {"eval_cpu_seconds": 2.0})
    cycle(b, 1, {"steps": 200}, None, {})  # 200 steps at 0.5 s, one evaluation at the mean 3 s
    cycle(c, 0, {"steps": 1000}, None, {"eval_cpu_seconds": 3.0})
    s = compute_summary({"random": [a], "vaal": [b]}, [c])
    assert s["seconds_per_step"] == pytest.approx(200.0 / 400)
    h = 1 / 3600
    assert s["per_run"]["random"]["total"] == pytest.approx(64 * h) and s["per_run"]["random"]["estimated"] == 0
    vaal = s["per_run"]["vaal"]
    assert vaal["train"] == pytest.approx(250 * h) and vaal["acquire"] == pytest.approx(20 * h)
    assert vaal["evaluate"] == pytest.approx(5 * h) and vaal["estimated"] == pytest.approx((100 + 20 + 3) * h)
    assert s["per_run"]["ceiling"]["total"] == pytest.approx(503 * h)
    assert s["cpu_hours"] == pytest.approx((64 + 275 + 503) * h)
    assert s["estimated_hours"] == pytest.approx((123 + 500) * h)


def test_no_measured_step_means_no_summary(tmp_path):
    cycle(tmp_path / "old", 0, {"steps": 100, "seconds": 9.0}, {"seconds": 1.0}, {})
    assert compute_summary({"random": [tmp_path / "old"]}) is None


def test_a_copied_cycle_0_is_counted_once_with_its_donor(tmp_path):
    donor, copy = tmp_path / "random-seed0", tmp_path / "entropy-seed0"
    for run in (donor, copy):
        cycle(run, 0, {"steps": 1600, "cpu_seconds": 800.0}, None, {"eval_cpu_seconds": 1.0})
        cycle(run, 1, {"steps": 200, "cpu_seconds": 100.0}, {"cpu_seconds": 5.0}, {"eval_cpu_seconds": 1.0})
    (copy / "log.jsonl").write_text('{"event": "start"}\n{"event": "shared_initial_network", "donor": "x"}\n')
    assert run_compute(donor).train == 900.0 and not run_compute(donor).copied_cycle_0
    r = run_compute(copy)
    assert r.copied_cycle_0 and r.train == 100.0 and r.train_steps == 200 and r.unmeasured_steps == 0
    s = compute_summary({"random": [donor], "entropy": [copy]})
    assert s["cpu_hours"] == pytest.approx((907 + 107) / 3600)
    (copy / "log.jsonl").write_bytes(b'\xff\xfe{"ev\n{"event": "shared_initial_network"}\n')  # a torn, non-UTF-8 line
    assert run_compute(copy).copied_cycle_0


def test_a_damaged_cycle_file_is_named_not_skipped(tmp_path):
    from segal.errors import UserError

    cycle(tmp_path / "r", 0, {"steps": 1, "cpu_seconds": 1.0})
    (tmp_path / "r" / "cycles" / "0" / "queries.json").write_text("{not json")
    with pytest.raises(UserError, match="queries.json"):
        run_compute(tmp_path / "r")
