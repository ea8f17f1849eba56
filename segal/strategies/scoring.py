"""Streaming per-image scores from a task network's softmax.

Per-pixel scores are reduced to one number per image on the device, batch by batch, so memory is
bounded by the batch size: only one float per pool image is kept.  The reduction rule is the mean
over the image's pixels (``reduce="mean"``); ``"max"`` and ``"sum"`` are available for users who
prefer them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from segal import distributed as dist
from segal.device import autocast
from segal.strategies.base import AcquisitionContext

PixelScore = Callable[[torch.Tensor], torch.Tensor]  # probs B×C(×H×W) -> scores B(×H×W)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)


def margin(probs: torch.Tensor) -> torch.Tensor:
    """Negative gap between the two most likely classes: higher = more uncertain."""
    top2 = probs.topk(2, dim=1).values
    return -(top2[:, 0] - top2[:, 1])


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    return 1.0 - probs.max(dim=1).values


def reduce_per_image(scores: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Reduce B×H×W pixel scores to B image scores (identity for classification's B scores)."""
    if scores.ndim == 1:
        return scores
    flat = scores.flatten(1)
    if how == "mean":
        return flat.mean(1)
    if how == "max":
        return flat.max(1).values
    if how == "sum":
        return flat.sum(1)
    raise ValueError(f"unknown reduction {how!r}")


@torch.no_grad()
def score_pool(ctx: AcquisitionContext, pixel_score: PixelScore, reduce: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Score every unlabeled image with the task network; returns (pool indices, scores)."""
    model = ctx.model
    if model is None:
        raise RuntimeError("this strategy needs the trained task network")
    model.eval()
    indices, scores = [], []
    loader = ctx.eval_loader(dist.shard(ctx.unlabeled))  # under torchrun each rank scores its shard
    for images, idx in ctx.progress.track(loader, total=len(loader), description="scoring pool"):
        images = images.to(ctx.device, non_blocking=True)
        with autocast(ctx.device, ctx.amp):
            logits = model(images)
        probs = torch.softmax(logits.float(), dim=1)
        scores.append(reduce_per_image(pixel_score(probs), reduce).cpu().numpy())
        indices.append(np.asarray(idx))
    local = (np.concatenate(indices) if indices else np.empty(0, np.int64),
             np.concatenate(scores).astype(np.float64) if scores else np.empty(0))
    return dist.gather_scores(*local)  # every rank ends with all scores, sorted by index
