"""A finished run's records without its weights: what a report needs, small enough to commit.

A benchmark grid outlives the machine it ran on only in what is kept: the networks (``task.pt``,
~50 MB each), the training caches and TensorBoard events are large and can be recomputed, while the
records — the recipe, ``state.json`` (labeled ids by cycle), ``log.jsonl`` and each cycle's
``metrics.json``, ``train.json`` and ``queries.json`` — are about 20 kB (a CamVid grid run of 7 cycles) and are the result.
:func:`save_records` copies the records of every *finished* run under a grid folder, keeping the
grid's layout; :func:`restore_records` puts them back into a grid folder, where ``segal sweep`` and
``tools/label_efficiency.py`` skip them as finished and ``segal report`` covers them.

Only finished runs are kept: an unfinished run cannot resume from its records, since its next
cycle warm-starts from the last cycle's network (``train.reinit: false``), which is not kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from segal.errors import UserError
from segal.fileio import atomic_write_bytes
from segal.results import find_runs

RECORD_SUFFIXES = (".json", ".jsonl", ".yaml", ".csv", ".txt")


@dataclass
class RecordsCopy:
    """What a save or restore did: runs copied, and runs left out with the reason."""

    copied: list[Path] = field(default_factory=list)
    skipped: dict[Path, str] = field(default_factory=dict)


def record_files(run_dir: Path) -> list[Path]:
    """The run's record files, relative to it: top-level and per-cycle JSON/YAML, and a region run's
    label status (``regions-labels-*.npy``, named by its state), never networks or caches."""
    files = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if not path.is_file() or path.name.startswith("."):
            continue
        top = len(rel.parts) == 1
        in_cycle = len(rel.parts) == 3 and rel.parts[0] == "cycles" and rel.parts[1].isdigit()
        region_labels = top and path.name.startswith("regions-labels-") and path.suffix == ".npy"
        if ((top or in_cycle) and path.suffix in RECORD_SUFFIXES) or region_labels:
            files.append(rel)
    return files


def is_finished(run_dir: Path) -> bool:
    """A run whose state reached ``done``: its records are complete and will not change."""
    try:
        return json.loads((run_dir / "state.json").read_text()).get("stage") == "done"
    except (OSError, ValueError, AttributeError):
        return False


def _copy_run(run_dir: Path, target: Path) -> None:
    for rel in record_files(run_dir):
        atomic_write_bytes(target / rel, (run_dir / rel).read_bytes())
    (target / "cycles").mkdir(parents=True, exist_ok=True)  # a run folder is recognised by recipe.yaml + cycles/


def save_records(grid: Path, dest: Path) -> RecordsCopy:
    """Copy the records of every finished run under ``grid`` to ``dest``, at the same relative paths.
    A record already in ``dest`` is replaced by the run's (a finished run's records do not change;
    re-saving is idempotent). Unfinished runs are left out and named in the result."""
    grid, dest = Path(grid), Path(dest)
    if dest.resolve().is_relative_to(grid.resolve()):
        raise UserError("the records folder is inside the grid folder", path=dest,
                        fix="save the records outside the grid, e.g. docs/records/<benchmark>")
    done = RecordsCopy()
    for run_dir in find_runs([grid]):
        if not is_finished(run_dir):
            done.skipped[run_dir] = "not finished (its state is not 'done'): its records cannot resume it"
            continue
        _copy_run(run_dir, dest / run_dir.relative_to(grid))
        done.copied.append(run_dir)
    return done


def restore_records(records: Path, grid: Path) -> RecordsCopy:
    """Copy saved records into ``grid``; a run already present there is left alone (it is either the
    same finished run or a newer one of this machine's)."""
    records, grid = Path(records), Path(grid)
    done = RecordsCopy()
    for run_dir in find_runs([records]):
        target = grid / run_dir.relative_to(records)
        if (target / "state.json").exists():
            done.skipped[run_dir] = f"{target} already exists"
            continue
        if not is_finished(run_dir):
            done.skipped[run_dir] = "not finished: not a record"
            continue
        _copy_run(run_dir, target)
        done.copied.append(run_dir)
    return done


def logged_fingerprints(run_dir: Path) -> set[str]:
    """The numeric fingerprints a run's ``log.jsonl`` names (segal.environment): empty for a run from
    before they were logged; more than one for a run resumed on another machine."""
    found: set[str] = set()
    try:
        lines = (Path(run_dir) / "log.jsonl").read_bytes().splitlines()
    except OSError:
        return found
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:  # a torn last line: the log is appended to, never rewritten
            continue
        if isinstance(event, dict) and event.get("event") == "environment" and event.get("numeric_fingerprint"):
            found.add(str(event["numeric_fingerprint"]))
    return found


def foreign_seeds(runs: list[Path], seeds: list[int], fingerprint: str) -> dict[int, list[str]]:
    """For each of ``seeds``, the runs among ``runs`` (``<strategy>-seed<N>`` folders) not computed
    wholly in the environment ``fingerprint``: new runs of that seed here will train another cycle-0
    network than theirs, so their pairs carry machine noise (docs/results.md)."""
    foreign: dict[int, list[str]] = {}
    for run in runs:
        name = Path(run).name
        seed_text = name.rsplit("-seed", 1)[-1] if "-seed" in name else ""
        if not seed_text.isdigit() or int(seed_text) not in seeds:
            continue
        prints = logged_fingerprints(run)
        if prints != {fingerprint}:
            foreign.setdefault(int(seed_text), []).append(
                f"{name} ({', '.join(sorted(prints)) if prints else 'environment not recorded'})")
    return foreign
