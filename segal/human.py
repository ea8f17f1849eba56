"""The human oracle: export pending images with predicted masks, import the annotators' masks.

``segal acquire --oracle human`` stops after choosing a batch (its ids become *pending*).
``segal export`` writes them with the current task network's predictions as pre-annotations;
``segal import`` validates the finished masks all-or-nothing, stores them under ``labels/`` and
moves the ids from pending to labeled, so the next ``segal acquire`` trains on them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from segal.crashpoints import crash_point
from segal.errors import UserError
from segal.fileio import atomic_write_bytes, read_json
from segal.runs import Run, open_run
from segal.strategies import label_first


def export_pending(run_dir: Path, fmt: str, out: Path) -> Path:
    with open_run(run_dir) as run:
        run.take_lock()  # the batch and the checkpoint must not change under the export
        return _export(run, fmt, Path(out))


def _export(run: Run, fmt: str, out: Path) -> Path:
    from segal.engine import predict_masks
    from segal.interchange import ExportItem, check_replaceable, export_batch

    state = run.load_state()
    if not state.pending:
        raise UserError("no images are waiting for labels", path=run.state_path,
                        fix="run `segal acquire RECIPE --oracle human` to choose a batch first")
    pool = run.pool
    check_replaceable(out, [pool.image_id(i) for i in state.pending])  # refused before the network runs
    if pool.task != "segmentation":
        raise UserError("export with predicted masks is for segmentation runs", path=run.dir,
                        fix="for classification, label the ids listed in the last queries.json")
    model = run.load_task_model(state.cycle)
    scores = acquisition_scores(run, state.cycle)
    items = []
    for index, mask in predict_masks(model, pool, state.pending, compute=run.compute):
        items.append(ExportItem(id=pool.image_id(index), image=pool.load_image(index),
                                image_path=pool.image_path(index), prediction=mask, score=scores.get(index)))
    lut = getattr(pool, "train_to_label_id", None)
    main = export_batch(fmt, out, items, pool.classes, task_name=f"{run.recipe.name}-cycle-{state.cycle}",
                        cityscapes_label_ids=lut)
    run.log("exported", format=fmt, out=str(out), count=len(items))
    return main


def acquisition_scores(run: Run, cycle: int) -> dict[int, float]:
    """Pool index → the score that chose it, from the cycle's queries.json (empty for a strategy without
    scores, such as random), turned so that higher means "label first" (VAAL: P(unlabeled)), so an
    annotation tool can order the tasks by it, descending, whatever the strategy."""
    path = run.cycle_dir(cycle) / "queries.json"
    queries = read_json(path, fix="re-run `segal acquire` to choose the batch again") if path.is_file() else {}
    scores = queries.get("scores") if isinstance(queries, dict) else None
    if not isinstance(scores, list):
        return {}
    strategy = run.recipe.active.strategy
    return {int(i): label_first(strategy, float(s))
            for i, s in zip(queries.get("indices") or [], scores, strict=False) if s is not None}


def import_labels(run_dir: Path, path: Path) -> int:
    """Validate and store masks for every pending id; nothing changes unless all of them are valid."""
    with open_run(run_dir) as run:
        run.take_lock()
        return _import(run, Path(path))


def _import(run: Run, path: Path) -> int:
    from segal.interchange import import_masks

    state = run.load_state()
    if not state.pending:
        raise UserError("no images are waiting for labels (already imported?)", path=run.state_path,
                        fix="nothing to do: run `segal acquire` to continue")
    if not Path(path).exists():
        raise UserError("labels not found", path=path, fix="pass the file or folder exported by the annotation tool")
    pool = run.pool
    expected = {}
    for index in state.pending:
        h, w = pool.load_image(index).shape[:2]
        expected[pool.image_id(index)] = (h, w)
    masks = import_masks(Path(path), pool.classes, expected)
    missing = sorted(set(expected) - set(masks))
    if missing:
        raise UserError(f"{len(missing)} pending images have no mask: first is {missing[0]}", path=path,
                        fix="export all pending images from the annotation tool")
    # Stage every PNG first; only then move them in and flip the state (all-or-nothing).
    run.labels_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=run.dir, prefix=".import-"))
    try:
        for image_id, mask in masks.items():
            ok, png = cv2.imencode(".png", np.ascontiguousarray(mask.astype(np.uint8)))
            if not ok:
                raise UserError(f"cannot encode mask of {image_id}", path=path)
            atomic_write_bytes(staging / f"{image_id}.png", png.tobytes())
        for file in staging.iterdir():
            file.replace(run.labels_dir / file.name)
            crash_point("import.move")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    crash_point("import.state")
    count = len(state.pending)
    state.human.extend(state.pending)  # from now on these images must train on labels/<id>.png
    state.add_labeled(list(state.pending), cycle=state.cycle + 1)
    state.cycle += 1
    state.stage = "train"
    run.save_state(state)
    run.log("imported", count=count, source=str(path), cycle=state.cycle)
    return count
