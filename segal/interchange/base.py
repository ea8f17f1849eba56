"""What every format shares: the export item, the format registry and the strict mask collector.

The collector is the single place that enforces the import contract (known id, not seen twice,
the size of the queried image, only known classes), so each format module only parses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segal.data.base import ClassSet
from segal.errors import UserError
from segal.fileio import atomic_write_bytes
from segal.registry import Registry

IMAGES_DIR = "images"
EXPORT_MARKER = ".segal-export.json"  # marks a folder as segal's own export (format, ids, extra files)
TO_LABEL_NAME = "segal to label"  # the marker label outlining the area to label; every importer drops it
MARKER_COLORS = ((255, 0, 255), (0, 255, 255), (255, 255, 0))  # loud colours tried first for the marker
MAX_JSON_BYTES = 1 << 30  # an annotation JSON larger than this is refused before parsing
REEXPORT = "export the annotations again from the tool"  # the fix for a corrupt annotation file


@dataclass
class ExportItem:
    """One queried image and the task network's prediction for it (the pre-annotation)."""

    id: str
    image: np.ndarray  # H×W×3 RGB uint8
    image_path: Path | None
    prediction: np.ndarray  # H×W uint8 train ids, 255 = ignore
    score: float | None = None  # the acquisition score that chose it (queries.json), where the strategy gives one
    to_label: np.ndarray | None = None  # H×W bool, True where the annotator must label (region runs); None = all


@dataclass(frozen=True)
class ExportOptions:
    task_name: str
    cityscapes_label_ids: np.ndarray | None = None
    public_dir: Path | None = None  # where the export will live once swapped in (it is written elsewhere)


