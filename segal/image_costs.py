"""What an image-level run's labels cost, on the axes a region run records, so both plot on one cost axis.

A region run's ``metrics.json`` holds a ``cost`` block (:class:`segal.regions.budget.CostLedger`):
images touched, regions labeled, pixels labeled and their share of the pool's pixels, and clicks.  An
image-level run records the same block with a whole image as one region, by the same rules:

* **pixels** — every pixel of the image at its mask's size, void included, as a region's area counts
  every pixel of the region (a region run without ``regions.resolution`` counts at the mask's size
  too).  The share divides by the pixels of the whole pool, each image at its own size: for a pool of
  equal-sized images it is the labeled fraction of images, whatever resolution a region run counts
  at, which is what lets the two share an axis;
* **clicks** — precise labeling of the whole image, :func:`segal.regions.costs.clicks_precise` with a
  single region covering it: the polygon vertices of every connected class piece (Cai et al.'s
  rule, the one a region run's precise oracle pays per region);
* classification pools: one click per image (its class), no pixels.

Each image's cost is computed the first time it is labeled and kept in ``<run>/cache/image_costs.json``
with the pool's total pixels (read once from the masks' file headers), so a cycle counts only its new
images.  An imported human mask is counted as drawn, and not cached (it may be imported again).
:func:`segal.cost_records.record_costs` adds the block to the metrics of a run written before it existed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segal.data.base import Dataset
from segal.errors import UserError
from segal.fileio import atomic_write_json, fingerprint, read_json
from segal.regions.costs import whole_image_clicks

CACHE_FILE = "image_costs.json"
VERSION = 2  # bump when the counting rule changes: older caches are then recounted (2: nested pieces count)


def mask_pixels(pool: Dataset, index: int) -> int:
    """Pixels of image ``index``'s mask, from its file header where it has a file (no decoding)."""
    path = pool.target_path(index)
    if path is not None and Path(path).is_file():
        from PIL import Image

        try:
            with Image.open(path) as im:
                width, height = im.size
            return int(width) * int(height)
        except OSError:
            pass  # not an image PIL reads: decode it the adapter's way
    return int(np.asarray(pool.load_target(index)).size)


class ImageCosts:
    """Per-image pixels and clicks of one run's pool, counted once and cached under ``cache_dir``."""

    def __init__(self, pool: Dataset, cache_dir: Path):
        self.pool = pool
        self.path = Path(cache_dir) / CACHE_FILE
        self._key = {"version": VERSION, "pool": fingerprint(pool.ids)}
        try:  # a cache: torn, edited or of another pool, it is recounted rather than trusted
            cached = read_json(self.path) if self.path.is_file() else None
        except UserError:
            cached = None
        if not (isinstance(cached, dict) and {k: cached.get(k) for k in self._key} == self._key
                and isinstance(cached.get("images"), dict) and isinstance(cached.get("total_pixels"), int)):
            cached = {"images": {}, "total_pixels": None}
        self._images: dict[str, list[int]] = dict(cached["images"])
        self._total: int | None = cached["total_pixels"]

    @property
    def total_pixels(self) -> int:
        """All the pool's pixels, each image at its mask's size."""
        if self._total is None:
            self._total = sum(mask_pixels(self.pool, i) for i in range(len(self.pool)))
        return self._total

    def block(self, labeled: np.ndarray, labels: Dataset | None = None, human: set[int] | frozenset[int] = frozenset(),
              ) -> dict[str, Any]:
        """The ``cost`` block of a cycle whose labeled images are ``labeled``.

        ``labels`` is the view whose masks the annotator drew (default: the pool's ground truth);
        images in ``human`` were imported, so their masks are read from it and not cached."""
        labeled = np.asarray(labeled, dtype=np.int64)
        n = len(labeled)
        if self.pool.task != "segmentation":
            return {"images_touched": n, "regions_labeled": n, "clicks": n}
        view = labels if labels is not None else self.pool
        ignore = self.pool.classes.ignore_index
        pixels = clicks = 0
        changed = False
        for i in labeled.tolist():
            key = str(i)
            cost = None if i in human else self._images.get(key)
            if not (isinstance(cost, list) and len(cost) == 2 and all(type(v) is int and v >= 0 for v in cost)):
                mask = np.asarray(view.load_target(i))
                cost = [int(mask.size), whole_image_clicks(mask, ignore)]
                if i not in human:
                    self._images[key], changed = cost, True
            pixels, clicks = pixels + int(cost[0]), clicks + int(cost[1])
        total = self.total_pixels
        if changed or not self.path.is_file():
            atomic_write_json(self.path, {**self._key, "total_pixels": total, "images": self._images})
        if total <= 0:
            raise UserError("the pool's masks hold no pixels", path=self.path.parent, fix="check data.root")
        return {"images_touched": n, "regions_labeled": n, "pixels_labeled": pixels, "pixel_share": pixels / total,
                "clicks": clicks}


__all__ = ["CACHE_FILE", "ImageCosts", "mask_pixels", "whole_image_clicks"]
