"""Uniform random sampling: the baseline every report must show."""

from __future__ import annotations

from segal.strategies.base import AcquisitionContext, Selection, Strategy, register_strategy


@register_strategy("random")
class RandomStrategy(Strategy):
    needs_model = False

    def select(self, ctx: AcquisitionContext) -> Selection:
        chosen = ctx.generator(salt=1).choice(ctx.unlabeled, size=ctx.budget, replace=False)
        return Selection(indices=chosen)
