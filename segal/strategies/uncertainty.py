"""Softmax-uncertainty strategies: entropy, margin and least confidence.

For segmentation the per-pixel score is averaged over the image (``reduce: mean`` by default),
so an image is uncertain when much of it is, not when a few edge pixels are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from segal.strategies import scoring
from segal.strategies.base import (
    AcquisitionContext,
    Selection,
    Strategy,
    register_strategy,
    selection_from,
)


class _SoftmaxUncertainty(Strategy):
    pixel_score = staticmethod(scoring.entropy)

    @dataclass
    class Params:
        reduce: Literal["mean", "max", "sum"] = "mean"

    def select(self, ctx: AcquisitionContext) -> Selection:
        indices, scores = scoring.score_pool(ctx, self.pixel_score, self.params.reduce)
        return selection_from(indices, scores, ctx.budget)


@register_strategy("entropy")
class EntropyStrategy(_SoftmaxUncertainty):
    pixel_score = staticmethod(scoring.entropy)


@register_strategy("margin")
class MarginStrategy(_SoftmaxUncertainty):
    pixel_score = staticmethod(scoring.margin)


@register_strategy("least_confidence")
class LeastConfidenceStrategy(_SoftmaxUncertainty):
    pixel_score = staticmethod(scoring.least_confidence)
