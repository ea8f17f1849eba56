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

Region runs (``ExportItem.to_label``, True where the annotator must label) pre-annotate only inside
that area (ignore outside, so nothing outside comes back by accident) and show the area the way each
tool shows a "label here" hint.  Neither CVAT nor Label Studio has a region-of-interest concept for
annotation (cvat-ai/cvat#2282: users mark such areas with a dedicated label), so every label-based
format gets one extra label, ``segal to label`` (a loud colour no class uses), drawn as an outline
just *outside* the area: it never covers a pre-annotated pixel, stays visible over the image, and can
be hidden or locked per label in both tools.  Per format: ``cvat-mask`` paints the outline into the
colour masks and lists the label in ``labelmap.txt``; ``cvat-xml`` adds the label and one ``<mask>``
of the outline per image; ``labelstudio`` adds it as a read-only brush region (``"readonly": true``,
which Label Studio keeps through edits and "delete all") in a second ``BrushLabels`` control, with a
``Header`` saying to label inside it; ``coco`` adds the category and one annotation per image;
``png`` (id maps cannot carry a marker) writes ``to_label/<id>.png`` (255 = label here) beside
``masks/``.  Every importer drops the marker (label, category, control or folder), so an unchanged
region export imports as the prediction inside the area and 255 outside.  Image-level exports carry
no marker and are byte-identical to those before region runs existed.

Import refuses, naming the file and the fix: masks of the wrong size, unknown class names or
colours, ids that were not queried, duplicate ids, corrupt or truncated files, and unsafe zips
(escaping paths, symlinks, bombs, too many members).  Zips are extracted member by member into a
temporary folder after those checks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np

from segal.data.base import ClassSet
from segal.errors import UserError
from segal.fileio import atomic_write_bytes, atomic_write_json
from segal.interchange import coco, cvat_mask, cvat_xml, labelstudio, png  # noqa: F401  (register formats)
from segal.interchange.base import EXPORT_MARKER, FORMATS, ExportItem, ExportOptions
from segal.interchange.detect import load_any

__all__ = ["FORMATS", "ExportItem", "check_replaceable", "export_batch", "import_masks"]

MARKER = EXPORT_MARKER  # marks a folder as segal's own export, which a re-export may replace


def export_batch(fmt: str, out: Path, items: list[ExportItem], classes: ClassSet, *, task_name: str,
                 cityscapes_label_ids: np.ndarray | None = None,
                 extra_files: dict[str, bytes] | None = None) -> Path:
    """Write ``items`` in format ``fmt`` as the directory ``out``; returns the file to hand to the tool.

    The export is written into a fresh staging folder beside ``out`` and swapped in whole, so a
    re-export into the same folder never mixes in an earlier cycle's files (which the import of that
    folder would then refuse as "not queried").  A folder is only replaced if it is empty or holds
    segal's marker: a folder of someone else's files is refused, never deleted.  ``extra_files``
    (relative POSIX path → bytes, e.g. a region run's ``regions.json``) are written into the staging
    folder too, so they appear with the export or not at all.
    """
    exporter = FORMATS.get(fmt).export
    out = Path(out)
    ids = sorted(item.id for item in items)
    extras = extra_paths(extra_files or {})
    check_replaceable(out, ids)
    out.parent.mkdir(parents=True, exist_ok=True)
    for old in out.parent.glob(f".{out.name}.segal-staging-*"):  # left by an export that was killed
        shutil.rmtree(old, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.segal-staging-"))
    try:
        record: dict[str, object] = {"format": fmt, "task": task_name, "ids": ids}
        if extras:  # named so that import's format detection skips them (absent: image exports unchanged)
            record["extra_files"] = sorted(rel.as_posix() for rel, _ in extras)
        atomic_write_json(staging / MARKER, record)
        main = exporter(staging, list(items), classes, ExportOptions(task_name, cityscapes_label_ids, public_dir=out))
        write_extra_files(staging, extras, fmt)
        swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / main.relative_to(staging)


def extra_paths(extra_files: dict[str, bytes]) -> list[tuple[PurePosixPath, bytes]]:
    """Refuse, before anything is written, a path that is absolute, climbs out or is not plain POSIX."""
    checked = []
    for name, data in extra_files.items():
        rel = PurePosixPath(name)
        if (not isinstance(data, bytes) or not name or "\\" in name or rel.is_absolute()
                or any(part in ("", ".", "..") for part in name.split("/"))):
            raise ValueError(f"extra export file {name!r} must be a relative path inside the export holding bytes")
        checked.append((rel, data))
    return checked


def write_extra_files(staging: Path, extras: list[tuple[PurePosixPath, bytes]], fmt: str) -> None:
    """Write beside the format's own files; a name that collides with one of them is refused, not overwritten."""
    for rel, data in extras:
        target = staging.joinpath(*rel.parts)
        clash = [p for p in [target, *target.parents] if p != staging and p.is_relative_to(staging)
                 and (os.path.lexists(p) and (p == target or not p.is_dir()))]
        if clash:
            raise ValueError(f"extra export file {rel.as_posix()!r} collides with the {fmt} export's own "
                             f"{clash[-1].relative_to(staging).as_posix()!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)


def check_replaceable(out: Path, ids: list[str]) -> None:
    """Refuse to replace ``out`` unless it is empty or an earlier segal export of *another* batch.

    An export of the same batch may hold the annotators' work (PNG masks are edited in place), so
    replacing it could lose labels that were never imported: that is left to the user.
    """
    if out.exists() and not out.is_dir():
        raise UserError("the export folder is a file", path=out, fix="pass a new or empty folder as --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise UserError("the export folder holds files segal did not write", path=out,
                        fix="pass a new or empty folder as --out (segal replaces only its own earlier exports)")
    try:
        previous = json.loads((out / MARKER).read_text()).get("ids")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous == sorted(ids):
        raise UserError("the export folder already holds this batch (perhaps with annotations made in it)", path=out,
                        fix="import it with `segal import`, or delete the folder to export this batch again")


def swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging`` with renames; the old export is deleted only once the new one is in place."""
    if not out.exists():
        os.replace(staging, out)
        return
    trash = out.with_name(f".{out.name}.segal-staging-old")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(out, trash)
    os.replace(staging, out)
    shutil.rmtree(trash, ignore_errors=True)


def import_masks(path: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Read annotated masks (id → H×W uint8 train ids, 255 ignore); all of them or a ``UserError``."""
    return load_any(Path(path), classes, expected)
