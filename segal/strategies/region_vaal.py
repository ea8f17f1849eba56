"""VAAL on regions: the β-VAE and discriminator of VAAL trained on region crops, labeled against unlabeled.

New here (no published method does it): VAAL (Sinha et al. 2019) tells labeled from unlabeled *images*;
this variant tells labeled from unlabeled *regions*, with no task network at all.  A region's crop is
the bounding box of its (irregular, for superpixels) region — so the pixels around it inside the box
come along as context — cut from the pool image at the region maps' resolution and resized to the
VAE's square input (aspect ratio not kept).  The VAE, discriminator, training and scoring are
:class:`~segal.strategies.vaal.VAALStrategy`'s own, over a context whose "images" are the crops and
whose indices are global region ids; the score given to the loop is ``1 − P(labeled)`` (higher = label
first, as :func:`segal.strategies.label_first` turns VAAL's scores).

Parameters are VAAL's (``width``, ``z_dim``, ``image_size``, ``epochs``/``steps``, ``mode`` …) plus
``max_unlabeled``: when more regions are unlabeled than that, the discriminator trains on a seeded
subsample of them (every candidate is still scored).  The discriminator's AUROC of labeled against
unlabeled regions, with its 95% interval, goes to ``queries.json`` as image VAAL's does
(:meth:`~segal.strategies.vaal.VAALStrategy.measure_auroc`): on held-out regions (``holdout`` of the
labeled ones and as many of the unlabeled ones, kept out of training) when they number at least
``auroc_min``, else cross-fitted.  The holdout takes **whole images** (:meth:`RegionVAALStrategy.split_by_image`):
no region of a held-out image trains, because regions of one image share its look, and a held-out
region whose neighbours trained could be told apart by its image alone (on CamVid's first acquisition
a split by region gave 0.546 [0.524, 0.568], where the labeled regions were those of random images).
The cross-fit halves are still split by region.  ``warm_start`` is refused.  The trained pair is kept in
``<cycle>/region_vaal/vaal.pt``, so a resumed acquisition does not retrain; everything is seeded by (seed, cycle).

``diversity_factor`` K ≥ 2 adds image VAAL's diversity step, carried to regions (:func:`spread_picks`):
the n regions plain VAAL would take under the cycle's budget are counted, the K·n least labeled-looking
form a shortlist, and k-center greedy on the VAE means (the labeled regions as centres) picks n of it.
Why: on CamVid, seed 2, plain region VAAL's second batch was 94.9% sky — the least labeled-looking crops
look alike, and score order takes them all.  The picks are given scores in (1, 2], in pick order, above
every plain score (1 − P(labeled) ∈ [0, 1]), so the loop takes them first; if they cost less than the
budget, the rest is filled in plain score order, and if more (k-center favours large regions: on CamVid,
seed 2, 57–85% of the picks fitted a cycle's pixels, and no plain pick was taken) the last picks are left
out (``diagnostics.diversity``: ``taken`` regions, ``picks_taken`` of the picks).  Like the rest, it never looks at a task network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from segal import distributed as dist
from segal.data.base import Dataset
from segal.data.cache import ResizedImageCache
from segal.errors import UserError
from segal.progress import Progress
from segal.regions.budget import select_under_budget
from segal.regions.cache import RegionCache
from segal.strategies.context import build_context
from segal.strategies.kcenter import kcenter_greedy
from segal.strategies.region_base import RegionContext, RegionStrategy, register_region_strategy
from segal.strategies.vaal import VAALStrategy

SUBDIR = "region_vaal"


class RegionCrops(Dataset):
    """Item ``j``: the crop of global region ``j``'s bounding box, resized to ``size`` × ``size``.

    ``images`` gives the pool's images; when they are not at the region maps' resolution (the pool
    itself rather than a :class:`ResizedImageCache` at ``cache.shape``) the box is scaled to them.
    """

    def __init__(self, images: Dataset, cache: RegionCache, size: int):
        self.images, self.cache, self.size = images, cache, int(size)
        self.classes = images.classes  # task: segmentation, the class default (regions exist only there)
        self._image_of = cache.image_of(np.arange(cache.num_regions))

    def __len__(self) -> int:
        return self.cache.num_regions

    def image_id(self, index: int) -> str:
        return f"{self.images.image_id(int(self._image_of[index]))}#region{index}"

    def box(self, index: int, image_shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """Region ``index``'s box ``y0, x0, y1, x1`` (end-exclusive) in an image of ``image_shape``."""
        y0, x0, y1, x1 = (int(v) for v in self.cache.bbox[index])
        (h, w), (ih, iw) = self.cache.shape, image_shape
        if (ih, iw) == (h, w):
            return y0, x0, y1, x1
        sy, sx = ih / h, iw / w
        top, left = int(np.floor(y0 * sy)), int(np.floor(x0 * sx))
        return top, left, max(top + 1, int(np.ceil(y1 * sy))), max(left + 1, int(np.ceil(x1 * sx)))

    def load_image(self, index: int) -> np.ndarray:
        image = self.images.load_image(int(self._image_of[index]))
        y0, x0, y1, x1 = self.box(index, image.shape[:2])
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        return cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_AREA)

    def load_target(self, index: int) -> int:
        return 0  # unused: VAAL needs no labels


