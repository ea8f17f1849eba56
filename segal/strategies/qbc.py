"""Query by committee (Seung et al. 1992) with bagging (Abe & Mamitsuka 1998).

M task networks are trained on bootstrap resamples of the labeled set (drawn with
``ctx.generator``, so the same on resume and on every rank).  Disagreement per pixel:

* ``vote_entropy``: entropy of the members' argmax votes (Dagan & Engelson 1995);
* ``mean_kl``: mean KL divergence of each member from the consensus (McCallum & Nigam 1998),
  computed as H[mean p] − mean H[p], which is the same quantity.

Members are cached in ``<cycle dir>/qbc/member{k}.pt`` and reused when their bootstrap matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from segal.errors import UserError
from segal.strategies import scoring
from segal.strategies.base import AcquisitionContext, Selection, Strategy, register_strategy, selection_from
from segal.strategies.committee import bootstraps, check_labeled, committee, committee_scores

BOOTSTRAP_SALT = 0x0BC

DISAGREEMENT = {
    "vote_entropy": scoring.SampleStats.vote_entropy,
    "mean_kl": scoring.SampleStats.mean_kl_to_consensus,
}


@register_strategy("qbc")
class QBCStrategy(Strategy):
    @dataclass
    class Params:
        M: int = 3  # committee size; every member is trained on its own bootstrap
        disagreement: Literal["vote_entropy", "mean_kl"] = "vote_entropy"
        reduce: Literal["mean", "max", "sum"] = "mean"  # per-pixel scores -> one per image

        def __post_init__(self):
            if self.M < 2:
                raise UserError(f"qbc needs M ≥ 2 members, not {self.M}", fix="set active.strategy_params.M")

    def select(self, ctx: AcquisitionContext) -> Selection:
        p = self.params
        check_labeled(ctx, "qbc")
        members = committee(ctx, "qbc", bootstraps(ctx, p.M, BOOTSTRAP_SALT), seed_base=2000)
        indices, scores = committee_scores(ctx, members, DISAGREEMENT[p.disagreement], p.reduce,
                                           description=f"QBC ×{p.M}")
        return selection_from(indices, scores, ctx.budget, M=p.M, disagreement=p.disagreement)
