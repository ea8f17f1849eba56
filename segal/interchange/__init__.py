"""Annotation export and import for segmentation masks (the human oracle's interchange).

``export_batch`` writes the queried images with the task network's predictions as
pre-annotations in one of the registered formats; ``import_masks`` reads the annotators' work
back, detecting the format from the path, and returns every mask or raises a ``UserError``
(all-or-nothing).  Formats, one module each: ``cvat-mask`` (CVAT Segmentation mask 1.1 zip),
``cvat-xml`` (CVAT for images 1.1), ``labelstudio`` (tasks JSON with brush RLE), ``coco`` (RLE
per class) and ``png`` (id maps; Cityscapes label ids when the run is Cityscapes).

Ignore (255) is explicit and never a class: it is exported as *no annotation* (black ``background``
in CVAT colour masks, no shape in CVAT XML, no brush in Label Studio, no COCO annotation, 255 in
PNGs), and every pixel an annotator leaves uncovered comes back as 255.  Overlapping shapes
resolve as the tools draw them: the later (or higher ``z_order``) one wins.

Import refuses, naming the file and the fix: masks of the wrong size, unknown class names or
colours, ids that were not queried, duplicate ids, corrupt or truncated files, and unsafe zips
(escaping paths, symlinks, bombs, too many members).  Zips are extracted member by member into a
temporary folder after those checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segal.data.base import ClassSet
from segal.interchange import coco, cvat_mask, cvat_xml, labelstudio, png  # noqa: F401  (register formats)
from segal.interchange.base import FORMATS, ExportItem, ExportOptions
from segal.interchange.detect import load_any

__all__ = ["FORMATS", "ExportItem", "export_batch", "import_masks"]


def export_batch(fmt: str, out: Path, items: list[ExportItem], classes: ClassSet, *, task_name: str,
                 cityscapes_label_ids: np.ndarray | None = None) -> Path:
    """Write ``items`` in format ``fmt`` into the directory ``out``; returns the file to hand to the tool."""
    exporter = FORMATS.get(fmt).export
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return exporter(out, list(items), classes, ExportOptions(task_name, cityscapes_label_ids))


def import_masks(path: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Read annotated masks (id → H×W uint8 train ids, 255 ignore); all of them or a ``UserError``."""
    return load_any(Path(path), classes, expected)
