"""The region-strategy contract: score every candidate region; the loop spends the budget.

A region strategy (``active.unit: region``) sees the pool through a :class:`RegionContext` and
returns one score per candidate region, higher = label first.  It does not choose how many: region
costs differ (pixels, clicks), so the loop takes regions greedily in score order while they fit the
cycle's budget (:func:`segal.regions.budget.select_under_budget`).  Region strategies live in their
own registry, :data:`REGION_STRATEGIES`, under the name of their image-level variant, so that
``active.strategy: entropy`` means entropy at either unit.

Per-pixel scores are the image strategies' own (:mod:`segal.strategies.scoring`), reduced per region
by the mean over the region's pixels at the region maps' resolution (:func:`region_means`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from segal import distributed as dist
from segal.crashpoints import crash_point
from segal.regions.cache import RegionCache
from segal.regions.state import RegionLabels
from segal.registry import Registry
from segal.strategies.base import AcquisitionContext
from segal.strategies.scoring import PixelScore, probabilities


@dataclass
class RegionContext:
    """Everything a region strategy may use: the image-level context (loaders, network, seeds) and the regions."""

    images: AcquisitionContext  # labeled = images touched, unlabeled = images with a candidate region
    cache: RegionCache
    labels: RegionLabels
    candidates: np.ndarray  # global ids of the unlabeled regions, ascending
    cost: np.ndarray | None = None  # each candidate's cost in the budget's unit (active.cost); None: its pixels

    def candidate_costs(self) -> np.ndarray:
        """What labeling each candidate costs, in the unit of ``images.budget`` (the cycle's budget): for a
        strategy that must know how many regions the budget buys (region VAAL's diversity step)."""
        return self.cost if self.cost is not None else self.cache.area[self.candidates]

    def generator(self, salt: int = 0) -> np.random.Generator:
        """A numpy generator seeded by (seed, cycle, salt): the same on resume and on every rank."""
        return self.images.generator(salt)


class RegionStrategy(abc.ABC):
    """Base class of region strategies: parameters in ``Params``, as image strategies."""

    name: ClassVar[str]
    needs_model: ClassVar[bool] = True

    @dataclass
    class Params:
        pass

    def __init__(self, params: object = None):
        self.params: object = params if params is not None else self.Params()

    @abc.abstractmethod
    def score(self, ctx: RegionContext) -> np.ndarray:
        """One finite score per region of ``ctx.candidates``, in its order; higher = label first."""

    def score_with_diagnostics(self, ctx: RegionContext) -> tuple[np.ndarray, dict]:
        """:meth:`score` and what the strategy reports about it in ``queries.json`` (default: nothing)."""
        return self.score(ctx), {}


REGION_STRATEGIES: Registry[type[RegionStrategy]] = Registry("region strategy")


def register_region_strategy(name: str):
    def decorator(cls: type[RegionStrategy]) -> type[RegionStrategy]:
        cls.name = name
        return REGION_STRATEGIES.register(name)(cls)

    return decorator


def region_means(region_map: np.ndarray, pixel_scores: np.ndarray, area: np.ndarray) -> np.ndarray:
    """The mean of ``pixel_scores`` over each region of ``region_map`` (same shape), given each region's ``area``."""
    sums = np.bincount(region_map.ravel(), weights=pixel_scores.ravel().astype(np.float64), minlength=len(area))
    return sums / np.asarray(area, dtype=np.float64)


@torch.no_grad()
def score_regions(ctx: RegionContext, pixel_score: PixelScore, description: str = "scoring regions") -> np.ndarray:
    """Per-region mean of ``pixel_score`` of the task network's softmax, for ``ctx.candidates``.

    Each image with a candidate is scored once; its pixel scores are resized (bilinear) to the region
    maps' resolution and averaged per region with one ``bincount``.  Under torchrun each rank scores its
    shard of the images and every rank gathers all regions' scores.
    """
    base, cache = ctx.images, ctx.cache
    model = base.require_model("a region uncertainty strategy")
    model.eval()
    h, w = cache.shape
    out_ids, out_scores = [], []
    loader = base.eval_loader(dist.shard(base.unlabeled))
    for batch, idx in base.progress.track(loader, total=len(loader), description=description):
        probs = probabilities(model, batch.to(base.device, non_blocking=True), base)
        pixels = pixel_score(probs).float()[:, None]
        pixels = F.interpolate(pixels, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        maps = pixels.cpu().numpy().astype(np.float64)
        for j, image in enumerate(np.asarray(idx).astype(np.int64).tolist()):
            start, end = int(cache.offsets[image]), int(cache.offsets[image + 1])
            out_scores.append(region_means(cache.region_map(image), maps[j], cache.area[start:end]))
            out_ids.append(np.arange(start, end, dtype=np.int64))
        crash_point("score.batch")
    ids, scores = dist.gather_scores(np.concatenate(out_ids) if out_ids else np.empty(0, np.int64),
                                     np.concatenate(out_scores) if out_scores else np.empty(0))
    order = np.argsort(ids, kind="stable")  # ascending already, unless a loader reorders
    ids, scores = ids[order], scores[order]
    pos = np.searchsorted(ids, ctx.candidates)
    if len(ctx.candidates) and (pos.max() >= len(ids) or not np.array_equal(ids[pos], ctx.candidates)):
        raise RuntimeError("a candidate region was not scored")
    return scores[pos]


__all__ = ["REGION_STRATEGIES", "RegionContext", "RegionStrategy", "region_means", "register_region_strategy",
           "score_regions"]
