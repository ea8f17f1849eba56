"""What labelling regions costs an annotator: clicks (after Cai et al., CVPR 2021) and pixels.

Cai et al. showed that the unit of cost decides which region shape wins: counted in labelled pixels
superpixels look no better than rectangles, counted in annotator clicks they beat them.  segal
therefore records clicks as well as pixels, with these rules:

* **Dominant labelling** — the annotator clicks once per region to give its majority class:
  ``clicks_dominant(n) = n``.
* **Precise labelling** — the annotator draws a polygon around every class part inside the region.
  For each queried region and each class present in it (void excluded: void pixels are left
  undrawn), every connected piece of that class inside the region (8-connected, as
  :func:`cv2.findContours` traces it) costs the vertex count of its outer contour simplified by
  :func:`cv2.approxPolyDP` with a tolerance of :data:`EPSILON` = 1 pixel, and at least
  :data:`MIN_VERTICES` = 3 (a polygon has at least a triangle's clicks).  Outlines run through
  pixel centres, so a piece at most 2 pixels across (a dot, a thin sliver along a boundary) is
  within ε of a line and costs the minimum 3; from 3 pixels across a rectangle costs 4.  Holes are not drawn: a class enclosed by another is its own piece, drawn over
  it, as annotation tools layer polygons, and so is a piece lying in such a hole (a ring of class A
  around class B around a dot of A: A costs the ring's polygon and the dot's).  A rectangular region of one class costs 4 clicks; split
  into two classes by a straight line, 4 + 4.  The region's own outline is traced too: the tool shows
  it, but the annotator's polygon has to follow it, which is why precise superpixel labels cost many
  more clicks than dominant ones.
* **Initial images** — a precise run starts from whole images, labeled as an image-level run labels them:
  their clicks are the whole image's (:func:`segal.image_costs.whole_image_clicks`: each class piece
  once, not once per superpixel it crosses; :meth:`segal.regions.budget.CostLedger.of`).
* **Pixels** — a region's area at the region resolution (:mod:`segal.regions.cache`), so that a
  budget in pixels is a share of the pool's stored pixels.

Clicks are counted on the ground truth at the resolution of the map handed in: pass a map
upsampled to the mask's size (:func:`segal.regions.maps.upsample_map`) to count at full size.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage  # a dependency of scikit-image: find_objects gives every region's box in one pass

EPSILON = 1.0  # pixels: the tolerance of approxPolyDP when a class piece's outline becomes a polygon
MIN_VERTICES = 3  # a polygon has at least three vertices


def clicks_dominant(n_regions: int) -> int:
    """One click per region: the annotator picks each region's majority class."""
    return int(n_regions)


def polygon_clicks(piece: np.ndarray) -> int:
    """Clicks of the outer polygons of the 8-connected pieces of a boolean mask (see the module docstring).

    Every piece counts, a piece inside a hole of another piece of the mask too (sky seen through a tree
    that sky surrounds): ``RETR_CCOMP`` puts every outer boundary at the top level, where ``RETR_EXTERNAL``
    dropped the nested ones (before stop 32: 0.19% of CamVid's whole-image clicks, 0.005% of its regions')."""
    padded = np.pad(piece.astype(np.uint8), 1)  # pieces touching the crop's edge keep a closed outline
    contours, hierarchy = cv2.findContours(padded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return 0
    return sum(max(len(cv2.approxPolyDP(c, EPSILON, True)), MIN_VERTICES)
               for c, link in zip(contours, hierarchy[0], strict=True) if link[3] < 0)  # no parent: an outer outline


def whole_image_clicks(mask: np.ndarray, ignore_index: int) -> int:
    """Clicks of labeling ``mask`` precisely as one region: :func:`clicks_precise` of a
    single region covering the image, without its per-region bounding boxes (half the time on CamVid)."""
    mask = np.asarray(mask)
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=1)) if mask.dtype == np.uint8 else np.unique(mask)
    return sum(polygon_clicks(mask == c) for c in present.tolist() if c != ignore_index)


def clicks_precise(region_map: np.ndarray, gt_mask: np.ndarray, local_ids: np.ndarray,
                   ignore_index: int = 255) -> np.ndarray:
    """Clicks (``int64``) of labelling each region of ``local_ids`` precisely, in their order.

    ``region_map`` and ``gt_mask`` have the same shape; a region without pixels (or with only void)
    costs 0.  The loop runs over regions and their classes, never over pixels: each region is cut to
    its bounding box first.
    """
    if region_map.shape != gt_mask.shape:
        raise ValueError(f"region map {region_map.shape} and mask {gt_mask.shape} differ in shape")
    ids = np.asarray(local_ids, dtype=np.int64).ravel()
    clicks = np.zeros(len(ids), dtype=np.int64)
    if not ids.size:
        return clicks
    if ids.min() < 0:
        raise ValueError(f"negative region id {int(ids.min())}")
    boxes = ndimage.find_objects(region_map.astype(np.int32, copy=False) + 1, max_label=int(ids.max()) + 1)
    for j, region in enumerate(ids.tolist()):
        box = boxes[region]
        if box is None:
            continue
        inside = region_map[box] == region
        classes = gt_mask[box]
        for c in np.unique(classes[inside]).tolist():
            if c != ignore_index:
                clicks[j] += polygon_clicks(inside & (classes == c))
    return clicks


def pixels(area: np.ndarray, ids: np.ndarray) -> int:
    """Pixels of the regions ``ids`` (global ids into a cache's ``area``)."""
    return int(np.asarray(area)[np.asarray(ids, dtype=np.int64)].sum(dtype=np.int64))


__all__ = ["EPSILON", "MIN_VERTICES", "clicks_dominant", "clicks_precise", "pixels", "polygon_clicks",
           "whole_image_clicks"]
