"""Class-balanced region acquisition (Cai, Xu, Liew, Foo, CVPR 2021, "Revisiting superpixels for active
learning in semantic segmentation with realistic annotation costs").

Plain uncertainty keeps choosing regions of the classes the network is unsure about *and* that fill
the pool (road, sky, building), so rare classes stay rare in the labeled set.  Cai et al. weight each
region's uncertainty by how rare its *predicted* class is, so that among equally uncertain regions the
rare-class one is labeled first.  The rule, as in the authors' selection script
(``scripts/region_selection_using_al.py``, ``is_bal``, github.com/cailile/Revisiting-Superpixels-for-
Active-Learning):

* ``u_r`` = region uncertainty (here the mean over the region's pixels of entropy or margin, the same
  numbers as the ``entropy``/``margin`` region strategies), min-max normalised to [0, 1] over the
  candidates;
* ``c_r`` = the region's dominant predicted class (the most frequent argmax over its pixels);
* ``p_c`` = the share of candidate regions whose dominant predicted class is ``c``;
* score ``s_r = u_r · exp(-p_{c_r} / T)``, with ``T = 1`` (the paper's weight ``exp(-p_c)``).

Deviations, all small: the authors count ``p_c`` and normalise ``u`` over every region of the pool,
with earlier picks' uncertainty then set to 0; here both run over the candidate (still unlabeled)
regions, which is what the strategy is given and which excludes the picks the same way.  When every
candidate is equally uncertain, normalisation would divide by zero; here ``u_r = 1`` and the weights
alone rank.  The temperature ``T`` is an addition (``T = 1`` is the paper): smaller ``T`` favours rare
classes more.  Ties go to the lower region id (:func:`segal.regions.budget.select_under_budget`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from segal import distributed as dist
from segal.crashpoints import crash_point
from segal.errors import UserError
from segal.strategies import scoring
from segal.strategies.region_base import RegionContext, RegionStrategy, region_means, register_region_strategy
from segal.strategies.scoring import PixelScore, probabilities

_PIXEL_SCORES: dict[str, PixelScore] = {"entropy": scoring.entropy, "margin": scoring.margin}


def dominant_classes(region_map: np.ndarray, predicted: np.ndarray, num_regions: int, num_classes: int) -> np.ndarray:
    """The most frequent ``predicted`` class inside each region of ``region_map`` (lowest class on a tie)."""
    counts = np.bincount(region_map.ravel().astype(np.int64) * num_classes + predicted.ravel().astype(np.int64),
                         minlength=num_regions * num_classes)
    return counts.reshape(num_regions, num_classes).argmax(axis=1)


def class_balanced_scores(uncertainty: np.ndarray, dominant: np.ndarray, num_classes: int,
                          temperature: float = 1.0) -> np.ndarray:
    """Cai et al.'s score ``normalised(u_r) · exp(-p_{c_r} / T)`` (module docstring) for each region."""
    u = np.asarray(uncertainty, dtype=np.float64)
    dominant = np.asarray(dominant, dtype=np.int64)
    if len(u) == 0:
        return u
    low, high = float(u.min()), float(u.max())
    normalised = (u - low) / (high - low) if high > low else np.ones_like(u)
    shares = np.bincount(dominant, minlength=num_classes) / len(dominant)
    return normalised * np.exp(-shares[dominant] / temperature)


@torch.no_grad()
def region_uncertainty_and_class(ctx: RegionContext, pixel_score: PixelScore) -> tuple[np.ndarray, np.ndarray]:
    """For ``ctx.candidates``: the mean ``pixel_score`` (exactly as :func:`score_regions` computes it) and
    the dominant predicted class, from one pass of the task network over the images with a candidate.

    The argmax map is resized to the region maps' resolution by nearest neighbour (class ids cannot be
    interpolated).  Under torchrun each rank scores its shard and every rank gathers all regions.
    """
    base, cache = ctx.images, ctx.cache
    model = base.require_model("class-balanced region acquisition")
    model.eval()
    h, w = cache.shape
    out_ids, out_scores, out_classes = [], [], []
    loader = base.eval_loader(dist.shard(base.unlabeled))
    for batch, idx in base.progress.track(loader, total=len(loader), description="scoring regions"):
        probs = probabilities(model, batch.to(base.device, non_blocking=True), base)
        num_classes = probs.shape[1]
        pixels = F.interpolate(pixel_score(probs).float()[:, None], size=(h, w), mode="bilinear",
                               align_corners=False)[:, 0].cpu().numpy().astype(np.float64)
        predicted = F.interpolate(probs.argmax(1, keepdim=True).float(), size=(h, w),
                                  mode="nearest")[:, 0].cpu().numpy().astype(np.int64)
        for j, image in enumerate(np.asarray(idx).astype(np.int64).tolist()):
            start, end = int(cache.offsets[image]), int(cache.offsets[image + 1])
            region_map = cache.region_map(image)
            out_scores.append(region_means(region_map, pixels[j], cache.area[start:end]))
            out_classes.append(dominant_classes(region_map, predicted[j], end - start, num_classes))
            out_ids.append(np.arange(start, end, dtype=np.int64))
        crash_point("score.batch")
    ids = np.concatenate(out_ids) if out_ids else np.empty(0, np.int64)
    ids_s, scores = dist.gather_scores(ids, np.concatenate(out_scores) if out_scores else np.empty(0))
    ids_c, classes = dist.gather_scores(ids, np.concatenate(out_classes).astype(np.float64) if out_classes
                                        else np.empty(0))
    order = np.argsort(ids_s, kind="stable")
    ids_s, scores, classes = ids_s[order], scores[order], classes[np.argsort(ids_c, kind="stable")]
    pos = np.searchsorted(ids_s, ctx.candidates)
    if len(ctx.candidates) and (pos.max() >= len(ids_s) or not np.array_equal(ids_s[pos], ctx.candidates)):
        raise RuntimeError("a candidate region was not scored")
    return scores[pos], classes[pos].astype(np.int64)


@register_region_strategy("class_balanced")
class RegionClassBalancedStrategy(RegionStrategy):
    """Region uncertainty weighted towards rare predicted classes (Cai et al. 2021; module docstring)."""

    @dataclass
    class Params:
        temperature: float = 1.0  # T in exp(-p_c / T); 1 is the paper's weight
        uncertainty: Literal["entropy", "margin"] = "entropy"

        def __post_init__(self):
            if not (np.isfinite(self.temperature) and self.temperature > 0):
                raise UserError(f"class_balanced temperature must be a finite number > 0, not {self.temperature}",
                                fix="set active.strategy_params.temperature (1.0 is Cai et al.'s weight)")

    def score(self, ctx: RegionContext) -> np.ndarray:
        p = self.params
        assert isinstance(p, RegionClassBalancedStrategy.Params)
        uncertainty, dominant = region_uncertainty_and_class(ctx, _PIXEL_SCORES[p.uncertainty])
        return class_balanced_scores(uncertainty, dominant, ctx.images.num_classes, p.temperature)


__all__ = ["RegionClassBalancedStrategy", "class_balanced_scores", "dominant_classes",
           "region_uncertainty_and_class"]
