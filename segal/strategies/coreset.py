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
from segal.strategies.base import AcquisitionContext, Progress, Selection, Strategy, register_strategy

FIRST_CENTRE_SALT = 0xC05E


def min_sq_distances(x: torch.Tensor, centres: torch.Tensor, chunk: int) -> torch.Tensor:
    """Squared distance from each row of ``x`` to its nearest row of ``centres``, in chunk×chunk blocks."""
    out = torch.full((len(x),), float("inf"), dtype=x.dtype, device=x.device)
    for x0 in range(0, len(x), chunk):
        xs = x[x0 : x0 + chunk]
        xs_sq = (xs * xs).sum(1)
        for c0 in range(0, len(centres), chunk):
            c = centres[c0 : c0 + chunk]
            block = xs_sq[:, None] + (c * c).sum(1)[None, :] - 2.0 * (xs @ c.T)
            out[x0 : x0 + chunk] = torch.minimum(out[x0 : x0 + chunk], block.min(1).values)
    return out.clamp_min_(0)


def kcenter_greedy(
    pool: torch.Tensor,
    centres: torch.Tensor,
    k: int,
    *,
    chunk: int = 2048,
    first: int = 0,
    progress: Progress | None = None,
) -> tuple[list[int], list[float], float | None, float]:
    """Pick ``k`` rows of ``pool`` greedily; returns (positions, distance at pick, radius before, radius after).

    Ties go to the lowest position (``torch.argmax`` returns the first maximum).  With no
    ``centres`` the first pick is ``first`` and the radius before is ``None``.
    """
    progress = progress or Progress()
    if len(centres):
        nearest = min_sq_distances(pool, centres, chunk)
        radius_before = float(nearest.max().sqrt()) if len(pool) else 0.0
    else:
        nearest = torch.full((len(pool),), float("inf"), dtype=pool.dtype, device=pool.device)
        radius_before = None
    chosen: list[int] = []
    picked_at: list[float] = []
    for step in progress.track(range(k), total=k, description="k-center greedy"):
        i = first if step == 0 and not len(centres) else int(torch.argmax(nearest))
        d = float(nearest[i])
        picked_at.append(0.0 if d == float("inf") else d**0.5)
        chosen.append(i)
        centre = pool[i]
        for x0 in range(0, len(pool), chunk):
            block = ((pool[x0 : x0 + chunk] - centre) ** 2).sum(1)
            nearest[x0 : x0 + chunk] = torch.minimum(nearest[x0 : x0 + chunk], block)
        nearest[i] = -float("inf")  # never picked twice, even among exact duplicates
    radius_after = float(nearest.max().clamp_min(0).sqrt()) if len(chosen) < len(pool) else 0.0
    return chosen, picked_at, radius_before, radius_after


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
        if ctx.model is None:
            raise RuntimeError("coreset needs the trained task network")
        lab_idx, lab_feat = scoring.embed_pool(ctx, ctx.model, ctx.labeled, "embedding labeled set")
        pool_idx, pool_feat = scoring.embed_pool(ctx, ctx.model, ctx.unlabeled, "embedding pool")
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
