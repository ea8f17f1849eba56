"""What a set of runs cost in CPU time, so that a benchmark can state its work and not its machine's load.

On a shared machine a cycle's wall time measures the load as much as the work: the issue-14 grid's
cycles ran 2–17× slower than alone while tests shared its two cores.  segal therefore records each
cycle's CPU time (``cpu_seconds`` in ``train.json`` and ``queries.json``, ``eval_cpu_seconds`` in
``metrics.json``; one-thread runs, so CPU time is the time the work takes on an idle core).

Cycles made before segal counted it (or trained on from a checkpoint written before) lack it.  Their
training is *estimated* from their step count at the CPU seconds per step measured over the runs that
have it (the same network and batch: one benchmark), their acquisitions from the wall time they logged
(an over-estimate under load), their evaluations from the measured mean; the estimate is reported
apart, never mixed in silently.  A run whose cycle-0 network was copied from another run of its sweep
(segal.shared_start; ``shared_initial_network`` in its ``log.jsonl``) did not train cycle 0: its copy
of the donor's ``train.json`` is not counted again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segal.fileio import read_json


@dataclass
class RunCompute:
    """One run's CPU seconds by stage, and what is missing from them."""

    train: float = 0.0  # measured
    acquire: float = 0.0
    evaluate: float = 0.0
    train_steps: int = 0  # the steps behind ``train``
    unmeasured_steps: int = 0  # steps of cycles that recorded no CPU time
    unmeasured_acquire_wall: float = 0.0  # wall seconds of acquisitions that recorded no CPU time
    evaluations: int = 0  # measured evaluations
    unmeasured_evaluations: int = 0
    copied_cycle_0: bool = False  # cycle 0's network came from another run: its training is that run's


def _copied_cycle_0(run_dir: Path) -> bool:
    """Whether the run's log records a copied cycle 0 (read as bytes: a damaged line is no reason to fail)."""
    try:
        return b'"shared_initial_network"' in (run_dir / "log.jsonl").read_bytes()
    except OSError:
        return False


def _read(path: Path) -> dict[str, Any] | None:
    """The cycle file, None where the cycle has none; a damaged one is a UserError naming it (read_json)."""
    if not path.is_file():
        return None
    value = read_json(path)
    return value if isinstance(value, dict) else None


def run_compute(run_dir: Path) -> RunCompute:
    """Sum the cycles of ``run_dir`` (``cycles/<k>/{train,queries,metrics}.json``)."""
    out = RunCompute(copied_cycle_0=_copied_cycle_0(run_dir))
    for cycle in sorted((run_dir / "cycles").glob("*")):
        train, queries, metrics = (_read(cycle / f"{name}.json") for name in ("train", "queries", "metrics"))
        if train is not None and not (cycle.name == "0" and out.copied_cycle_0):
            steps = int(train.get("steps") or 0)
            if isinstance(train.get("cpu_seconds"), int | float):
                out.train += float(train["cpu_seconds"])
                out.train_steps += steps
            else:
                out.unmeasured_steps += steps
        if queries is not None:
            if isinstance(queries.get("cpu_seconds"), int | float):
                out.acquire += float(queries["cpu_seconds"])
            elif isinstance(queries.get("seconds"), int | float):
                out.unmeasured_acquire_wall += float(queries["seconds"])
        if metrics is not None:
            if isinstance(metrics.get("eval_cpu_seconds"), int | float):
                out.evaluate += float(metrics["eval_cpu_seconds"])
                out.evaluations += 1
            else:
                out.unmeasured_evaluations += 1
    return out


def compute_summary(groups: dict[str, list[Path]], ceiling: list[Path] | None = None) -> dict[str, Any] | None:
    """CPU hours per run of each group (mean over its runs) and for everything, measured and estimated.

    None when no run recorded any CPU time (nothing to base an estimate on)."""
    per_run = {label: [run_compute(d) for d in dirs] for label, dirs in groups.items()}
    if ceiling:
        per_run["ceiling"] = [run_compute(d) for d in ceiling]
    every = [r for runs in per_run.values() for r in runs]
    steps = sum(r.train_steps for r in every)
    if steps == 0:
        return None
    per_step = sum(r.train for r in every) / steps
    evals = sum(r.evaluations for r in every)
    per_eval = sum(r.evaluate for r in every) / evals if evals else 0.0

    def hours(r: RunCompute) -> dict[str, float]:
        measured = r.train + r.acquire + r.evaluate
        estimated = (r.unmeasured_steps * per_step + r.unmeasured_acquire_wall
                     + r.unmeasured_evaluations * per_eval)
        return {"train": (r.train + r.unmeasured_steps * per_step) / 3600,
                "acquire": (r.acquire + r.unmeasured_acquire_wall) / 3600,
                "evaluate": (r.evaluate + r.unmeasured_evaluations * per_eval) / 3600,
                "total": (measured + estimated) / 3600, "estimated": estimated / 3600}

    rows = {}
    for label, runs in per_run.items():
        each = [hours(r) for r in runs]
        rows[label] = {"runs": len(runs), **{k: sum(h[k] for h in each) / len(each) for k in each[0]},
                       "sum": sum(h["total"] for h in each)}
    total = sum(row["sum"] for row in rows.values())
    estimated = sum(hours(r)["estimated"] for r in every)
    return {"per_run": rows, "cpu_hours": total, "estimated_hours": estimated,
            "seconds_per_step": per_step, "measured_steps": steps}
