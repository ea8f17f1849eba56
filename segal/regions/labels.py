"""Simulated region oracles: what an annotator labelling some regions of an image hands back.

* **precise** — the region's true pixels (the ground truth inside the region);
* **dominant** — every pixel of the region gets the region's majority class, as one click per region
  gives.  The majority is taken over the region's non-void pixels; ties go to the lowest class id
  (``argmax`` takes the first maximum); a region that is all void (or has no pixels at the map's
  resolution) gets ``ignore_index``.

In both, pixels outside the queried regions are ``ignore_index`` (unlabelled: the loss skips them)
and void pixels of the ground truth stay void.  :func:`dominant_noise` measures what dominant
labelling costs in label quality: the labelled pixels whose true class is not the region's label.

The region map and the mask have the same shape (upsample the map first,
:func:`segal.regions.maps.upsample_map`); everything is counted with one ``bincount`` per call.
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def _positions(region_map: np.ndarray, local_ids: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, int]:
    """Per pixel, the position in ``local_ids`` of its region, -1 outside them; and the number of ids."""
    if region_map.shape != gt.shape:
        raise ValueError(f"region map {region_map.shape} and mask {gt.shape} differ in shape")
    ids = np.asarray(local_ids, dtype=np.int64).ravel()
    if ids.size and ids.min() < 0:
        raise ValueError(f"negative region id {int(ids.min())}")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("region ids repeat")
    top = max(int(region_map.max()) + 1 if region_map.size else 0, int(ids.max()) + 1 if ids.size else 0)
    lookup = np.full(top, -1, dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    return lookup[region_map], len(ids)


def _dominant(pos: np.ndarray, n: int, gt: np.ndarray, ignore_index: int) -> np.ndarray:
    keep = (pos >= 0) & (gt != ignore_index)
    which, classes = pos[keep], gt[keep].astype(np.int64)
    k = int(classes.max()) + 1 if classes.size else 1
    counts = np.bincount(which * k + classes, minlength=n * k).reshape(n, k)
    labels = counts.argmax(axis=1)
    labels[counts.sum(axis=1) == 0] = ignore_index
    return labels.astype(gt.dtype)


def dominant_labels(region_map: np.ndarray, gt: np.ndarray, local_ids: np.ndarray,
                    ignore_index: int = 255) -> np.ndarray:
    """The majority class of each region of ``local_ids`` (in their order), in ``gt``'s dtype."""
    pos, n = _positions(region_map, local_ids, gt)
    return _dominant(pos, n, gt, ignore_index)


def partial_mask(region_map: np.ndarray, gt: np.ndarray, local_ids: np.ndarray,
                 mode: Literal["precise", "dominant"], ignore_index: int = 255) -> np.ndarray:
    """The mask an oracle returns for the regions ``local_ids``: labelled inside them, ``ignore_index`` elsewhere."""
    if mode not in ("precise", "dominant"):
        raise ValueError(f"unknown oracle mode {mode!r}: precise or dominant")
    pos, n = _positions(region_map, local_ids, gt)
    inside = pos >= 0
    mask = np.full(gt.shape, ignore_index, dtype=gt.dtype)
    if mode == "precise":
        mask[inside] = gt[inside]
    else:
        mask[inside] = _dominant(pos, n, gt, ignore_index)[pos[inside]]
        mask[gt == ignore_index] = ignore_index
    return mask


def dominant_noise(region_map: np.ndarray, gt: np.ndarray, local_ids: np.ndarray,
                   ignore_index: int = 255) -> tuple[int, int]:
    """``(wrong, labelled)``: non-void pixels of the regions, and those whose class is not their region's
    dominant label (the share ``wrong / labelled`` is the dominant oracle's label noise)."""
    pos, n = _positions(region_map, local_ids, gt)
    dominant = _dominant(pos, n, gt, ignore_index)
    keep = (pos >= 0) & (gt != ignore_index)
    wrong = int(np.count_nonzero(dominant[pos[keep]] != gt[keep]))
    return wrong, int(np.count_nonzero(keep))


__all__ = ["dominant_labels", "dominant_noise", "partial_mask"]
