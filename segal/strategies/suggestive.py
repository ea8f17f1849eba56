"""Suggestive annotation (Yang et al., MICCAI 2017): uncertain first, then representative.

1. K networks trained on bootstrap resamples of the labeled set; an image's uncertainty is the
   variance across networks of each class probability, averaged over classes and pixels.
2. The ``candidates_factor``·b most uncertain images are candidates.
3. From them, b images are chosen greedily to maximise the representativeness
   F(S) = Σ_{x ∈ unlabeled pool} max_{s ∈ S} cos(f_x, f_s), f = member 0's embedding.

F is monotone submodular, so the greedy is run lazily (a stale gain is an upper bound): it returns
exactly what the plain greedy would, ties going to the lowest candidate, with far fewer gain
evaluations.  Memory is the candidates × pool cosine matrix (2b × N floats), never N × N; with
S empty every cover starts at −1, the lowest cosine, so the first pick maximises Σ cos too.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from segal import distributed as dist
from segal.errors import UserError
from segal.progress import Progress
from segal.strategies import scoring
from segal.strategies.base import (
    AcquisitionContext,
    Selection,
    Strategy,
    register_strategy,
    scores_of,
    top_k_highest,
)
from segal.strategies.committee import bootstraps, check_labeled, committee, committee_scores

BOOTSTRAP_SALT = 0x5A


def cosine_matrix(a: torch.Tensor, b: torch.Tensor, chunk: int) -> torch.Tensor:
    """cos(a_i, b_j) as an len(a)×len(b) matrix, computed over column blocks of ``chunk``."""
    a = torch.nn.functional.normalize(a, dim=1)
    b = torch.nn.functional.normalize(b, dim=1)
    return torch.cat([a @ b[j : j + chunk].T for j in range(0, len(b), chunk)], dim=1)


def greedy_max_cover(
    sim: torch.Tensor, k: int, progress: Progress | None = None
) -> tuple[list[int], list[float], float]:
    """Greedy argmax of F(S) = Σ_x max_{s∈S} sim[s, x] over ``k`` rows; returns (rows, gains, F(S))."""
    progress = progress or Progress()
    cover = torch.full((sim.shape[1],), -1.0, dtype=sim.dtype, device=sim.device)
    start = float(cover.sum())
    gains0 = torch.cat([(sim[i : i + 256] - cover).clamp_min(0).sum(1) for i in range(0, len(sim), 256)])
    heap = [(-g, s) for s, g in enumerate(gains0.tolist())]
    heapq.heapify(heap)
    chosen: list[int] = []
    gains: list[float] = []
    bar = iter(progress.track(range(k), total=k, description="representativeness"))
    while len(chosen) < k:
        _, s = heapq.heappop(heap)
        gain = float((sim[s] - cover).clamp_min(0).sum())
        if not heap or (-gain, s) <= heap[0]:
            chosen.append(s)
            gains.append(gain)
            cover = torch.maximum(cover, sim[s])
            next(bar, None)
        else:
            heapq.heappush(heap, (-gain, s))
    return chosen, gains, start + sum(gains)


@register_strategy("suggestive_annotation")
class SuggestiveAnnotationStrategy(Strategy):
    @dataclass
    class Params:
        K: int = 3  # bootstrapped networks
        candidates_factor: float = 2.0  # candidates = this × budget most uncertain images
        use_loop_model: bool = False  # member 0 = the loop's network instead of a bootstrapped one
        reduce: Literal["mean", "max", "sum"] = "mean"  # per-pixel variance -> one score per image
        chunk: int = 4096  # pool columns per cosine block

        def __post_init__(self):
            if self.K < 2:
                raise UserError(f"suggestive_annotation needs K ≥ 2 networks, not {self.K}",
                                fix="set active.strategy_params.K")
            if self.candidates_factor < 1:
                raise UserError(f"candidates_factor must be ≥ 1, not {self.candidates_factor}",
                                fix="set active.strategy_params.candidates_factor")

    def select(self, ctx: AcquisitionContext) -> Selection:
        p = self.params
        check_labeled(ctx, "suggestive_annotation")
        train_sets: list[np.ndarray | None] = list(bootstraps(ctx, p.K, BOOTSTRAP_SALT))
        loop_first = p.use_loop_model and ctx.model is not None
        if loop_first:
            train_sets[0] = None
        members = committee(ctx, "suggestive", train_sets, seed_base=3000)
        indices, uncertainty = committee_scores(
            ctx, members, scoring.SampleStats.variance, p.reduce, variance=True, description=f"bootstrap ×{p.K}"
        )
        n_cand = min(len(indices), max(ctx.budget, math.ceil(p.candidates_factor * ctx.budget)))
        candidates = np.sort(top_k_highest(uncertainty, indices, n_cand))

        pool_idx, pool_feat = scoring.embed_pool(ctx, members[0], ctx.unlabeled, "embedding pool")
        feats = torch.from_numpy(pool_feat).to(ctx.device)
        rows = torch.from_numpy(np.searchsorted(pool_idx, candidates)).to(ctx.device)
        sim = cosine_matrix(feats[rows], feats, p.chunk)
        picked, gains, cover = greedy_max_cover(sim, ctx.budget, ctx.progress)
        picked = dist.all_gather_object(picked)[0]  # rank 0's choice everywhere
        chosen = candidates[np.asarray(picked, dtype=np.int64)]
        return Selection(
            indices=chosen,
            scores=scores_of(chosen, indices, uncertainty),
            diagnostics={
                "K": p.K,
                "candidates": int(n_cand),
                "mean_cover_cosine": cover / len(pool_idx),
                "candidate_uncertainty_mean": float(np.mean(scores_of(candidates, indices, uncertainty))),
                "pool_uncertainty_mean": float(uncertainty.mean()),
            },
        )
