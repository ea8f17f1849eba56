"""Streaming per-image scores from a task network's softmax.

Per-pixel scores are reduced to one number per image on the device, batch by batch, so memory is
bounded by the batch size: only one float per pool image is kept.  The reduction rule is the mean
over the image's pixels (``reduce="mean"``); ``"max"`` and ``"sum"`` are available for users who
prefer them.

Kept per-batch results are *copied* into numpy-owned arrays: a ``.numpy()`` view keeps its torch
storage alive, and thousands of small live storages fragment the allocator so that peak RSS grew
with the pool (+300 MB at 1.28M ids in tools/bench_scale.py) although only the scores were kept.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from segal import distributed as dist
from segal.crashpoints import crash_point
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
    model = ctx.require_model()
    model.eval()
    indices, scores = [], []
    loader = ctx.eval_loader(dist.shard(ctx.unlabeled))  # under torchrun each rank scores its shard
    for images, idx in ctx.progress.track(loader, total=len(loader), description="scoring pool"):
        images = images.to(ctx.device, non_blocking=True)
        with autocast(ctx.device, ctx.amp):
            logits = model(images)
        probs = torch.softmax(logits.float(), dim=1)
        scores.append(reduce_per_image(pixel_score(probs), reduce).cpu().numpy().copy())  # copies: see module doc
        indices.append(np.asarray(idx).astype(np.int64))
        crash_point("score.batch")
    local = (np.concatenate(indices) if indices else np.empty(0, np.int64),
             np.concatenate(scores).astype(np.float64) if scores else np.empty(0))
    return dist.gather_scores(*local)  # every rank ends with all scores, sorted by index


def probabilities(model: torch.nn.Module, images: torch.Tensor, ctx: AcquisitionContext) -> torch.Tensor:
    """Softmax of one forward pass in float32 (B×C or B×C×H×W), under the context's autocast setting."""
    with autocast(ctx.device, ctx.amp):
        logits = model(images)
    return torch.softmax(logits.float(), dim=1)


class SampleStats:
    """Running statistics over T probability maps of one batch (MC-dropout passes or committee members).

    Memory is a few copies of one batch's B×C(×H×W) probabilities whatever T is, so T and the
    committee size cost time, not memory.  Every score is per pixel (per image for classification);
    reduce it with :func:`reduce_per_image`.
    """

    def __init__(self, variance: bool = False):
        self.n = 0
        self.track_variance = variance
        empty = torch.empty(0)  # replaced by the first add(), which knows the batch's shape
        self.sum, self.sum_sq, self.votes, self.sum_entropy = empty, empty, empty, empty

    def add(self, probs: torch.Tensor) -> None:
        probs = probs.float()
        if self.n == 0:
            self.sum = torch.zeros_like(probs)
            self.votes = torch.zeros_like(probs)
            self.sum_entropy = torch.zeros_like(probs[:, 0])
            if self.track_variance:
                self.sum_sq = torch.zeros_like(probs)
        self.sum += probs
        self.votes.scatter_add_(1, probs.argmax(1, keepdim=True), torch.ones_like(probs[:, :1]))
        self.sum_entropy += entropy(probs)
        if self.track_variance:
            self.sum_sq += probs * probs
        self.n += 1

    def mean(self) -> torch.Tensor:
        return self.sum / self.n

    def predictive_entropy(self) -> torch.Tensor:
        """H[mean p]: total uncertainty."""
        return entropy(self.mean())

    def bald(self) -> torch.Tensor:
        """H[mean p] − mean H[p]: the mutual information between prediction and model (Houlsby et al. 2011)."""
        return (self.predictive_entropy() - self.sum_entropy / self.n).clamp_min(0)

    def mean_kl_to_consensus(self) -> torch.Tensor:
        """mean_m KL(p_m ‖ mean p), which equals H[mean p] − mean_m H[p_m], i.e. the BALD formula."""
        return self.bald()

    def variation_ratio(self) -> torch.Tensor:
        """1 − (votes for the modal argmax class) / T (Freeman 1965)."""
        return 1.0 - self.votes.max(1).values / self.n

    def vote_entropy(self) -> torch.Tensor:
        """Entropy of the argmax vote distribution (Dagan & Engelson 1995)."""
        return entropy(self.votes / self.n)

    def variance(self) -> torch.Tensor:
        """Variance across samples of each class probability, averaged over classes."""
        if not self.track_variance:
            raise RuntimeError("SampleStats(variance=True) is needed for variance()")
        mean = self.mean()
        return (self.sum_sq / self.n - mean * mean).clamp_min(0).mean(1)


@torch.no_grad()
def score_pool_multi(
    ctx: AcquisitionContext,
    image_scores: Callable[[torch.Tensor], torch.Tensor],
    indices: np.ndarray | None = None,
    description: str = "scoring pool",
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`score_pool` for any scorer ``image_scores(images on ctx.device) -> B scores``.

    The scorer owns its models (several, or one run T times); this only streams the unlabeled pool
    (or ``indices``), shards it under torchrun and gathers (indices, scores) to every rank.
    """
    pool = ctx.unlabeled if indices is None else np.asarray(indices, dtype=np.int64)
    out_idx, out_scores = [], []
    loader = ctx.eval_loader(dist.shard(pool))
    for images, idx in ctx.progress.track(loader, total=len(loader), description=description):
        images = images.to(ctx.device, non_blocking=True)
        out_scores.append(image_scores(images).float().cpu().numpy().copy())
        out_idx.append(np.asarray(idx).astype(np.int64))
        crash_point("score.batch")
    local = (np.concatenate(out_idx) if out_idx else np.empty(0, np.int64),
             np.concatenate(out_scores).astype(np.float64) if out_scores else np.empty(0))
    return dist.gather_scores(*local)


@torch.no_grad()
def embed_pool(
    ctx: AcquisitionContext, model: torch.nn.Module, indices: np.ndarray, description: str = "embedding pool"
) -> tuple[np.ndarray, np.ndarray]:
    """Feature vectors (N×D float32, :func:`segal.models.embed`) of ``indices``, sorted by index, on every rank.

    Each rank embeds its shard and all ranks gather every feature, so N×D floats must fit in host
    memory on each rank (e.g. 45k × 512 floats = 92 MB).
    """
    from segal.models.base import embed

    model.eval()
    out_idx, feats = [], []
    loader = ctx.eval_loader(dist.shard(np.asarray(indices, dtype=np.int64)))
    for images, idx in ctx.progress.track(loader, total=len(loader), description=description):
        images = images.to(ctx.device, non_blocking=True)
        with autocast(ctx.device, ctx.amp):
            f = embed(model, images)
        feats.append(f.float().flatten(1).cpu().numpy().copy())
        out_idx.append(np.asarray(idx).astype(np.int64))
        crash_point("score.batch")
    parts = dist.all_gather_object((out_idx, feats))
    idx_all = [i for p in parts for i in p[0]]
    feat_all = [f for p in parts for f in p[1]]
    if not idx_all:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32)
    idx_cat, feat_cat = np.concatenate(idx_all), np.concatenate(feat_all).astype(np.float32, copy=False)
    order = np.argsort(idx_cat, kind="stable")
    return idx_cat[order], feat_cat[order]
