"""MC dropout (Gal, Islam & Ghahramani 2017): T stochastic passes with dropout on, scored per pixel.

Only the dropout layers are switched to train mode: BatchNorm keeps its running statistics, so a
pass does not depend on which other images share the batch.  Scores:

* ``bald``: H[mean p] − mean_t H[p_t], the mutual information between prediction and weights;
* ``var_ratio``: 1 − (passes voting for the modal class) / T;
* ``entropy``: H[mean p], the predictive entropy.

All T passes of a batch run back to back, so each image is read once; memory does not grow with
T.  Dropout masks come from torch's RNG seeded by (seed, cycle, rank) inside ``fork_rng``, so the
selection is reproducible for a given world size and the caller's RNG state is untouched.  (Under
torchrun each rank scores its shard with its own masks, so 1 and 2 processes pick differently.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from segal import distributed as dist
from segal.errors import UserError
from segal.strategies import scoring
from segal.strategies.base import (
    AcquisitionContext,
    Selection,
    Strategy,
    register_strategy,
    selection_from,
)

DROPOUT_SALT = 0xD50


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """Dropout modules that actually drop something (p > 0)."""
    kinds = (nn.modules.dropout._DropoutNd,)
    return [m for m in model.modules() if isinstance(m, kinds) and m.p > 0]


def mc_stats(probs_samples) -> scoring.SampleStats:
    """Statistics of an iterable of probability tensors (for tests and notebooks)."""
    stats = scoring.SampleStats()
    for p in probs_samples:
        stats.add(p)
    return stats


SCORES = {
    "bald": scoring.SampleStats.bald,
    "var_ratio": scoring.SampleStats.variation_ratio,
    "entropy": scoring.SampleStats.predictive_entropy,
}


@register_strategy("mc_dropout")
class MCDropoutStrategy(Strategy):
    @dataclass
    class Params:
        T: int = 10  # stochastic forward passes per image
        score: Literal["bald", "var_ratio", "entropy"] = "bald"
        reduce: Literal["mean", "max", "sum"] = "mean"  # per-pixel scores -> one per image

        def __post_init__(self):
            if self.T < 2:
                raise UserError(f"mc_dropout needs T ≥ 2 passes, not {self.T}", fix="set active.strategy_params.T")

    def select(self, ctx: AcquisitionContext) -> Selection:
        model = ctx.require_model("mc_dropout")
        drops = dropout_layers(model)
        if not drops:
            raise UserError(
                f"mc_dropout needs dropout layers, but {type(model).__name__} has none with p > 0",
                fix="set model.options.dropout (e.g. 0.1) in the recipe",
            )
        p = self.params
        score_of = SCORES[p.score]

        def image_scores(images: torch.Tensor) -> torch.Tensor:
            stats = scoring.SampleStats()
            for _ in range(p.T):
                stats.add(scoring.probabilities(model, images, ctx))
            return scoring.reduce_per_image(score_of(stats), p.reduce)

        seed = int(ctx.generator(DROPOUT_SALT).integers(2**31)) + dist.rank()
        cuda = [ctx.device] if ctx.device.type == "cuda" else []
        try:
            model.eval()
            for m in drops:
                m.train()
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                indices, scores = scoring.score_pool_multi(ctx, image_scores, description=f"MC dropout ×{p.T}")
        finally:
            model.eval()
        return selection_from(indices, scores, ctx.budget, score=p.score, T=p.T, dropout_layers=len(drops))
