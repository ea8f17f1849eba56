"""The human oracle of a region-level run: which pixels annotators are asked for, and what they return.

``segal acquire --oracle human`` marks the queried regions *pending*; ``segal export`` sends each
image with pending regions to the annotation tool with a *to label* mask (its pending regions'
pixels, at the image's own size) and writes ``regions.json`` beside it; ``segal import`` takes back
either of two kinds of answer:

* **full masks** in any format ``segal import`` reads: only the pending regions' pixels are taken,
  every other pixel stays unlabeled (what an annotator painted elsewhere is ignored).  255 inside a
  pending region means void there, but a pending region left *entirely* 255 is refused: with the
  prediction pre-filled in it, that is almost always an unfinished task, and accepting it would spend
  the region's budget on nothing.
* **dominant labels**: ``regions.json`` with one class name per region filled in; every pixel of the
  region gets that class (one click per region, as Cai et al. count it).  The reserved name
  ``"void"`` (unless the dataset has a class of that name) marks a region that shows no class at all:
  it counts as labeled and its pixels stay void, the one way to answer for such a region.

``regions.json`` (``"format": "segal-regions"``, ``"version": 1``)::

    {"format": "segal-regions", "version": 1, "task": "<recipe name>-cycle-<k>",
     "classes": ["road", "car", ...],
     "images": [{"id": "<image id>", "width": W, "height": H,
                 "regions": [{"region": 17, "bbox": [x, y, w, h], "pixels": 812, "class": null}, ...]}]}

``region`` is the region's local id in its image's region map; ``bbox`` (left, top, width, height)
and ``pixels`` are measured at the image's size; ``class`` is ``null`` until an annotator (or a
script) writes one of ``classes`` there.  A region with no pixel at the image's size (only when
regions are computed at a higher resolution than the image) is not listed and is labeled empty.
Import refuses, naming the file: an image or a region that was not queried, a region id out of
range, a region or image listed twice, an unknown class, and a pending region left without one.

What comes back is stored per image as one mask at the image's size (``labels/<id>.png`` of the
run, 255 outside the human-labeled regions), merged with the image's earlier imports; this module
computes those masks and checks the answers, :mod:`segal.human` reads and writes the files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segal.data.base import ClassSet
from segal.errors import UserError
from segal.fileio import read_json
from segal.regions.maps import upsample_map

REGIONS_FILE = "regions.json"
VOID = "void"  # the class of a region that truly shows no class (module docstring)
FORMAT = "segal-regions"
VERSION = 1
MAX_BYTES = 1 << 28  # a regions.json larger than this is refused before parsing
_FIX_JSON = f"fill in the {REGIONS_FILE} that `segal export` wrote for this cycle, changing only the \"class\" values"


@dataclass(frozen=True)
class PendingImage:
    """One image an annotator is asked about: its pool index, id, own size and pending regions."""

    index: int
    id: str
    shape: tuple[int, int]  # (H, W) of the image
    regions: np.ndarray  # local ids of its pending regions, ascending

    def region_map(self, stored_map: np.ndarray) -> np.ndarray:
        """The cache's region map of this image at the image's own size (nearest neighbour)."""
        return upsample_map(stored_map, self.shape)

    def to_label(self, region_map: np.ndarray) -> np.ndarray:
        """``H×W`` bool: True on the pending regions' pixels (``region_map`` at the image's size)."""
        return _lookup(region_map, self.regions) >= 0


def _lookup(region_map: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per pixel, the position in ``ids`` of its region, -1 for every other region."""
    top = max(int(region_map.max()) + 1 if region_map.size else 0, int(ids.max()) + 1 if len(ids) else 0)
    table = np.full(top, -1, dtype=np.int64)
    table[ids] = np.arange(len(ids))
    return table[region_map]


