"""Softmax uncertainty per region: entropy and margin, the mean over each region's pixels.

The per-pixel scores are the image strategies' (:mod:`segal.strategies.scoring`); only the reduction
differs: per region instead of per image (:func:`segal.strategies.region_base.score_regions`).
"""

from __future__ import annotations

import numpy as np

from segal.strategies import scoring
from segal.strategies.region_base import (
    RegionContext,
    RegionStrategy,
    register_region_strategy,
    score_regions,
)


class _RegionUncertainty(RegionStrategy):
    pixel_score = staticmethod(scoring.entropy)

    def score(self, ctx: RegionContext) -> np.ndarray:
        return score_regions(ctx, self.pixel_score)


@register_region_strategy("entropy")
class RegionEntropyStrategy(_RegionUncertainty):
    pixel_score = staticmethod(scoring.entropy)


@register_region_strategy("margin")
class RegionMarginStrategy(_RegionUncertainty):
    pixel_score = staticmethod(scoring.margin)
