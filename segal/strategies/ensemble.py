"""Ensembles with variation ratio (Beluch et al., CVPR 2018): M task networks vote per pixel.

Member 0 is the loop's trained network (when ``use_loop_model`` and one is available); the others
are fresh networks from ``ctx.build_model()`` trained on the labeled set with the loop's recipe
and distinct seeds.  A pixel's score is 1 − (votes for its modal argmax class) / M, averaged over
the image.

Members are saved to ``<cycle dir>/ensemble/member{k}.pt`` together with the images and seed they
were trained on, and reused on resume when both match (:mod:`segal.strategies.committee`, shared
with QBC and suggestive annotation).  All members sit on ``ctx.device`` while the pool is scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from segal.errors import UserError
from segal.strategies import scoring
from segal.strategies.base import (
    AcquisitionContext,
    Selection,
    Strategy,
    register_strategy,
    selection_from,
)
from segal.strategies.committee import check_labeled, committee, committee_scores


@register_strategy("ensemble_varratio")
class EnsembleVarRatioStrategy(Strategy):
    @dataclass
    class Params:
        M: int = 3  # ensemble size, including the loop's network
        use_loop_model: bool = True  # member 0 = the loop's trained network (saves one training)
        reduce: Literal["mean", "max", "sum"] = "mean"  # per-pixel scores -> one per image

        def __post_init__(self):
            if self.M < 2:
                raise UserError(f"ensemble_varratio needs M ≥ 2 members, not {self.M}",
                                fix="set active.strategy_params.M")

    def select(self, ctx: AcquisitionContext) -> Selection:
        p = self.params
        check_labeled(ctx, "ensemble_varratio")
        loop_first = p.use_loop_model and ctx.model is not None
        train_sets = [None if k == 0 and loop_first else ctx.labeled for k in range(p.M)]
        members = committee(ctx, "ensemble", train_sets, seed_base=1000)
        indices, scores = committee_scores(ctx, members, scoring.SampleStats.variation_ratio, p.reduce,
                                           description=f"ensemble ×{p.M}")
        return selection_from(indices, scores, ctx.budget, M=p.M, loop_model_member=loop_first)
