"""A folder of single-channel PNG id maps: ``masks/<id>.png`` in train ids, 255 = ignore.

For Cityscapes (``cityscapes_label_ids`` given) the files are ``<id>_gtFine_labelIds.png`` in
Cityscapes label ids, ignore written as 0 (``unlabeled``); import maps label ids back to train ids
with cityscapesscripts' table, whose void ids all become 255.

Region exports hold ignore outside the area to label and write that area beside the masks as
``to_label/<id>.png`` (single channel, 255 = label here, 0 = leave), to overlay as a layer in an
image editor; import reads only the masks folder, never ``to_label/``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segal.data.base import ClassSet, decode_mask, identity_lut, read_label_png
from segal.errors import UserError
from segal.fileio import atomic_write_bytes
from segal.interchange.base import (
    ExportItem,
    ExportOptions,
    MaskCollector,
    check_items,
    pre_annotation,
    register,
    write_images,
)

MASKS_DIR = "masks"
TO_LABEL_DIR = "to_label"
CITYSCAPES_SUFFIX = "_gtFine_labelIds.png"
CITYSCAPES_VOID_LABEL_ID = 0  # "unlabeled"


def export(out: Path, items: list[ExportItem], classes: ClassSet, options: ExportOptions) -> Path:
    check_items(items, classes)
    write_images(out, items)
    masks = out / MASKS_DIR
    masks.mkdir(parents=True, exist_ok=True)
    table, suffix = np.arange(256, dtype=np.uint8), ".png"
    if options.cityscapes_label_ids is not None:
        lut = np.asarray(options.cityscapes_label_ids, dtype=np.uint8)
        if lut.size != len(classes):
            raise ValueError("cityscapes_label_ids needs one label id per class")
        table = np.full(256, CITYSCAPES_VOID_LABEL_ID, dtype=np.uint8)
        table[: lut.size] = lut
        suffix = CITYSCAPES_SUFFIX
    for item in items:
        ok, png = cv2.imencode(".png", np.ascontiguousarray(table[pre_annotation(item, classes.ignore_index)]))
        if not ok:
            raise ValueError(f"cannot encode mask of {item.id}")
        atomic_write_bytes(masks / f"{item.id}{suffix}", png.tobytes())
        if item.to_label is not None:
            ok, png = cv2.imencode(".png", item.to_label.astype(np.uint8) * np.uint8(255))
            if not ok:
                raise ValueError(f"cannot encode the area to label of {item.id}")
            (out / TO_LABEL_DIR).mkdir(exist_ok=True)
            atomic_write_bytes(out / TO_LABEL_DIR / f"{item.id}.png", png.tobytes())
    return masks


def cityscapes_lut(classes: ClassSet, folder: Path) -> np.ndarray:
    from segal.data.cityscapes import CLASSES, LABEL_TO_TRAIN

    if classes.names != CLASSES.names:
        raise UserError(f"masks are named *{CITYSCAPES_SUFFIX} (Cityscapes label ids) but the run is not Cityscapes",
                        path=folder, fix="name the masks <id>.png and store train ids")
    return LABEL_TO_TRAIN


def mask_files(folder: Path) -> list[Path]:
    if (folder / MASKS_DIR).is_dir() and not any(folder.glob("*.png")):
        folder = folder / MASKS_DIR
    return sorted(p for p in folder.rglob("*.png") if p.is_file() and not p.name.startswith(".")
                  and TO_LABEL_DIR not in p.relative_to(folder).parts[:-1])


def load(folder: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    files = mask_files(folder)
    if not files:
        raise UserError("no PNG masks found", path=folder, fix="pass the folder holding <id>.png id maps")
    collector = MaskCollector(folder, classes, expected)
    plain = identity_lut(len(classes))
    for file in files:
        if file.name.endswith(CITYSCAPES_SUFFIX):
            image_id, lut = file.name[: -len(CITYSCAPES_SUFFIX)], cityscapes_lut(classes, folder)
        else:
            image_id, lut = file.stem, plain
        collector.check_id(image_id, file)
        collector.add(image_id, decode_mask(read_label_png(file), lut, file), file)
    return collector.result()


register("png", export, load)