@register_region_strategy("vaal")
class RegionVAALStrategy(RegionStrategy):
    """VAAL's VAE and discriminator on region crops; score ``1 − P(labeled)`` (module docstring)."""

    needs_model = False

    @dataclass
    class Params(VAALStrategy.Params):
        max_unlabeled: int = 20000  # more unlabeled regions than this: train on a seeded subsample

        def __post_init__(self):
            super().__post_init__()
            if self.max_unlabeled < 1:
                raise UserError(f"VAAL max_unlabeled {self.max_unlabeled} must be at least 1",
                                fix="e.g. 20000 in active.strategy_params.max_unlabeled")
            if self.warm_start:  # accepted by image VAAL, not (yet) done for regions
                raise UserError("region VAAL has no warm_start yet",
                                fix="remove it from active.strategy_params (or use active.unit: image)")

    def image_source(self, ctx: RegionContext) -> Dataset:
        """The pool's images at the region maps' resolution, from the run's resized-image cache when the
        context has a cycle directory (``<run>/cycles/<c>`` → ``<run>/cache``), else decoded each time."""
        pool, workdir = ctx.images.pool, ctx.images.workdir
        if workdir is None:
            return pool
        return ResizedImageCache(pool, ctx.cache.shape, Path(workdir).parent.parent / "cache")

    def score(self, ctx: RegionContext) -> np.ndarray:
        return self.score_with_diagnostics(ctx)[0]

    @staticmethod
    def split_by_image(vaal: VAALStrategy, region_ctx, cache) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train labeled, train unlabeled, held-out labeled, held-out unlabeled) regions, seeded: image VAAL's
        holdout sizes (:meth:`VAALStrategy.split_holdout`), reached with whole images, drawn at random until each
        held-out pool has at least that many regions; every region of a held-out image is kept out of training.
        Image VAAL's split by region where whole images would leave a pool nothing to train on."""
        split = vaal.split_holdout(region_ctx)
        n = len(split[2])
        if n == 0:
            return split
        rng = region_ctx.generator(salt=37)
        labeled, unlabeled = np.asarray(region_ctx.labeled), np.asarray(region_ctx.unlabeled)
        image_l, image_u = cache.image_of(labeled), cache.image_of(unlabeled)

        def whole_images(images_of: np.ndarray) -> np.ndarray:
            ids, counts = np.unique(images_of, return_counts=True)
            order = rng.permutation(len(ids))
            return ids[order[: int(np.searchsorted(np.cumsum(counts[order]), n)) + 1]]

        held = np.union1d(whole_images(image_l), whole_images(image_u))
        out_l, out_u = np.isin(image_l, held), np.isin(image_u, held)
        if out_l.all() or out_u.all():
            return split
        return labeled[~out_l], unlabeled[~out_u], labeled[out_l], unlabeled[out_u]

    def score_with_diagnostics(self, ctx: RegionContext) -> tuple[np.ndarray, dict]:
        """``1 − P(labeled)`` of every candidate, and the discriminator's out-of-sample AUROC (module docstring)."""
        p = self.params
        assert isinstance(p, RegionVAALStrategy.Params)
        base = ctx.images
        vaal = VAALStrategy(p)
        labeled = ctx.labels.all_labeled_regions()
        unlabeled = ctx.candidates
        if len(unlabeled) > p.max_unlabeled:
            unlabeled = np.sort(ctx.generator(salt=53).choice(unlabeled, p.max_unlabeled, replace=False))
        workdir = Path(base.workdir) / SUBDIR if base.workdir is not None else None
        crops = RegionCrops(self.image_source(ctx), ctx.cache, p.image_size)
        region_ctx = build_context(crops, labeled, budget=0, unlabeled=unlabeled, num_classes=base.num_classes,
                                   compute=base.compute, cycle=base.cycle, seed=base.seed, progress=base.progress,
                                   workdir=workdir)
        train_l, train_u, hold_l, hold_u = self.split_by_image(vaal, region_ctx, ctx.cache)
        torch.manual_seed(int(region_ctx.generator(salt=29).integers(2**31)))
        vae, disc = vaal.build()
        vae.to(base.device)
        disc.to(base.device)
        checkpoint = workdir / "vaal.pt" if workdir is not None else None
        info = vaal._load(checkpoint, vae, disc)
        if info is None:
            if len(labeled) == 0:
                raise UserError("region VAAL needs labeled regions to tell from unlabeled ones",
                                fix="set active.initial to at least 1 image")
            info = vaal.train(region_ctx, vae, disc, train_l, train_u)
            if dist.is_main() and workdir is not None:
                workdir.mkdir(parents=True, exist_ok=True)
                vaal._save(region_ctx, vae, disc, info)
            dist.barrier()
        else:
            info = dict(info, resumed_from_checkpoint=True)
        ids, p_labeled = vaal.score(region_ctx, vae, disc, ctx.candidates, description="VAAL scoring regions")
        order = np.argsort(ids, kind="stable")
        ids, p_labeled = ids[order], p_labeled[order]
        if not np.array_equal(ids, ctx.candidates):
            raise RuntimeError("a candidate region was not scored")
        measured, info = vaal.measure_auroc(region_ctx, vae, disc, info, ids, p_labeled, hold_l, hold_u)
        diagnostics = {"mode": p.mode, "image_size": p.image_size, "z_dim": p.z_dim, "width": p.width,
                       "trained_on": {"labeled": int(len(train_l)), "unlabeled": int(len(train_u))},
                       **measured, **info}
        scores = 1.0 - p_labeled
        if p.diversity_factor and base.budget > 0:
            def encode(regions: np.ndarray) -> torch.Tensor:
                return vaal.latents(region_ctx, vae, regions).double()

            scores, spread = spread_picks(ctx.candidates, scores, ctx.candidate_costs(), base.budget,
                                          p.diversity_factor, encode, np.sort(labeled), progress=base.progress)
            diagnostics["diversity"] = spread
        return scores, diagnostics


