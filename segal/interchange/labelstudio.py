"""Label Studio: a tasks JSON with brush pre-annotations plus the matching labeling config.

Export writes ``tasks.json`` (one task per image, ``data.segal_id`` = the image id, one
``brushlabels`` prediction result per class present, the prediction's ``score`` = the acquisition
score that chose the image, where the strategy gives one), ``labeling_config.xml`` and ``images/``.
``data.image`` is ``/data/local-files/?d=<path>`` when ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` is
set and holds the export, otherwise the path relative to the JSON (serve it or upload the images).
Region exports brush the prediction only inside the area to label and outline that area with a
read-only brush region (``"readonly": true``: it cannot be moved, erased or removed by "delete all")
of the label ``segal to label``, in a second ``BrushLabels`` control of its own, under a ``Header``
telling the annotator to label inside the outline.

Import reads Label Studio's JSON export: the last non-cancelled annotation of each task (tasks
without one are left out), mapped back by ``data.segal_id`` or else the image file stem (minus the
``1a2b3c4d-`` prefix Label Studio gives uploads).  Brush pixels count where alpha >= 128;
polygons are rasterised too (vertices must be finite and within the image, give or take 1 %).
Void is the absence of a brush: ignore (255) gets none and unpainted pixels come back as 255; where
brushes overlap the later result wins.  Results of the marker control or label are dropped.  An annotation that paints no pixel at all is refused, not
read as an all-ignore mask: submitting a task without drawing is a slip, and the image would
otherwise count as labeled with nothing learnt from it.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import cv2
import numpy as np

from segal.data.base import ClassSet
from segal.errors import UserError
from segal.fileio import atomic_write_bytes, atomic_write_json, read_json
from segal.interchange.base import (
    MAX_JSON_BYTES,
    REEXPORT,
    TO_LABEL_NAME,
    ExportItem,
    ExportOptions,
    MaskCollector,
    check_items,
    class_index,
    export_colors,
    has_regions,
    hex_color,
    image_name,
    marker_color,
    new_mask,
    pre_annotation,
    register,
    to_label_outline,
    write_images,
)
from segal.interchange.brush_rle import BrushRLEError, mask_to_rle, rle_to_mask

MAIN_FILE = "tasks.json"
CONFIG_FILE = "labeling_config.xml"
FROM_NAME, TO_NAME = "tag", "image"
MARKER_FROM_NAME = "segal_to_label"  # the control holding the outline of the area to label (region exports)
HEADER = f"Label only inside the outline '{TO_LABEL_NAME}': segal ignores every pixel outside it."
LOCAL_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
POLYGON_SLACK = 1.0  # percent a polygon vertex may stray outside the image (dragged past the edge)
_IGNORED_TYPES = {"choices", "textarea", "rating", "taxonomy", "number", "datetime", "relation", "pairwise"}


def labeling_config(classes: ClassSet, regions: bool = False) -> bytes:
    view = ET.Element("View")
    if regions:
        ET.SubElement(view, "Header", value=HEADER)
    ET.SubElement(view, "Image", name=TO_NAME, value="$image", zoom="true")
    brush = ET.SubElement(view, "BrushLabels", name=FROM_NAME, toName=TO_NAME)
    colors = export_colors(classes)
    for name, color in zip(classes.names, colors, strict=True):
        ET.SubElement(brush, "Label", value=name, background=hex_color(color))
    if regions:
        marker = ET.SubElement(view, "BrushLabels", name=MARKER_FROM_NAME, toName=TO_NAME)
        ET.SubElement(marker, "Label", value=TO_LABEL_NAME, background=hex_color(marker_color(colors)))
    ET.indent(view)
    return ET.tostring(view, encoding="unicode").encode() + b"\n"


def image_url(path: Path, out: Path, public_dir: Path | None = None) -> str:
    root = os.environ.get(LOCAL_ROOT_ENV)
    if root:
        final = (public_dir or out) / path.relative_to(out)  # where Label Studio will find the file
        try:
            rel = final.resolve().relative_to(Path(root).resolve())
            return "/data/local-files/?d=" + quote(rel.as_posix())
        except ValueError:
            pass
    return path.relative_to(out).as_posix()


def export(out: Path, items: list[ExportItem], classes: ClassSet, options: ExportOptions) -> Path:
    check_items(items, classes)
    images = write_images(out, items)
    tasks = []
    for item in items:
        pred = pre_annotation(item, classes.ignore_index)
        h, w = pred.shape
        result: list[dict[str, Any]] = []
        for class_id in np.unique(pred).tolist():
            if class_id == classes.ignore_index:
                continue
            result.append({
                "id": f"{item.id}-{class_id}", "from_name": FROM_NAME, "to_name": TO_NAME, "type": "brushlabels",
                "original_width": w, "original_height": h, "image_rotation": 0,
                "value": {"format": "rle", "rle": mask_to_rle(pred == class_id),
                          "brushlabels": [classes.names[class_id]]},
            })
        outline = to_label_outline(item)
        if outline is not None:
            result.append({
                "id": f"{item.id}-to-label", "from_name": MARKER_FROM_NAME, "to_name": TO_NAME, "type": "brushlabels",
                "original_width": w, "original_height": h, "image_rotation": 0, "readonly": True,
                "value": {"format": "rle", "rle": mask_to_rle(outline), "brushlabels": [TO_LABEL_NAME]},
            })
        prediction: dict[str, Any] = {"model_version": options.task_name, "result": result}
        if item.score is not None:  # Label Studio sorts and filters the task list by the prediction score
            prediction["score"] = item.score
        tasks.append({"data": {"image": image_url(images / image_name(item), out, options.public_dir), "segal_id": item.id},
                      "predictions": [prediction]})
    atomic_write_bytes(out / CONFIG_FILE, labeling_config(classes, has_regions(items)))
    atomic_write_json(out / MAIN_FILE, tasks)
    return out / MAIN_FILE


def is_labelstudio(doc: object) -> bool:
    return isinstance(doc, list) and all(isinstance(t, dict) and "data" in t for t in doc)


def task_id(task: dict, expected: dict[str, tuple[int, int]]) -> str | None:
    data = task["data"] if isinstance(task.get("data"), dict) else {}
    if data.get("segal_id") is not None:
        return str(data["segal_id"])
    image = data.get("image")
    if not isinstance(image, str):
        return None
    url = urlparse(image)
    path = parse_qs(url.query).get("d", [url.path])[0]
    stem = PurePosixPath(unquote(path).replace("\\", "/")).stem
    if stem not in expected and _UPLOAD_PREFIX.match(stem) and stem[9:] in expected:
        return stem[9:]
    return stem


def _flatten(result: dict) -> dict:
    value = result["value"] if isinstance(result.get("value"), dict) else {}
    return {**result, **value}


def _paint(mask: np.ndarray, r: dict, class_id: int, where: str) -> None:
    h, w = mask.shape
    kind = r["type"].lower()
    if kind == "brushlabels":
        if r.get("format", "rle") != "rle":
            raise UserError(f"brush format {r.get('format')!r} is not supported", path=where,
                            fix="use Label Studio's RLE brush (BrushLabels), not bitmasks")
        try:
            mask[rle_to_mask(r["rle"], h, w)] = class_id
        except BrushRLEError as exc:
            raise UserError(f"corrupt brush RLE: {exc}", path=where, fix="export the annotations again") from None
    else:  # polygonlabels: points in percent of the image size
        pts = np.asarray(r["points"], dtype=np.float64).reshape(-1, 2)
        if len(pts) < 3 or not np.isfinite(pts).all() or pts.min() < -POLYGON_SLACK or pts.max() > 100 + POLYGON_SLACK:
            raise UserError(f"a polygon has {len(pts)} points or coordinates outside 0–100 % of the image "
                            f"(range {pts.min(initial=0):.4g}…{pts.max(initial=0):.4g})", path=where,
                            fix="fix or delete that polygon in Label Studio and export again")
        pts = pts.clip(0, 100) * [w / 100.0, h / 100.0]
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], int(class_id))


def load_tasks(path: Path, tasks: list, classes: ClassSet,
               expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    collector = MaskCollector(path, classes, expected)
    for number, task in enumerate(tasks):
        image_id = task_id(task, expected)
        where = f"{path} (task {task.get('id', number)})"
        if image_id is None:
            raise UserError("task has neither data.segal_id nor data.image", path=where,
                            fix="import the tasks.json written by `segal export`")
        annotations = task.get("annotations", task.get("completions")) or []
        done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
        if not done:
            continue
        height, width = collector.check_id(image_id, where)
        mask = new_mask((height, width), classes)
        for raw in done[-1].get("result") or []:
            r = _flatten(raw)
            kind = str(r.get("type", "")).lower()
            if kind in _IGNORED_TYPES:
                continue
            if kind not in ("brushlabels", "polygonlabels"):
                raise UserError(f"result type {kind!r} is not supported", path=where,
                                fix="annotate with the brush (BrushLabels) or polygons")
            labels = r.get(kind) or []
            if r.get("from_name") == MARKER_FROM_NAME or TO_LABEL_NAME in labels:  # segal's outline, not a label
                continue
            if len(labels) != 1:
                raise UserError(f"a {kind} result has {len(labels)} labels, expected one", path=where,
                                fix="give every brush stroke exactly one label")
            class_id = class_index(classes, labels[0], where)
            try:
                collector.check_size(image_id, r["original_height"], r["original_width"], where)
                _paint(mask, r, class_id, where)
            except (KeyError, TypeError, ValueError) as exc:
                raise UserError(f"malformed {kind} result ({type(exc).__name__}: {exc})", path=where,
                                fix="export the annotations again as Label Studio JSON") from None
        if (mask == classes.ignore_index).all():  # submitted without a region: not a label of "all void"
            raise UserError(f"the annotation of {image_id!r} is empty (no brush stroke or polygon)", path=where,
                            fix="draw its regions in Label Studio (every pending image needs a mask), then export again")
        collector.add(image_id, mask, where)
    return collector.result()


def load(path: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    doc = read_json(path, max_bytes=MAX_JSON_BYTES, fix=REEXPORT)
    if not is_labelstudio(doc):
        raise UserError("not a Label Studio JSON export (a list of tasks)", path=path,
                        fix="export the project from Label Studio as JSON")
    return load_tasks(path, doc, classes, expected)


register("labelstudio", export, load)
