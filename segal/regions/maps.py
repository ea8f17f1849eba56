"""Region maps: each pool image cut into superpixels (SLIC) or square patches, at a stated resolution.

A region map is an ``int32`` ``H×W`` array of local region ids ``0..R-1``, contiguous, each region
one 4-connected piece, computed at :attr:`RegionSpec.resolution` (the pool's mask size when unset).
The same image and spec always give the same map, so a map never needs to be stored next to a run's
state: :mod:`segal.regions.cache` computes every map once and every run reads it.

Superpixels come from scikit-image's :func:`skimage.segmentation.slic` rather than OpenCV contrib's
``ximgproc`` (SLIC, SEEDS): ``opencv-contrib-python`` ships its own ``cv2`` and clashes with the
``opencv-python-headless`` wheel that albumentations pulls in (two packages owning one module), while
scikit-image installs beside it, and its SLIC is documented, has no random seeding (centres start on
a regular grid) and so gives the same map on every machine.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Literal

import cv2
import numpy as np

from segal.errors import UserError

VERSION = 1  # bump when the maps a spec gives change (algorithm, relabelling): old caches then rebuild
METHODS = ("slic", "grid")


@dataclass(frozen=True)
class RegionSpec:
    """How pool images are cut into regions.

    ``segments``: SLIC's target number of superpixels per image (it returns about that many);
    ``compactness``: SLIC's trade-off between colour and space (higher: squarer superpixels);
    ``patch``: the side of a grid cell in pixels at the region resolution (the last row and column
    are smaller where the side does not divide the image); ``resolution``: ``(H, W)`` at which regions
    are computed and stored, ``None`` for the pool's own mask size (which must then be the same for
    every image).
    """

    method: Literal["slic", "grid"] = "slic"
    segments: int = 400
    compactness: float = 10.0
    patch: int = 32
    resolution: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        fix = "set regions.method to slic or grid, regions.segments and regions.patch to positive integers, " \
              "regions.compactness to a positive number and regions.resolution to [H, W] or leave it out"
        if self.method not in METHODS:
            raise UserError(f"unknown region method {self.method!r}", fix=f"use one of {', '.join(METHODS)}")
        for name in ("segments", "patch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise UserError(f"regions.{name} must be a positive integer, not {value!r}", fix=fix)
        c = self.compactness
        if isinstance(c, bool) or not isinstance(c, int | float | np.number) or not math.isfinite(c) or c <= 0:
            raise UserError(f"regions.compactness must be a positive number, not {c!r}", fix=fix)
        r = self.resolution
        if r is not None:
            if (not isinstance(r, tuple | list) or len(r) != 2
                    or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in r)):
                raise UserError(f"regions.resolution must be [H, W] in pixels, not {r!r}", fix=fix)
            object.__setattr__(self, "resolution", (int(r[0]), int(r[1])))  # a YAML list becomes a tuple
        object.__setattr__(self, "segments", int(self.segments))
        object.__setattr__(self, "patch", int(self.patch))
        object.__setattr__(self, "compactness", float(self.compactness))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["resolution"] = None if self.resolution is None else list(self.resolution)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RegionSpec:
        unknown = set(d) - {"method", "segments", "compactness", "patch", "resolution"}
        if unknown:
            raise UserError(f"unknown region settings {sorted(unknown)}",
                            fix="use method, segments, compactness, patch and resolution")
        d = dict(d)
        if isinstance(d.get("resolution"), list):
            d["resolution"] = tuple(d["resolution"])
        return cls(**d)

    def fingerprint(self) -> str:
        """A stable hash of the fields (and of :data:`VERSION`): equal exactly when the maps are equal."""
        text = json.dumps({"version": VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def region_shape(spec: RegionSpec, image_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(H, W)`` of the map of an image of ``image_shape`` under ``spec``."""
    return spec.resolution if spec.resolution is not None else (int(image_shape[0]), int(image_shape[1]))


def compute_region_map(image: np.ndarray, spec: RegionSpec) -> np.ndarray:
    """The ``int32`` region map of an RGB ``uint8`` ``H×W×3`` image at ``spec``'s resolution.

    SLIC runs on the image resized to the resolution (``INTER_AREA`` when shrinking, ``INTER_LINEAR``
    when enlarging), with its own connectivity enforcement; the result is then relabelled by 4-connected
    component in raster order, which makes the ids contiguous and guarantees one piece per region.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 H×W×3 image, got {image.dtype} {image.shape}")
    h, w = region_shape(spec, image.shape)
    if spec.method == "grid":
        return grid_map((h, w), spec.patch)
    from skimage.measure import label  # imported here: the grid and every reader of caches do without it
    from skimage.segmentation import slic

    if image.shape[:2] != (h, w):
        shrink = h * w < image.shape[0] * image.shape[1]
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    segments = slic(image, n_segments=spec.segments, compactness=spec.compactness, start_label=0,
                    channel_axis=-1, enforce_connectivity=True)
    return (label(segments, background=-1, connectivity=1) - 1).astype(np.int32)


def grid_map(shape: tuple[int, int], patch: int) -> np.ndarray:
    """Square cells of ``patch`` pixels numbered row by row (the last row and column may be smaller)."""
    h, w = shape
    columns = -(-w // patch)
    rows = (np.arange(h, dtype=np.int32) // patch)[:, None]
    return (rows * columns + (np.arange(w, dtype=np.int32) // patch)[None, :]).astype(np.int32)


def upsample_map(region_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``region_map`` at ``shape`` (a mask's ``(H, W)``) by nearest neighbour, so labels are read at full size.

    Returned as is (no copy) when it already has that shape.  Enlarging keeps every region; shrinking
    below the map's resolution can drop thin ones, which then simply have no pixels.
    """
    h, w = int(shape[0]), int(shape[1])
    if region_map.shape == (h, w):
        return region_map
    source = np.ascontiguousarray(region_map)
    if source.dtype not in (np.uint16, np.int32):
        source = source.astype(np.int32)
    return cv2.resize(source, (w, h), interpolation=cv2.INTER_NEAREST)


__all__ = ["METHODS", "RegionSpec", "compute_region_map", "grid_map", "region_shape", "upsample_map"]
