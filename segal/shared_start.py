"""One cycle-0 network for every strategy of a sweep seed: train it once, copy it to the others.

Cycle 0 of a run trains on the initial labeled set from the network initialisation, and both derive
from the seed alone (``segal.loop``: ``_seed(seed, 0, 7)`` and ``_seed(seed, 0, 11)``); the strategy
first acts when cycle 0 acquires.  So the runs of one seed in a sweep train bit-identical cycle-0
networks (measured: the issue-14 grid's ``random`` and ``entropy`` seed 0 scored 41.968...% mIoU to the
last digit), and training it once per seed instead of once per strategy saves about a quarter of a
converged CamVid grid (1,600 of ~4,400 steps a run).

:func:`share_initial_network` copies a finished cycle-0 ``task.pt`` from a *donor* run into a run that
has not trained cycle 0 yet, only when nothing that could change it differs: the donor's stored recipe
equals this run's in every key but the strategy, its parameters, the output folder and what later cycles
acquire (:data:`NOT_IN_CYCLE_0`), both state files label the same initial images, and the donor's cycle 0 has
finished training (its ``train.json`` exists).  The loop then finds ``cycles/0/task.pt`` and reloads it,
exactly as it does when a run is resumed after cycle 0 trained; evaluation and everything after run as
usual.  The copy is atomic (temp file + rename), so a kill leaves either no network or the whole one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from segal.config import read_yaml_file
from segal.pool import PoolState
from segal.runs import Run

# Keys that act only from cycle 0's acquisition on: what to acquire (image or region, its cost, how much,
# how often, the regions themselves), where, and how long a warm-started later cycle trains (segal.engine.
# cycle_schedule: ``train.warm_epochs`` acts from cycle 1 on).  A precise-oracle region run of a seed therefore starts
# from the image runs' cycle-0 network: same initial images, same full masks (every region of them, at its
# true pixels), same steps (epochs over labeled pixels in whole-image equivalents are the image count at
# cycle 0), and the comparison is paired from the start.  A *dominant*-oracle run is not: its initial
# images train on their regions' majority classes, so its unit and its regions stay in the comparison.
NOT_IN_CYCLE_0 = ("active.strategy", "active.strategy_params", "output_dir", "active.unit", "active.cost",
                  "active.budget", "active.cycles", "active.final", "regions", "train.warm_epochs")


def _dominant(recipe: dict[str, Any]) -> bool:
    active, regions = recipe.get("active") or {}, recipe.get("regions") or {}
    return active.get("unit") == "region" and regions.get("oracle") == "dominant"


def _without(recipe: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in recipe.items()}
    keep = ("active.unit", "regions") if _dominant(recipe) else ()  # its cycle-0 labels depend on them
    for key in NOT_IN_CYCLE_0:
        if key in keep:
            continue
        section, _, name = key.rpartition(".")
        (out.get(section) if section else out).pop(name, None)  # type: ignore[union-attr]
    return out


def _initial(state_path: Path) -> list[int] | None:
    if not state_path.is_file():
        return None
    return sorted(PoolState.load(state_path).labeled.get(0, []))


def share_initial_network(run: Run, state: PoolState, donors: Iterable[Path]) -> Path | None:
    """Copy the first matching donor's cycle-0 network into ``run`` (whose state is ``state``), unless
    ``run`` has one; returns the donor used, or ``None``."""
    target = run.cycle_dir(0) / "task.pt"
    if state.cycle != 0 or target.exists():
        return None
    mine = _without(read_yaml_file(run.dir / "recipe.yaml", "run's recipe") or {})  # as start_run stored it
    initial = sorted(state.labeled.get(0, []))
    for donor in donors:
        donor = Path(donor)
        source = donor / "cycles" / "0" / "task.pt"
        if donor.resolve() == run.dir.resolve() or not source.is_file() or not (source.parent / "train.json").is_file():
            continue
        stored = donor / "recipe.yaml"
        if not stored.is_file() or _without(read_yaml_file(stored, "run's recipe") or {}) != mine:
            continue
        if _initial(donor / "state.json") != initial:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        for name in ("task.pt", "train.json"):
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
            os.close(fd)
            try:
                shutil.copyfile(source.parent / name, tmp)
                os.replace(tmp, target.parent / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        (target.parent / "train_state.pt").unlink(missing_ok=True)  # a half-trained cycle 0 of our own
        run.log("shared_initial_network", donor=str(donor))
        return donor
    return None


__all__ = ["NOT_IN_CYCLE_0", "share_initial_network"]
