"""What a selection costs, and greedy selection under a budget.

Region- and image-level runs are only comparable on a common cost axis (Cai et al., CVPR 2021: the cost
measure decides the verdict), so every cycle records images touched, pixels labeled (and their share of
the pool's pixels) and annotator clicks (:class:`CostLedger`).  A run's budget counts one of them
(``active.cost``): a float is a share of the pool's total, an int a count, as everywhere in a recipe.
Per-region clicks come from :mod:`segal.regions.costs` (one per region for a dominant label, the
polygon's vertices for a precise one); here they are plain arrays.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from segal.config import ActiveConfig
from segal.errors import UserError
from segal.regions.state import RegionLabels

CostKind = Literal["images", "pixels", "clicks"]


def per_image(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum a per-region quantity (area, clicks) over each image's regions (an image without regions: 0)."""
    total = np.concatenate([[0], np.cumsum(np.asarray(values, dtype=np.int64))])
    offsets = np.asarray(offsets, dtype=np.int64)
    return total[offsets[1:]] - total[offsets[:-1]]


def unit_costs(kind: CostKind, area: np.ndarray, clicks: np.ndarray | None = None) -> np.ndarray:
    """The cost of each candidate (a region, or an image with its per-image area and clicks) under ``kind``."""
    if kind == "images":
        return np.ones(len(area), dtype=np.int64)
    if kind == "pixels":
        return np.asarray(area, dtype=np.int64)
    if clicks is None:
        raise ValueError("a click budget needs the clicks of each candidate")
    return np.asarray(clicks, dtype=np.int64)


def cycle_budget(value: float | int, pool_total: int, key: str = "active.budget", source: str = "<recipe>") -> int:
    """A recipe size in cost units: a float is a share of ``pool_total`` (all the pool's pixels, say), an int a count."""
    units = value if isinstance(value, int) else math.floor(value * pool_total)
    if units < 1:
        raise UserError(f"{key} ({value!r}) rounds to zero on a pool whose total cost is {pool_total}", path=source,
                        fix=f"raise {key}, or write it as a count")
    return units


@dataclass(frozen=True)
class CostPlan:
    """How a run spends: whole images first, then ``per_cycle`` cost units in each of ``cycles`` acquisitions."""

    initial_images: int
    per_cycle: int
    cycles: int
    pool_total: int  # the cost of labeling the whole pool, in the same unit


def plan_cost(active: ActiveConfig, num_images: int, pool_total: int, source: str = "<recipe>",
              initial_cost: float | None = None) -> CostPlan:
    """The spending plan of ``active`` on a pool of ``num_images`` images whose total cost is ``pool_total``.

    ``initial`` counts images (as :func:`segal.config.plan_budgets`); ``budget`` and ``final`` count
    ``active.cost``.  Without ``cycles``, their number is ``(final - initial) / budget`` rounded, where the
    initial images' cost is ``initial_cost`` when given (a precise-oracle click budget charges them their
    whole-image clicks, :class:`CostLedger`, far fewer than their regions' clicks summed), else their share
    of ``pool_total`` (exact for images of equal size).
    """
    initial = active.initial if isinstance(active.initial, int) else round(active.initial * num_images)
    if not 1 <= initial <= num_images:
        raise UserError(f"active.initial ({active.initial!r}) is {initial} images on a pool of {num_images}",
                        path=source, fix="write a fraction in (0, 1] or a count up to the pool size")
    per_cycle = cycle_budget(active.budget, pool_total, "active.budget", source)
    if active.cycles is not None:
        cycles = active.cycles
    elif active.final is None:
        cycles = 0
    else:
        final = cycle_budget(active.final, pool_total, "active.final", source)
        start = initial / num_images * pool_total if initial_cost is None else initial_cost
        if final < start:
            raise UserError(f"active.final ({active.final!r}) is below the cost of the initial images", path=source,
                            fix="raise active.final: a float is a share of the pool's total cost, an int a count")
        cycles = max(0, round((final - start) / per_cycle))
    return CostPlan(initial_images=initial, per_cycle=per_cycle, cycles=cycles, pool_total=pool_total)