def region_boxes(region_map: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes, pixels)`` of the regions ``ids``: ``[x, y, w, h]`` int64 rows (zeros for a region with
    no pixel) and pixel counts, both measured on ``region_map``."""
    ids = np.asarray(ids, dtype=np.int64)
    pos = _lookup(region_map, ids)
    ys, xs = np.nonzero(pos >= 0)
    which = pos[ys, xs]
    pixels = np.bincount(which, minlength=len(ids)).astype(np.int64)
    big = np.iinfo(np.int64).max
    x0, y0 = np.full(len(ids), big), np.full(len(ids), big)
    x1, y1 = np.full(len(ids), -1), np.full(len(ids), -1)
    np.minimum.at(x0, which, xs)
    np.minimum.at(y0, which, ys)
    np.maximum.at(x1, which, xs)
    np.maximum.at(y1, which, ys)
    boxes = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1)
    boxes[pixels == 0] = 0
    return boxes, pixels


def image_entry(image: PendingImage, region_map: np.ndarray) -> dict[str, Any]:
    """One image's entry of ``regions.json``: its pending regions with pixels, each with ``"class": null``."""
    boxes, pixels = region_boxes(region_map, image.regions)
    return {"id": image.id, "width": image.shape[1], "height": image.shape[0], "regions": [
        {"region": int(r), "bbox": [int(v) for v in box], "pixels": int(n), "class": None}
        for r, box, n in zip(image.regions.tolist(), boxes, pixels.tolist(), strict=True) if n > 0]}


def regions_document(entries: list[dict[str, Any]], classes: ClassSet, task_name: str) -> dict[str, Any]:
    """The ``regions.json`` to fill in (module docstring), from each image's :func:`image_entry`."""
    return {"format": FORMAT, "version": VERSION, "task": task_name, "classes": list(classes.names),
            "images": entries}


