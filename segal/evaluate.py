"""``segal evaluate``: re-evaluate every cycle's checkpoint, optionally writing predictions.

Predictions are written in the dataset's own label encoding at the image's own resolution — for
Cityscapes that is label ids (not train ids), so the official ``cityscapesscripts`` evaluator runs
on them unchanged (see datasets/cityscapes.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segal.config import apply_sets, recipe_from_dict, to_dict
from segal.engine import evaluate, predict_masks
from segal.errors import UserError
from segal.fileio import atomic_write_bytes, atomic_write_json, read_json
from segal.loop import CycleResult
from segal.progress import Progress
from segal.runs import Run, open_run


def write_predictions(run: Run, cycle: int, dataset, out: Path, progress: Progress | None = None) -> int:
    """Write one PNG per image; Cityscapes runs get ``<id>_gtFine_labelIds.png`` files of label ids."""
    progress = progress or Progress()
    model = run.load_task_model(cycle)
    lut = getattr(dataset, "train_to_label_id", None)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    indices = np.arange(len(dataset))
    stream = predict_masks(model, dataset, indices, compute=run.compute)
    for index, mask in progress.track(stream, total=len(indices), description=f"predicting cycle {cycle}"):
        image_id = dataset.image_id(index)
        if lut is not None:
            encoded, name = np.asarray(lut, dtype=np.uint8)[mask], f"{image_id}_gtFine_labelIds.png"
        else:
            encoded, name = mask, f"{image_id}.png"
        ok, png = cv2.imencode(".png", encoded)
        assert ok
        atomic_write_bytes(out / name, png.tobytes())
        count += 1
    return count


def evaluate_run(run_dir: Path, progress: Progress | None = None, split: str | None = None,
                 predictions: str | None = None, sets: dict[str, Any] | None = None) -> list[CycleResult]:
    """Score every kept checkpoint on ``split`` (default: the run's test split).

    ``sets`` override keys of the run's stored recipe (``--set``, ``--data-root``: ``data.root`` to score
    the run on data in another folder).  Only the split scored is opened: no train split is needed.
    """
    run = open_run(run_dir)
    if sets:
        stored = str(Path(run_dir) / "recipe.yaml")
        run = Run(run.dir, recipe_from_dict(apply_sets(to_dict(run.recipe), sets), stored))
    if split:
        run.recipe.data.test_split = split
    run.take_lock()  # a running `acquire` prunes checkpoints and writes metrics: one writer at a time
    try:
        return _evaluate_checkpoints(run, run_dir, progress, predictions)
    finally:
        run.close()


def _evaluate_checkpoints(run: Run, run_dir: Path, progress: Progress | None,
                          predictions: str | None) -> list[CycleResult]:
    dataset = run.test
    checkpoints = sorted(run.dir.glob("cycles/*/task.pt"), key=lambda p: int(p.parent.name))
    if not checkpoints:
        raise UserError("no trained cycles in this run", path=run_dir, fix="run `segal acquire` first")
    rows = []
    for ckpt in checkpoints:
        cycle = int(ckpt.parent.name)
        model = run.load_task_model(cycle)
        metrics = evaluate(model, dataset, compute=run.compute, progress=progress)
        old = ckpt.parent / "metrics.json"
        labeled = fraction = None
        if old.exists():
            m = read_json(old)
            labeled, fraction = m.get("labeled"), m.get("fraction")
        metrics.update(cycle=cycle, split=run.recipe.data.test_split, data_root=run.recipe.data.root,
                       labeled=labeled, fraction=fraction)
        atomic_write_json(ckpt.parent / f"eval_{run.recipe.data.test_split}.json", metrics)
        name = "miou" if "miou" in metrics else "accuracy"
        rows.append(CycleResult(cycle, labeled or 0, fraction or 0.0, name, metrics[name],
                                dict(metrics.get("per_class_iou") or {})))
        if predictions:
            write_predictions(run, cycle, dataset, Path(predictions) / str(cycle), progress)
    return rows
