"""Which format a returned annotation file is in, decided from the path and its content."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from segal.data.base import ClassSet
from segal.errors import UserError
from segal.fileio import read_json
from segal.interchange import coco, cvat_mask, cvat_xml, labelstudio, png
from segal.interchange.base import MAX_JSON_BYTES, REEXPORT, extra_file_names
from segal.interchange.safezip import safe_extract


def load_json(path: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    doc = read_json(path, max_bytes=MAX_JSON_BYTES, fix=REEXPORT)
    if labelstudio.is_labelstudio(doc):
        return labelstudio.load_tasks(path, doc, classes, expected)
    if coco.is_coco(doc):
        return coco.load_doc(path, doc, classes, expected)
    raise UserError("JSON is neither a Label Studio export (a list of tasks) nor COCO (images/annotations)",
                    path=path, fix="export as Label Studio JSON or COCO 1.0")


def load_dir(root: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    if cvat_mask.is_cvat_mask(root):
        return cvat_mask.load(root, classes, expected)
    if (root / cvat_xml.MAIN_FILE).is_file():
        return cvat_xml.load(root / cvat_xml.MAIN_FILE, classes, expected)
    extras = extra_file_names(root)  # e.g. a region export's regions.json: not annotations
    jsons = sorted(p for p in [*root.glob("*.json"), *root.glob("annotations/*.json")]
                   if not p.name.startswith(".") and p.relative_to(root).as_posix() not in extras)
    if len(jsons) == 1:
        return load_json(jsons[0], classes, expected)
    if len(jsons) > 1:
        raise UserError(f"{len(jsons)} JSON files found: {', '.join(p.name for p in jsons[:4])}", path=root,
                        fix="pass the one annotation file itself")
    if png.mask_files(root):
        return png.load(root, classes, expected)
    raise UserError("no annotations found (no labelmap.txt, annotations.xml, JSON or PNG masks)", path=root,
                    fix="pass the zip, JSON, XML or mask folder exported by the annotation tool")


def load_zip(path: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    tmp = Path(tempfile.mkdtemp(prefix="segal-import-"))
    try:
        safe_extract(path, tmp)
        entries = [p for p in tmp.iterdir() if not p.name.startswith(".")]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp  # a zipped top folder
        if len(entries) == 1 and entries[0].is_file():
            return load_file(entries[0], classes, expected)
        return load_dir(root, classes, expected)
    except UserError as exc:
        message = str(exc).replace(f"{tmp}/", f"{path}:").replace(str(tmp), str(path))
        raise UserError(message) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_file(path: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".zip" or (suffix not in (".json", ".xml") and zipfile.is_zipfile(path)):
        return load_zip(path, classes, expected)
    if suffix == ".json":
        return load_json(path, classes, expected)
    if suffix == ".xml":
        return cvat_xml.load(path, classes, expected)
    raise UserError(f"cannot tell the annotation format of a {suffix or 'suffix-less'} file", path=path,
                    fix="pass a .zip, .json, .xml or a folder of PNG masks")


def load_any(path: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    path = Path(path)
    if path.is_dir():
        return load_dir(path, classes, expected)
    if path.is_file():
        return load_file(path, classes, expected)
    raise UserError("annotations not found", path=path, fix="pass the file or folder exported by the annotation tool")
