"""The human oracle: export pending images with predicted masks, import the annotators' masks.

``segal acquire --oracle human`` stops after choosing a batch (its ids become *pending*).
``segal export`` writes them with the current task network's predictions as pre-annotations;
``segal import`` validates the finished masks all-or-nothing, stores them under ``labels/`` and
moves the ids from pending to labeled, so the next ``segal acquire`` trains on them.

Region-level runs (``active.unit: region``) take the same commands: what is pending are regions, an
export carries each image's *to label* mask and ``regions.json``, and an import takes full masks (cut
to the pending regions) or a filled ``regions.json`` (one class per region); the rules and the file
format are in :mod:`segal.regions.human`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from segal.crashpoints import crash_point
from segal.errors import UserError
from segal.fileio import atomic_write_bytes, read_json
from segal.pool import PoolState
from segal.regions.cache import RegionCache
from segal.regions.human import (
    REGIONS_FILE,
    PendingImage,
    check_dominant_complete,
    dumps,
    image_entry,
    is_regions_file,
    merge_labels,
    paint_dominant,
    read_dominant,
    region_boxes,
    regions_document,
    take_pending,
)
from segal.regions.state import PENDING, RegionLabels, load_region_labels, save_region_state
from segal.runs import Run, load_override_mask, open_run
from segal.strategies import label_first


def export_pending(run_dir: Path, fmt: str, out: Path) -> Path:
    with open_run(run_dir) as run:
        run.take_lock()  # the batch and the checkpoint must not change under the export
        return _export(run, fmt, Path(out))


def _export(run: Run, fmt: str, out: Path) -> Path:
    from segal.engine import predict_masks
    from segal.interchange import ExportItem, check_replaceable, export_batch

    state = run.load_state()
    if state.regions is not None:
        return _export_regions(run, state, fmt, out)
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
    if state.regions is not None:
        return _import_regions(run, state, path)
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


# ---------------------------------------------------------------------- region-level runs


def _pending_region_labels(run: Run, state: PoolState, what: str) -> tuple[RegionCache, RegionLabels]:
    """The run's region maps and labels, refusing a run that waits for no regions."""
    cache = run.region_cache()
    labels = load_region_labels(state, run.state_path, cache.offsets)
    if state.stage != "await_labels" or not labels.num_pending:
        raise UserError(f"no regions are waiting for labels{what}", path=run.state_path,
                        fix="run `segal acquire RECIPE --oracle human` to choose regions first, "
                            "or `segal acquire RUN` to continue")
    return cache, labels


def _pending_images(run: Run, cache: RegionCache, labels: RegionLabels) -> tuple[list[PendingImage], list[PendingImage]]:
    """``(asked, silent)``: the images with pending regions, split by whether those cover any pixel at the
    image's size (``silent`` ones, possible only with regions finer than the image, are labeled empty)."""
    pool = run.pool
    asked: list[PendingImage] = []
    silent: list[PendingImage] = []
    for index in labels.images_pending().tolist():
        status = labels.status[labels.offsets[index]:labels.offsets[index + 1]]
        h, w = pool.load_image(index).shape[:2]
        image = PendingImage(index, pool.image_id(index), (h, w), np.flatnonzero(status == PENDING))
        (asked if image.to_label(image.region_map(cache.region_map(index))).any() else silent).append(image)
    return asked, silent


def region_image_scores(run: Run, cycle: int, labels: RegionLabels) -> dict[int, float]:
    """Pool index → the best score among its queried regions (queries.json; region strategies rank higher
    first), so that an annotation tool can order the images by it, descending; empty without scores."""
    path = run.cycle_dir(cycle) / "queries.json"
    queries = read_json(path, fix="re-run `segal acquire` to choose the batch again") if path.is_file() else {}
    scores = queries.get("scores") if isinstance(queries, dict) else None
    regions = queries.get("regions") if isinstance(queries, dict) else None
    if not isinstance(scores, list) or not isinstance(regions, list) or not regions:
        return {}
    images = labels.image_of(regions).tolist()
    out: dict[int, float] = {}
    for index, score in zip(images, scores, strict=False):
        if score is not None:
            out[index] = max(out.get(index, -np.inf), float(score))
    return out