def spread_picks(candidates: np.ndarray, scores: np.ndarray, cost: np.ndarray, budget: float, factor: int,
                 encode: Callable[[np.ndarray], torch.Tensor], labeled: np.ndarray,
                 progress: Progress | None = None) -> tuple[np.ndarray, dict]:
    """Region VAAL's diversity step (module docstring): ``scores`` with k-center picks raised above the rest.

    ``n`` = how many regions :func:`~segal.regions.budget.select_under_budget` takes in plain score order;
    the shortlist = the ``factor``·n best (ties to the lower id); k-center greedy over ``encode(shortlist)``
    with ``encode(labeled)`` as centres picks n; pick ``i`` (0-based) of n scores ``1 + (n − i)/n``.
    ``encode`` maps ascending region ids to one row each.  Returns the new scores and what to report.
    """
    candidates, scores = np.asarray(candidates, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    plain = select_under_budget(candidates, scores, cost, budget)
    n = len(plain)
    order = np.lexsort((candidates, -scores))
    shortlist = np.sort(candidates[order[: min(len(candidates), factor * n)]])
    picks, _, radius_before, radius_after = kcenter_greedy(encode(shortlist), encode(labeled), n,
                                                           progress=progress)
    chosen = shortlist[np.asarray(picks, dtype=np.int64)]
    out = scores.copy()
    out[np.searchsorted(candidates, chosen)] = 1.0 + (n - np.arange(n)) / n
    taken = select_under_budget(candidates, out, cost, budget)  # what the loop will take with these scores
    return out, {"factor": int(factor), "plain_picks": n, "shortlist": int(len(shortlist)),
                 "kept_from_plain": int(np.isin(chosen, plain).sum()),  # picks plain VAAL would have taken too
                 "taken": int(len(taken)), "picks_taken": int(np.isin(taken, chosen).sum()),
                 "radius_before": radius_before, "radius_after": radius_after}


__all__ = ["RegionCrops", "RegionVAALStrategy", "spread_picks"]