def is_regions_file(path: Path) -> bool:
    """Whether ``path`` is a ``regions.json`` of segal (read from its first bytes: others may be large)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    return f'"{FORMAT}"'.encode() in head or path.name == REGIONS_FILE


def read_dominant(path: Path, classes: ClassSet, pending: Mapping[str, PendingImage],
                  num_regions: Mapping[str, int]) -> dict[str, dict[int, int]]:
    """Image id → {local region id → class id} from a filled ``regions.json``, for every pending region
    (those with pixels); anything else is a :class:`UserError` naming ``path`` (module docstring).

    ``num_regions``: image id → how many regions its map holds (for the range check).
    """
    doc = read_json(path, max_bytes=MAX_BYTES, fix=_FIX_JSON)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"is not a segal regions file (no \"format\": \"{FORMAT}\")", path=path, fix=_FIX_JSON)
    if doc.get("version") != VERSION:
        raise UserError(f"regions file version {doc.get('version')!r}, this segal reads version {VERSION}",
                        path=path, fix=_FIX_JSON)
    images = doc.get("images")
    if not isinstance(images, list):
        raise UserError("regions file has no \"images\" list", path=path, fix=_FIX_JSON)
    names = {name: k for k, name in enumerate(classes.names)}
    known = ", ".join(classes.names[:12]) + (", …" if len(classes) > 12 else "")
    out: dict[str, dict[int, int]] = {}
    for entry in images:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not isinstance(entry.get("regions"), list):
            raise UserError("an entry of \"images\" lacks an \"id\" string or a \"regions\" list", path=path, fix=_FIX_JSON)
        image_id = entry["id"]
        if image_id not in pending:
            raise UserError(f"image {image_id!r} was not queried (not pending)", path=path,
                            fix="label only the images of the regions.json `segal export` wrote for this cycle")
        if image_id in out:
            raise UserError(f"image {image_id!r} appears twice", path=path, fix="list each image once")
        wanted = set(pending[image_id].regions.tolist())
        given: dict[int, int] = {}
        for region in entry["regions"]:
            local = region.get("region") if isinstance(region, dict) else None
            if isinstance(local, bool) or not isinstance(local, int):
                raise UserError(f"a region of image {image_id!r} has no integer \"region\" id", path=path, fix=_FIX_JSON)
            if not 0 <= local < num_regions[image_id]:
                raise UserError(f"region {local} of image {image_id!r} is out of range (the image has "
                                f"{num_regions[image_id]} regions, 0..{num_regions[image_id] - 1})", path=path,
                                fix=_FIX_JSON)
            if local not in wanted:
                raise UserError(f"region {local} of image {image_id!r} was not queried (not pending)", path=path,
                                fix="label only the regions listed in the exported regions.json")
            if local in given:
                raise UserError(f"region {local} of image {image_id!r} appears twice", path=path,
                                fix="list each region once")
            name = region.get("class")
            if name is None:
                raise UserError(f"region {local} of image {image_id!r} has no class (\"class\": null)", path=path,
                                fix=f"write one of the run's class names ({known}) as its \"class\"")
            if name == VOID and VOID not in names:
                given[local] = classes.ignore_index
                continue
            if not isinstance(name, str) or name not in names:
                raise UserError(f"unknown class name {name!r} for region {local} of image {image_id!r}", path=path,
                                fix=f"use the run's class names ({known}), or \"{VOID}\" for a region of no class")
            given[local] = names[name]
        out[image_id] = given
    for image_id in pending:
        if image_id not in out:
            raise UserError(f"pending image {image_id!r} is missing", path=path,
                            fix="keep every image of the exported regions.json and give each region a class")
    return out


def check_dominant_complete(path: Path, image: PendingImage, given: Mapping[int, int],
                            pixels: np.ndarray) -> None:
    """Every pending region of ``image`` with pixels (``pixels`` per region, in ``image.regions`` order) got a class."""
    missing = [int(r) for r, n in zip(image.regions.tolist(), pixels.tolist(), strict=True) if n > 0 and r not in given]
    if missing:
        raise UserError(f"{len(missing)} pending regions of image {image.id!r} have no entry: first is region "
                        f"{missing[0]}", path=path, fix="keep every region of the exported regions.json and give each a class")


def paint_dominant(region_map: np.ndarray, given: Mapping[int, int], ignore_index: int) -> np.ndarray:
    """The mask of a dominant-label answer: each listed region filled with its class, ``ignore_index`` elsewhere."""
    ids = np.asarray(sorted(given), dtype=np.int64)
    values = np.asarray([given[r] for r in ids.tolist()], dtype=np.uint8)
    pos = _lookup(region_map, ids)
    mask = np.full(region_map.shape, ignore_index, dtype=np.uint8)
    inside = pos >= 0
    mask[inside] = values[pos[inside]]
    return mask


def take_pending(path: Path, image: PendingImage, region_map: np.ndarray, mask: np.ndarray,
                 ignore_index: int) -> np.ndarray:
    """A full mask cut to ``image``'s pending regions (``ignore_index`` elsewhere); a pending region with
    pixels that the mask leaves entirely ``ignore_index`` is refused (module docstring)."""
    pos = _lookup(region_map, image.regions)
    inside = pos >= 0
    labeled = inside & (mask != ignore_index)
    pixels = np.bincount(pos[inside], minlength=len(image.regions))
    painted = np.bincount(pos[labeled], minlength=len(image.regions))
    empty = image.regions[(pixels > 0) & (painted == 0)]
    if len(empty):
        raise UserError(f"the mask of {image.id!r} leaves {len(empty)} pending regions unlabeled (all void): "
                        f"first is region {int(empty[0])}", path=path,
                        fix="label every pixel of the to-label area (the pending regions; regions.json lists "
                            f"their boxes), or answer with a filled regions.json (\"class\": \"{VOID}\" for a region "
                            "that shows no class)")
    out = np.full(mask.shape, ignore_index, dtype=np.uint8)
    out[inside] = mask[inside]
    return out


def merge_labels(previous: np.ndarray | None, new: np.ndarray, to_label: np.ndarray, ignore_index: int) -> np.ndarray:
    """An image's stored human labels after an import: ``new`` on the pending pixels, ``previous`` (earlier
    cycles' imports, or nothing) elsewhere.  Applying it twice gives the same mask, so a re-run import
    after a kill that moved some files already stores the same labels."""
    out = np.full(new.shape, ignore_index, dtype=np.uint8) if previous is None else previous.copy()
    out[to_label] = new[to_label]
    return out


def dumps(doc: dict[str, Any]) -> bytes:
    """``regions.json`` as written: one region per line, so that a person can fill it in an editor."""
    lines = ["{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items() if k != "images")
             + ', "images": [']
    for n, image in enumerate(doc["images"]):
        head = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in image.items() if k != "regions")
        regions = ",\n   ".join(json.dumps(r) for r in image["regions"])
        lines.append(f' {{{head}, "regions": [\n   {regions}]}}' + ("," if n < len(doc["images"]) - 1 else ""))
    lines.append("]}")
    return ("\n".join(lines) + "\n").encode()


__all__ = ["FORMAT", "REGIONS_FILE", "VERSION", "PendingImage", "check_dominant_complete", "dumps",
           "image_entry", "is_regions_file", "merge_labels", "paint_dominant", "read_dominant", "region_boxes",
           "regions_document", "take_pending"]
