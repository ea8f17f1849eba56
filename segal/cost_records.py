"""Cost records for runs written before segal kept them: ``segal costs RUN...``.

An image-level run gets the ``cost`` block of each cycle's metrics.json (:mod:`segal.image_costs`), so it
reports on a cost axis; a precise-oracle region run written before its initial whole images were charged
whole gets its clicks shifted to that rule.  A command over finished runs, so it lives above
:mod:`segal.runs`, which itself counts whole-image clicks (:class:`~segal.image_costs.ImageCosts`) to plan
a click budget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segal.errors import UserError
from segal.fileio import atomic_write_json, read_json
from segal.image_costs import ImageCosts
from segal.oracle import OracleView
from segal.runs import Run, open_run


def record_costs(run_dir: Path | str) -> int:
    """Add the ``cost`` block to the metrics.json of an image-level run written before segal recorded it
    (each cycle's labeled images are state.json's), so that the run reports on a cost axis; for a region
    run, recount its initial images' clicks whole if it predates that rule; returns the number of files
    updated (0 when every cycle is already counted).

    Takes the run's lock, so a run still going is refused rather than written under; each file is
    replaced atomically and keeps every other key."""
    run = open_run(run_dir)
    if run.recipe.active.unit != "image":
        return _recount_initial_clicks(run)
    run.take_lock()
    try:
        paths = sorted(run.dir.glob("cycles/*/metrics.json"), key=lambda p: int(p.parent.name))
        todo = [(p, m) for p in paths if not isinstance((m := read_json(p)).get("cost"), dict)]
        if not todo:
            return 0
        state = run.load_state()  # refuses a pool that changed since the run
        costs = ImageCosts(run.pool, run.dir / "cache")
        labels = OracleView(run.pool, run.override_masks(state))
        for path, metrics in todo:
            cycle = int(path.parent.name)
            labeled = np.sort(np.concatenate([np.asarray(ids, dtype=np.int64) for c, ids in state.labeled.items()
                                              if int(c) <= cycle] or [np.empty(0, dtype=np.int64)]))
            if metrics.get("labeled") is not None and int(metrics["labeled"]) != len(labeled):
                raise UserError(f"metrics.json says {metrics['labeled']} labeled images, state.json {len(labeled)} "
                                f"through cycle {cycle}", path=path, fix="re-run the cycle, or leave the run out")
            metrics.update(unit="image", cost=costs.block(labeled, labels, set(state.human)))
            atomic_write_json(path, metrics)
        return len(todo)
    finally:
        run.close()


def _recount_initial_clicks(run: Run) -> int:
    """A precise-oracle region run written before its initial whole images were charged whole
    (segal.regions.budget.CostLedger.of): its cycle-0 clicks are its initial regions' sum, which every
    later cycle's count includes, so each cycle's clicks shift by (whole-image clicks − cycle-0 clicks).
    Exact without the region maps; a run already counted so is left alone (0 files)."""
    if (run.recipe.regions.oracle if run.recipe.regions else "precise") != "precise":
        return 0
    run.take_lock()
    try:
        paths = sorted(run.dir.glob("cycles/*/metrics.json"), key=lambda p: int(p.parent.name))
        metrics = [read_json(p) for p in paths]
        if not metrics or not isinstance(metrics[0].get("cost"), dict) or int(paths[0].parent.name) != 0:
            return 0
        state = run.load_state()
        initial = np.asarray(sorted(state.labeled.get(0, [])), dtype=np.int64)
        whole = int(ImageCosts(run.pool, run.dir / "cache").block(initial)["clicks"])
        shift = whole - int(metrics[0]["cost"]["clicks"])
        if shift == 0:
            return 0
        for path, m in zip(paths, metrics, strict=True):
            m["cost"]["clicks"] = int(m["cost"]["clicks"]) + shift
            atomic_write_json(path, m)
        return len(paths)
    finally:
        run.close()


__all__ = ["record_costs"]