Exporter = Callable[[Path, list[ExportItem], ClassSet, ExportOptions], Path]
Loader = Callable[[Path, ClassSet, dict[str, tuple[int, int]]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Format:
    name: str
    export: Exporter
    load: Loader


FORMATS: Registry[Format] = Registry("annotation format")


def register(name: str, export: Exporter, load: Loader) -> Format:
    return FORMATS.register(name)(Format(name, export, load))


# ---------------------------------------------------------------- export helpers


def check_items(items: list[ExportItem], classes: ClassSet) -> None:
    """Exports must be exact, so a malformed prediction is a bug, caught before anything is written."""
    seen: set[str] = set()
    for item in items:
        if not item.id or any(c in item.id for c in "/\\") or item.id in (".", ".."):
            raise UserError(f"image id {item.id!r} cannot be a file name",
                            fix="annotation exports need flat image ids without path separators")
        if item.id in seen:
            raise ValueError(f"image id {item.id!r} is exported twice")
        seen.add(item.id)
        pred = item.prediction
        if pred.ndim != 2 or pred.shape != item.image.shape[:2]:
            raise ValueError(f"prediction of {item.id} is {pred.shape}, image is {item.image.shape}")
        bad = (pred >= len(classes)) & (pred != classes.ignore_index)
        if bad.any():
            raise ValueError(f"prediction of {item.id} holds ids {sorted(np.unique(pred[bad]).tolist())[:8]}")
        if item.to_label is not None:
            area = item.to_label
            if not isinstance(area, np.ndarray) or area.dtype != np.bool_ or area.shape != pred.shape:
                raise ValueError(f"to_label of {item.id} must be an H×W bool array of shape {pred.shape}, "
                                 f"not {getattr(area, 'dtype', type(area))} {getattr(area, 'shape', '')}")
            if not area.any():
                raise ValueError(f"to_label of {item.id} marks no pixel: an image with nothing to label is not exported")
    if has_regions(items) and TO_LABEL_NAME in classes.names:
        raise UserError(f"a class is named {TO_LABEL_NAME!r}, the name segal gives the outline of the area to label",
                        fix="rename that class in the dataset's class list")


def has_regions(items: list[ExportItem]) -> bool:
    """Whether the export carries areas to label, and so the marker label (never for image-level runs)."""
    return any(item.to_label is not None for item in items)


def pre_annotation(item: ExportItem, ignore_index: int) -> np.ndarray:
    """The prediction inside ``to_label``, ignore outside it: the annotator starts from the model only
    where segal will take labels, and nothing outside comes back by accident."""
    if item.to_label is None:
        return item.prediction
    return np.where(item.to_label, item.prediction, np.uint8(ignore_index)).astype(np.uint8)


def outline_width(height: int, width: int) -> int:
    """Outline thickness in pixels: visible when the tool shows the whole image (about 1/256 of its side)."""
    return max(1, round(min(height, width) / 256))


def to_label_outline(item: ExportItem) -> np.ndarray | None:
    """The marker: a ring of pixels just *outside* ``to_label`` (so it never hides a pre-annotated pixel and
    everything it covers is ignored anyway); None when there is no area or it borders nothing."""
    if item.to_label is None:
        return None
    k = outline_width(*item.to_label.shape)
    area = item.to_label.astype(np.uint8)
    ring = cv2.dilate(area, np.ones((2 * k + 1, 2 * k + 1), np.uint8)).astype(bool) & ~item.to_label
    return ring if ring.any() else None


def marker_color(colors: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """A colour for the marker label that no class uses (and not black, the void colour)."""
    used = {(0, 0, 0), *colors}
    for color in MARKER_COLORS:
        if color not in used:
            return color
    rng = np.random.default_rng(1)
    while True:
        r, g, b = (int(c) for c in rng.integers(1, 256, 3))
        if (r, g, b) not in used:
            return r, g, b


def image_name(item: ExportItem) -> str:
    """The file name annotation tools match annotations on: the id plus the image's own suffix."""
    suffix = item.image_path.suffix.lower() if item.image_path is not None else ".png"
    return f"{item.id}{suffix or '.png'}"


def image_bytes(item: ExportItem) -> bytes:
    if item.image_path is not None:
        return Path(item.image_path).read_bytes()
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(item.image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode image {item.id}")
    return png.tobytes()


def write_images(out: Path, items: list[ExportItem], folder: str = IMAGES_DIR) -> Path:
    """Copy (or PNG-encode) every image to ``out/folder/<id><suffix>`` for upload to the tool.

    Each file is replaced atomically, so an export killed midway leaves no truncated image to upload.
    """
    target = out / folder
    target.mkdir(parents=True, exist_ok=True)
    for item in items:
        data = Path(item.image_path).read_bytes() if item.image_path is not None else image_bytes(item)
        atomic_write_bytes(target / image_name(item), data)
    return target


def export_colors(classes: ClassSet) -> list[tuple[int, int, int]]:
    """Class colours for colour-coded masks: the dataset palette, made unique and never black.

    Black is the void (``background``) colour of CVAT masks, so a black or repeated class colour is
    replaced by a free one; the labelmap written next to the masks records the colours used.
    """
    used = {(0, 0, 0)}
    colors: list[tuple[int, int, int]] = []
    rng = np.random.default_rng(0)
    for color in classes.colors:
        r, g, b = (int(c) for c in color)
        color = (r, g, b)
        while color in used:
            r, g, b = (int(c) for c in rng.integers(1, 256, 3))
            color = (r, g, b)
        used.add(color)
        colors.append(color)
    return colors


def hex_color(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


# ---------------------------------------------------------------- import helpers


def extra_file_names(root: Path) -> set[str]:
    """The files ``export_batch`` added beside the format's own (e.g. ``regions.json``), from the export's
    marker: format detection must not mistake them for annotations.  Empty where there is no marker."""
    try:
        names = json.loads((root / EXPORT_MARKER).read_text()).get("extra_files")
    except (OSError, ValueError, AttributeError):
        return set()
    return {str(n) for n in names} if isinstance(names, list) else set()


def class_index(classes: ClassSet, name: str, source: Path | str) -> int:
    try:
        return classes.names.index(name)
    except ValueError:
        known = ", ".join(classes.names[:12]) + (", …" if len(classes) > 12 else "")
        raise UserError(f"unknown class name {name!r}", path=source,
                        fix=f"use the run's class names ({known}) in the annotation tool") from None


class MaskCollector:
    """Gathers imported masks and refuses anything the pending batch cannot accept."""

    def __init__(self, source: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]):
        self.source = source
        self.classes = classes
        self.expected = expected
        self.masks: dict[str, np.ndarray] = {}

    def check_id(self, image_id: str, where: Path | str | None = None) -> tuple[int, int]:
        """Validate an id before its mask is decoded; returns the expected (height, width)."""
        where = where if where is not None else self.source
        if image_id not in self.expected:
            raise UserError(f"image {image_id!r} was not queried (not pending)", path=where,
                            fix="import only the images exported by `segal export` for this cycle")
        if image_id in self.masks:
            raise UserError(f"image {image_id!r} appears twice", path=where,
                            fix="keep one annotation per image in the export")
        return self.expected[image_id]

    def check_size(self, image_id: str, height: int, width: int, where: Path | str | None = None) -> None:
        eh, ew = self.check_id(image_id, where)
        if (int(height), int(width)) != (eh, ew):
            raise UserError(f"mask of {image_id!r} is {width}×{height} but the image is {ew}×{eh}",
                            path=where if where is not None else self.source,
                            fix="annotate the original, unresized image")

    def add(self, image_id: str, mask: np.ndarray, where: Path | str | None = None) -> None:
        self.check_size(image_id, mask.shape[0], mask.shape[1], where=where)
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError("masks are H×W")
        bad = (mask >= len(self.classes)) & (mask != self.classes.ignore_index)
        if bad.any():
            raise UserError(f"mask of {image_id!r} holds ids {sorted(np.unique(mask[bad]).tolist())[:8]} "
                            "that are not classes", path=where if where is not None else self.source,
                            fix=f"use ids 0..{len(self.classes) - 1} and {self.classes.ignore_index} for ignore")
        self.masks[image_id] = np.ascontiguousarray(mask, dtype=np.uint8)

    def result(self) -> dict[str, np.ndarray]:
        return self.masks


def new_mask(shape: tuple[int, int], classes: ClassSet) -> np.ndarray:
    return np.full(shape, classes.ignore_index, dtype=np.uint8)