def select_under_budget(candidates: np.ndarray, scores: np.ndarray, cost: np.ndarray,
                        budget: float) -> np.ndarray:
    """The candidates to label, best first: greedy in score order, each taken while it fits.

    Higher scores are taken first; equal scores by the smaller id, so the choice is deterministic.  A
    candidate that no longer fits is skipped and cheaper ones after it may still fill the budget, which is
    never exceeded, except that the best candidate is taken when none fits (a cycle never acquires
    nothing).  With integer costs the arithmetic is exact.
    """
    ids = np.asarray(candidates, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    cost = np.asarray(cost).reshape(-1)
    if not (len(ids) == len(scores) == len(cost)):
        raise ValueError(f"{len(ids)} candidates, {len(scores)} scores and {len(cost)} costs")
    ascending = np.sort(ids)
    if np.any(ascending[1:] == ascending[:-1]):
        raise ValueError("duplicate candidates")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite (a NaN score has no rank)")
    if not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a positive number, not {budget!r}")
    integral = np.issubdtype(cost.dtype, np.integer)
    cost = cost.astype(np.int64 if integral else np.float64)
    if len(cost) and (not np.isfinite(cost).all() or cost.min() < 0):
        raise ValueError("costs must be finite and ≥ 0")
    if not len(ids):
        return ids
    order = np.lexsort((ids, -scores))
    ids, cost = ids[order], cost[order]
    remaining: float | int = math.floor(budget) if integral else float(budget)
    taken = np.zeros(len(ids), dtype=bool)
    alive = np.arange(len(ids))
    while len(alive):
        alive = alive[cost[alive] <= remaining]  # the first survivor fits, so each pass takes at least one
        if not len(alive):
            break
        spent = np.cumsum(cost[alive])
        fit = int(np.searchsorted(spent, remaining, side="right"))  # the longest prefix within the budget
        taken[alive[:fit]] = True
        remaining -= spent[fit - 1]
        alive = alive[fit + 1:]  # alive[fit] is too dear now: skip it
    if not taken.any():
        taken[0] = True
    return ids[taken]


@dataclass(frozen=True)
class SelectionCost:
    """What labeling one selection of regions costs, on every axis."""

    new_images: int  # images that had no labeled region before
    regions: int
    pixels: int
    clicks: int


def selection_cost(labels: RegionLabels, chosen: np.ndarray, area: np.ndarray, clicks: np.ndarray) -> SelectionCost:
    """The cost of labeling ``chosen`` (global region ids) on top of ``labels``."""
    chosen = np.asarray(chosen, dtype=np.int64)
    images = np.unique(labels.image_of(chosen))  # a cycle's selection: small
    new_images = np.setdiff1d(images, labels.images_touched(), assume_unique=True)
    return SelectionCost(new_images=len(new_images), regions=len(chosen),
                         pixels=int(np.asarray(area)[chosen].sum(dtype=np.int64)),
                         clicks=int(np.asarray(clicks)[chosen].sum(dtype=np.int64)))


@dataclass(frozen=True)
class CostLedger:
    """What a run has spent by the end of one cycle (cumulative): the cost axes of ``metrics.json``."""

    cycle: int
    images_touched: int
    regions_labeled: int
    pixels_labeled: int
    pixel_share: float  # pixels_labeled / all the pool's pixels
    clicks: int

    @classmethod
    def of(cls, labels: RegionLabels, area: np.ndarray, clicks: np.ndarray, cycle: int,
           initial_clicks: int | None = None) -> CostLedger:
        """The spending of ``labels`` through ``cycle``, from each region's pixel ``area`` and ``clicks``.

        ``initial_clicks``: what the cycle-0 labels cost as a whole, in place of their regions' clicks.  The
        initial images of a precise-oracle run are labeled whole, as an image-level run labels them, so an
        annotator draws each class piece of the image once, not once per superpixel it crosses
        (:mod:`segal.image_costs`; on CamVid 44,000 clicks for 37 images against 272,358 region by region)."""
        labeled = (labels.status >= 0) & (labels.status <= cycle)
        pixels = int(np.asarray(area)[labeled].sum(dtype=np.int64))
        total = int(np.asarray(area).sum(dtype=np.int64))
        spent = np.asarray(clicks)[labeled].sum(dtype=np.int64)
        if initial_clicks is not None:
            spent += initial_clicks - np.asarray(clicks)[labels.status == 0].sum(dtype=np.int64)
        return cls(cycle=cycle, images_touched=len(labels.images_touched(cycle)),
                   regions_labeled=int(np.count_nonzero(labeled)), pixels_labeled=pixels,
                   pixel_share=pixels / total if total else 0.0, clicks=int(spent))

    def to_json(self) -> dict[str, Any]:
        """The ledger's fields for a cycle's ``metrics.json`` (which records the cycle itself)."""
        out = asdict(self)
        del out["cycle"]
        return out


def cost_ledgers(labels: RegionLabels, area: np.ndarray, clicks: np.ndarray, cycles: int) -> list[CostLedger]:
    """One :class:`CostLedger` for each cycle ``0 .. cycles - 1``."""
    return [CostLedger.of(labels, area, clicks, k) for k in range(cycles)]