def _export_regions(run: Run, state: PoolState, fmt: str, out: Path) -> Path:
    from segal.engine import predict_masks
    from segal.interchange import ExportItem, check_replaceable, export_batch

    cache, labels = _pending_region_labels(run, state, "")
    pool = run.pool
    asked, _ = _pending_images(run, cache, labels)
    check_replaceable(out, [image.id for image in asked])  # refused before the network runs
    model = run.load_task_model(state.cycle)
    scores = region_image_scores(run, state.cycle, labels)
    by_index = {image.index: image for image in asked}
    items, entries = [], []
    for index, mask in predict_masks(model, pool, list(by_index), compute=run.compute):
        image = by_index[index]
        region_map = image.region_map(cache.region_map(index))
        items.append(ExportItem(id=image.id, image=pool.load_image(index), image_path=pool.image_path(index),
                                prediction=mask, score=scores.get(index), to_label=image.to_label(region_map)))
        entries.append(image_entry(image, region_map))
    task_name = f"{run.recipe.name}-cycle-{state.cycle}"
    document = dumps(regions_document(entries, pool.classes, task_name))
    main = export_batch(fmt, out, items, pool.classes, task_name=task_name,
                        cityscapes_label_ids=getattr(pool, "train_to_label_id", None),
                        extra_files={REGIONS_FILE: document})
    run.log("exported", format=fmt, out=str(out), count=len(items), regions=labels.num_pending)
    return main


def _import_regions(run: Run, state: PoolState, path: Path) -> int:
    """Check the answers for every pending region, stage the merged masks, then move them in and save the
    region labels and the state together; nothing under the run changes unless every check passed."""
    from segal.interchange import import_masks

    cache, labels = _pending_region_labels(run, state, " (already imported?)")
    if not Path(path).exists():
        raise UserError("labels not found", path=path, fix="pass the file or folder exported by the annotation "
                                                           f"tool, or the filled {REGIONS_FILE}")
    pool = run.pool
    ignore = pool.classes.ignore_index
    asked, silent = _pending_images(run, cache, labels)
    human = set(state.human)
    for image in asked + silent:  # an earlier cycle's labels of the image are merged with this one's
        if image.index in human and not (run.labels_dir / f"{image.id}.png").is_file():
            run.override_masks(state)  # raises, naming the lost file
    answer: Callable[[PendingImage, np.ndarray], np.ndarray]
    if is_regions_file(path):
        pending = {image.id: image for image in asked}
        counts = {image.id: int(cache.offsets[image.index + 1] - cache.offsets[image.index]) for image in asked}
        given = read_dominant(path, pool.classes, pending, counts)

        def answer(image: PendingImage, region_map: np.ndarray) -> np.ndarray:
            check_dominant_complete(path, image, given[image.id], region_boxes(region_map, image.regions)[1])
            return paint_dominant(region_map, given[image.id], ignore)
    else:
        masks = import_masks(Path(path), pool.classes, {image.id: image.shape for image in asked})
        missing = sorted({image.id for image in asked} - set(masks))
        if missing:
            raise UserError(f"{len(missing)} images with pending regions have no mask: first is {missing[0]}",
                            path=path, fix="export every image of the batch from the annotation tool")

        def answer(image: PendingImage, region_map: np.ndarray) -> np.ndarray:
            return take_pending(path, image, region_map, masks[image.id], ignore)

    staging = Path(tempfile.mkdtemp(dir=run.dir, prefix=".import-"))
    try:
        for image in asked + silent:
            region_map = image.region_map(cache.region_map(image.index))
            to_label = image.to_label(region_map)
            new = answer(image, region_map) if to_label.any() else np.full(image.shape, ignore, np.uint8)
            previous = None
            if image.index in human:
                stored = run.labels_dir / f"{image.id}.png"
                previous = load_override_mask(stored)
                if previous.shape != image.shape:
                    raise UserError(f"the stored labels of {image.id} are {previous.shape[1]}×{previous.shape[0]}, "
                                    f"the image is {image.shape[1]}×{image.shape[0]}", path=stored,
                                    fix="restore the run's labels/ folder from a backup")
            ok, png = cv2.imencode(".png", merge_labels(previous, new, to_label, ignore))
            if not ok:
                raise UserError(f"cannot encode the labels of {image.id}", path=path)
            atomic_write_bytes(staging / f"{image.id}.png", png.tobytes())
        run.labels_dir.mkdir(parents=True, exist_ok=True)  # every check passed: from here on only moves
        for file in sorted(staging.iterdir()):
            file.replace(run.labels_dir / file.name)
            crash_point("import.move")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    crash_point("import.state")
    fresh = RegionLabels(labels.offsets, labels.status.copy())
    regions = labels.pending_regions()
    fresh.add_labeled(regions, cycle=state.cycle + 1)
    state.human = sorted(human | {image.index for image in asked + silent})  # they train on labels/<id>.png now
    state.cycle += 1
    state.stage = "train"
    save_region_state(state, fresh, run.state_path)  # the region labels, then state.json (atomic)
    run.log("imported", count=len(asked), regions=len(regions), source=str(path), cycle=state.cycle)
    return len(asked)
