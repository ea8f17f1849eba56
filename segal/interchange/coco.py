"""COCO instances-style JSON with one RLE annotation per (image, class present): "stuff" style.

Categories are the classes (``id`` = train id + 1, matched back by *name*, since tools renumber
them); ``segmentation`` is pycocotools' compressed RLE of the Fortran-ordered class mask.  Void is
the absence of an annotation: ignore (255) gets none and pixels no annotation covers come back as
255.  Import also accepts uncompressed RLE and polygons; where annotations overlap the later wins.
Region exports add the category ``segal to label`` (id = classes + 1) with one annotation per image,
an outline just outside the area to label; import skips that category's annotations.
Layout as CVAT and datumaro expect: ``annotations/instances_default.json`` + ``images/default/``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from segal.data.base import ClassSet
from segal.errors import UserError
from segal.fileio import atomic_write_json, read_json
from segal.interchange.base import (
    MAX_JSON_BYTES,
    REEXPORT,
    TO_LABEL_NAME,
    ExportItem,
    ExportOptions,
    MaskCollector,
    check_items,
    class_index,
    has_regions,
    image_name,
    new_mask,
    pre_annotation,
    register,
    to_label_outline,
    write_images,
)

MAIN_FILE = "annotations/instances_default.json"
IMAGES_DIR = "images/default"


def encode(binary: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(binary[:, :, None].astype(np.uint8)))[0]


def export(out: Path, items: list[ExportItem], classes: ClassSet, options: ExportOptions) -> Path:
    check_items(items, classes)
    write_images(out, items, IMAGES_DIR)
    doc: dict[str, Any] = {
        "info": {"description": options.task_name, "version": "1.0"},
        "licenses": [],
        "categories": [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(classes.names)],
        "images": [],
        "annotations": [],
    }
    marker_id = len(classes) + 1
    if has_regions(items):
        doc["categories"].append({"id": marker_id, "name": TO_LABEL_NAME, "supercategory": ""})
    for image_index, item in enumerate(items, 1):
        pred = pre_annotation(item, classes.ignore_index)
        h, w = pred.shape
        doc["images"].append({"id": image_index, "file_name": image_name(item), "width": w, "height": h,
                              "segal_id": item.id})
        shapes = [(c + 1, pred == c) for c in np.unique(pred).tolist() if c != classes.ignore_index]
        outline = to_label_outline(item)
        if outline is not None:
            shapes.append((marker_id, outline))
        for category_id, binary in shapes:
            rle = encode(binary)
            doc["annotations"].append({
                "id": len(doc["annotations"]) + 1, "image_id": image_index, "category_id": category_id,
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            })
    main = out / MAIN_FILE
    atomic_write_json(main, doc)
    return main


def is_coco(doc: object) -> bool:
    return isinstance(doc, dict) and "images" in doc and "annotations" in doc


def string_counts(text: str) -> list[int]:
    """Run lengths of a COCO compressed RLE string (pycocotools' ``rleFrString`` in Python)."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = k = 0
        more = True
        while more:
            if p >= len(text):
                raise ValueError("compressed RLE is truncated")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError("compressed RLE holds invalid characters")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _decode(segmentation: object, height: int, width: int) -> np.ndarray:
    if isinstance(segmentation, dict):
        size = segmentation.get("size")
        if list(size or ()) != [height, width]:
            raise ValueError(f"RLE size {size} differs from the image's [{height}, {width}]")
        counts = segmentation.get("counts")
        if isinstance(counts, list):
            if sum(int(c) for c in counts) != height * width or min(counts, default=0) < 0:
                raise ValueError("uncompressed RLE does not cover the image")
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(counts, str):
            runs = string_counts(counts)  # pycocotools does not bounds-check: validate first
            if min(runs, default=0) < 0 or sum(runs) != height * width:
                raise ValueError("compressed RLE does not cover the image (corrupt counts)")
            rle = {"size": [height, width], "counts": counts.encode("ascii")}
        else:
            raise ValueError("RLE counts must be a string or a list")
    elif isinstance(segmentation, list) and segmentation:
        rle = mask_utils.merge(mask_utils.frPyObjects([list(map(float, p)) for p in segmentation], height, width))
    else:
        raise ValueError("segmentation must be an RLE dict or a list of polygons")
    binary = mask_utils.decode(rle)
    if binary.shape[:2] != (height, width):
        raise ValueError("decoded mask has the wrong size")
    return binary.astype(bool)


def load_doc(path: Path, doc: dict, classes: ClassSet,
             expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    fix = "export with the 'COCO 1.0' format (or the file written by `segal export`)"
    if not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
        raise UserError("'images' and 'annotations' must be lists", path=path, fix=fix)
    categories = {}
    for cat in doc.get("categories") or []:
        categories[cat.get("id")] = cat.get("name")
    collector = MaskCollector(path, classes, expected)
    images: dict[object, tuple[str, np.ndarray]] = {}
    seen_ids: set[str] = set()
    for image in doc["images"]:
        name = str(image.get("file_name", ""))
        image_id = str(image.get("segal_id") or PurePosixPath(name.replace("\\", "/")).stem)
        where = f"{path} (image {name!r})"
        if image_id in seen_ids:
            raise UserError(f"image {image_id!r} appears twice", path=where, fix="keep one entry per image")
        seen_ids.add(image_id)
        try:
            height, width = int(image["height"]), int(image["width"])
        except (KeyError, TypeError, ValueError):
            raise UserError("an image lacks a numeric width/height", path=where, fix=fix) from None
        collector.check_size(image_id, height, width, where)
        if image.get("id") in images:
            raise UserError(f"image id {image.get('id')} is used twice", path=where, fix=fix)
        images[image.get("id")] = (image_id, new_mask((height, width), classes))
    for ann in doc["annotations"]:
        if ann.get("image_id") not in images:
            raise UserError(f"annotation {ann.get('id')} refers to unknown image {ann.get('image_id')}",
                            path=path, fix=fix)
        image_id, mask = images[ann["image_id"]]
        where = f"{path} (annotation {ann.get('id')} of {image_id!r})"
        if ann.get("category_id") not in categories:
            raise UserError(f"category {ann.get('category_id')} is not declared", path=where, fix=fix)
        if categories[ann["category_id"]] == TO_LABEL_NAME:  # segal's outline of the area to label
            continue
        class_id = class_index(classes, str(categories[ann["category_id"]]), where)
        try:
            mask[_decode(ann.get("segmentation"), *mask.shape)] = class_id
        except (TypeError, ValueError, KeyError, UnicodeError) as exc:
            raise UserError(f"bad segmentation ({exc})", path=where, fix=fix) from None
    for image_id, mask in images.values():
        collector.add(image_id, mask, path)
    return collector.result()


def load(path: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    doc = read_json(path, max_bytes=MAX_JSON_BYTES, fix=REEXPORT)
    if not is_coco(doc):
        raise UserError("not a COCO JSON (needs 'images' and 'annotations')", path=path,
                        fix="export with the 'COCO 1.0' format")
    return load_doc(path, doc, classes, expected)


register("coco", export, load)
