"""Core-set: k-center greedy on task-network features (Sener & Savarese, ICLR 2018).

Each step adds the unlabeled image farthest from every centre so far (the labeled set, then the
images already chosen), which greedily shrinks the covering radius — the largest distance from a
pool image to its nearest centre — that bounds the core-set loss.

Scaling: no N×N matrix is ever built.  A running vector of each unlabeled image's distance to its
nearest centre (N floats on ``ctx.device``) is initialised block by block against the labeled
features (``chunk``×``chunk`` distances at a time) and updated with one new centre per step.  The
cost is O(N·(L + b)·D).

Distributed: each rank embeds its shard of the pool; the features are gathered to every rank (so
N×D floats must fit in memory on each), every rank runs the same greedy, and rank 0's choice is
broadcast so that device-level floating-point differences cannot make ranks disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segal import distributed as dist
from segal.errors import UserError
from segal.strategies import scoring
from segal.strategies.base import AcquisitionContext, Selection, Strategy, register_strategy
from segal.strategies.kcenter import kcenter_greedy

FIRST_CENTRE_SALT = 0xC05E


@register_strategy("coreset")
class CoresetStrategy(Strategy):
    """k-center greedy on the task network's pooled embedding."""

    @dataclass
    class Params:
        # Rows per distance block: peak extra memory is chunk² (initialisation) or chunk·D floats.
        chunk: int = 2048

        def __post_init__(self):
            if self.chunk < 1:
                raise UserError(f"coreset chunk must be ≥ 1, not {self.chunk}", fix="set active.strategy_params.chunk")

    def select(self, ctx: AcquisitionContext) -> Selection:
        model = ctx.require_model("coreset")
        lab_idx, lab_feat = scoring.embed_pool(ctx, model, ctx.labeled, "embedding labeled set")
        pool_idx, pool_feat = scoring.embed_pool(ctx, model, ctx.unlabeled, "embedding pool")
        pool = torch.from_numpy(pool_feat).to(ctx.device)
        centres = torch.from_numpy(lab_feat).to(ctx.device) if len(lab_idx) else pool[:0]
        first = int(ctx.generator(FIRST_CENTRE_SALT).integers(len(pool_idx)))
        positions, dists, before, after = kcenter_greedy(
            pool, centres, ctx.budget, chunk=self.params.chunk, first=first, progress=ctx.progress
        )
        positions, dists = dist.all_gather_object((positions, dists))[0]  # rank 0's choice everywhere
        return Selection(
            indices=pool_idx[np.asarray(positions, dtype=np.int64)],
            scores=dists,
            diagnostics={"covering_radius_before": before, "covering_radius_after": after,
                         "feature_dim": int(pool_feat.shape[1])},
        )
