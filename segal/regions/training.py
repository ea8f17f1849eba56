"""What a region-level run trains on: each touched image's partial mask, and what its labels cost.

The simulated oracle of a region run labels regions, not images.  :class:`RegionTrainingView` is the
pool as the task network then sees it: ``load_target(i)`` is image ``i``'s mask labeled inside its
labeled regions only (the true pixels for ``regions.oracle: precise``, the region's majority class
for ``dominant``) and ``ignore_index`` everywhere else, so the loss skips what nobody labeled.  The
cache's region map is resized to the mask's own size first (nearest neighbour), so labels are read
at full resolution — or at the size of the training-input cache's shrunk copy, when the view reads
through it (``data.cache``: the ground truth it stores never changes, so it never goes stale).  The
images to train on are the images touched (:meth:`RegionLabels.images_touched`).

In a human-oracle run (``human``: image → its ``labels/<id>.png``), the regions of such an image
labeled after cycle 0 take the annotators' stored labels instead (resized to the mask's size by
nearest neighbour); cycle 0's whole images, labeled before any annotator, are read as above.

Every labeled region is labeled the same way, the initial whole images included, so that cost and
label noise count one rule.  :func:`region_clicks` and :func:`labeled_noise` measure the oracle:
clicks per region (Cai et al.'s rules, :mod:`segal.regions.costs`, counted at the mask's size) and
the share of labeled pixels whose dominant label is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from segal.data.base import Dataset, DatasetView, read_label_png
from segal.errors import UserError
from segal.progress import Progress
from segal.regions.cache import RegionCache
from segal.regions.costs import clicks_precise
from segal.regions.labels import dominant_noise, partial_mask
from segal.regions.maps import upsample_map
from segal.regions.state import RegionLabels

Oracle = Literal["precise", "dominant"]


class RegionTrainingView(DatasetView):
    """``pool`` with each image's target cut to its labeled regions (module docstring).

    ``through_cycle`` limits the labels to those of cycles ``≤`` it (``None``: all labeled regions),
    so a cycle's network trains on exactly the labels it had, whatever was labeled since.  ``human``:
    pool index → stored annotators' labels (module docstring).
    """

    def __init__(self, pool: Dataset, cache: RegionCache, labels: RegionLabels, oracle: Oracle,
                 through_cycle: int | None = None, human: Mapping[int, Path] | None = None):
        if cache.num_images != len(pool) or cache.num_regions != labels.num_regions:
            raise ValueError(f"a region cache of {cache.num_images} images and {cache.num_regions} regions does "
                             f"not describe a pool of {len(pool)} with {labels.num_regions} regions")
        super().__init__(pool)
        self.cache, self.labels, self.oracle = cache, labels, oracle
        self.through_cycle = through_cycle
        self.human = dict(human or {})

    def labeled_regions(self, index: int) -> np.ndarray:
        """Local ids of image ``index``'s regions labeled through :attr:`through_cycle`."""
        status = self.labels.status[self.labels.offsets[index]:self.labels.offsets[index + 1]]
        labeled = status >= 0 if self.through_cycle is None else (status >= 0) & (status <= self.through_cycle)
        return np.flatnonzero(labeled)

    def load_target(self, index: int) -> np.ndarray:
        gt = np.asarray(self.pool.load_target(index))
        region_map = upsample_map(self.cache.region_map(index), gt.shape)
        ids = self.labeled_regions(index)
        stored = self.human.get(index)
        if stored is None:
            return partial_mask(region_map, gt, ids, self.oracle, self.classes.ignore_index)
        first = self.labels.status[self.labels.offsets[index] + ids] == 0  # cycle 0: before any annotator
        mask = partial_mask(region_map, gt, ids[first], self.oracle, self.classes.ignore_index)
        human = read_label_png(stored)
        bad = (human >= len(self.classes)) & (human != self.classes.ignore_index)
        if bad.any():
            raise UserError("imported labels hold unknown class ids", path=stored,
                            fix="restore the run's labels/ folder from a backup")
        if human.shape != gt.shape:
            human = cv2.resize(human, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_NEAREST)
        inside = np.isin(region_map, ids[~first])
        mask[inside] = human[inside]
        return mask

    def training_images(self) -> np.ndarray:
        """The images with at least one labeled region (through :attr:`through_cycle`): the training set."""
        return self.labels.images_touched(self.through_cycle)


def region_clicks(pool: Dataset, cache: RegionCache, oracle: Oracle, progress: Progress | None = None) -> np.ndarray:
    """Clicks (``int64``, one per global region) of labeling each region with ``oracle``.

    Dominant: one click per region.  Precise: the polygon vertices of each class part inside the region
    (:func:`segal.regions.costs.clicks_precise`), counted on the ground truth at the mask's size.
    """
    if oracle == "dominant":
        return np.ones(cache.num_regions, dtype=np.int64)
    clicks = np.zeros(cache.num_regions, dtype=np.int64)
    ignore = pool.classes.ignore_index
    for i in (progress or Progress()).track(range(len(pool)), total=len(pool), description="counting region clicks"):
        gt = np.asarray(pool.load_target(i))
        region_map = upsample_map(cache.region_map(i), gt.shape)
        start, end = int(cache.offsets[i]), int(cache.offsets[i + 1])
        clicks[start:end] = clicks_precise(region_map, gt, np.arange(end - start), ignore)
    return clicks


def labeled_noise(pool: Dataset, cache: RegionCache, labels: RegionLabels, through_cycle: int) -> tuple[int, int]:
    """``(wrong, labeled)`` non-void pixels over every region labeled through ``through_cycle``, had each
    been given its dominant label (:func:`segal.regions.labels.dominant_noise`, at the mask's size)."""
    view = RegionTrainingView(pool, cache, labels, "dominant", through_cycle)
    wrong = labeled = 0
    for i in view.training_images().tolist():
        gt = np.asarray(pool.load_target(i))
        region_map = upsample_map(cache.region_map(i), gt.shape)
        w, n = dominant_noise(region_map, gt, view.labeled_regions(i), pool.classes.ignore_index)
        wrong, labeled = wrong + w, labeled + n
    return wrong, labeled


def class_shares(pool: Dataset, cache: RegionCache, regions: np.ndarray) -> dict[str, float]:
    """Share of each class among the non-void ground-truth pixels of ``regions`` (global ids), at the mask's
    size: what an acquisition brought in, as ``class_histogram`` reports it for whole images."""
    regions = np.asarray(regions, dtype=np.int64)
    counts = np.zeros(len(pool.classes), dtype=np.int64)
    images = cache.image_of(regions)
    for i in np.unique(images).tolist():
        gt = np.asarray(pool.load_target(i))
        region_map = upsample_map(cache.region_map(i), gt.shape)
        inside = np.isin(region_map, regions[images == i] - cache.offsets[i]) & (gt != pool.classes.ignore_index)
        counts += np.bincount(gt[inside].ravel(), minlength=len(counts))[: len(counts)]
    total = max(int(counts.sum()), 1)
    return {name: round(float(c) / total, 5) for name, c in zip(pool.classes.names, counts, strict=True)}


__all__ = ["RegionTrainingView", "class_shares", "labeled_noise", "region_clicks"]
