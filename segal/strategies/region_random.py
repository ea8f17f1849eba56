"""Uniform random regions: the region-level baseline every report must show.

Each candidate gets a uniform score from the run's seeded generator, so the budget is filled in a
random order that a resumed run repeats.
"""

from __future__ import annotations

import numpy as np

from segal.strategies.region_base import RegionContext, RegionStrategy, register_region_strategy


@register_region_strategy("random")
class RegionRandomStrategy(RegionStrategy):
    needs_model = False

    def score(self, ctx: RegionContext) -> np.ndarray:
        return ctx.generator(salt=1).random(len(ctx.candidates))
