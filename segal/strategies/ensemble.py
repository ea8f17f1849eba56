"""Ensembles with variation ratio (Beluch et al., CVPR 2018): M task networks vote per pixel.

Member 0 is the loop's trained network (when ``use_loop_model`` and one is available); the others
are fresh networks from ``ctx.build_model()`` trained on the labeled set with the loop's recipe
and distinct seeds.  A pixel's score is 1 − (votes for its modal argmax class) / M, averaged over
the image.

Members are saved to ``<cycle dir>/ensemble/member{k}.pt`` together with the images and seed they
were trained on, and reused on resume when both match.  :func:`committee` is shared with QBC and
suggestive annotation.  All members sit on ``ctx.device`` while the pool is scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
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


def trained_member(ctx: AcquisitionContext, name: str, k: int, indices: np.ndarray, seed: int) -> nn.Module:
    """Member ``k`` trained on ``indices`` with ``seed``, loaded from its checkpoint when one matches."""
    from segal.engine import (  # engine imports strategies.base
        load_checkpoint,
        load_model_state,
        save_checkpoint,
    )

    if ctx.build_model is None or ctx.train_model is None:
        raise RuntimeError(f"{name} needs ctx.build_model and ctx.train_model to train committee members")
    indices = np.asarray(indices, dtype=np.int64)
    wanted = torch.from_numpy(indices.copy())
    path = ctx.workdir / name / f"member{k}.pt" if ctx.workdir is not None else None
    model = ctx.build_model()
    if path is not None and path.exists():
        saved = load_checkpoint(path)
        stored = saved.get("indices") if isinstance(saved, dict) else None
        if isinstance(stored, torch.Tensor) and torch.equal(stored, wanted) and saved.get("seed") == seed:
            load_model_state(model, saved["model"], path)
            return model.to(ctx.device).eval()
        ctx.progress.warn(f"{path}: trained on other images or seed; retraining")
    model = ctx.train_model(model, indices, seed)
    if path is not None:
        save_checkpoint(path, {"model": model.state_dict(), "indices": wanted, "seed": seed})  # rank 0 writes
        dist.barrier()
    return model.to(ctx.device).eval()


def committee(
    ctx: AcquisitionContext, name: str, train_sets: Sequence[np.ndarray | None], seed_base: int
) -> list[nn.Module]:
    """One network per entry: ``None`` is the loop's model, an index array a member trained on it."""
    members = []
    for k, indices in enumerate(train_sets):
        if indices is None:
            if ctx.model is None:
                raise RuntimeError(f"{name} member {k} is the loop's task network, but none was given")
            members.append(ctx.model.eval())
        else:
            members.append(trained_member(ctx, name, k, indices, seed_base + k))
    return members


def committee_scores(
    ctx: AcquisitionContext, members: Sequence[nn.Module], score, reduce: str, variance: bool = False,
    description: str = "committee scoring",
) -> tuple[np.ndarray, np.ndarray]:
    """Stream the unlabeled pool through every member; ``score(SampleStats) -> per-pixel scores``."""

    def image_scores(images: torch.Tensor) -> torch.Tensor:
        stats = scoring.SampleStats(variance=variance)
        for m in members:
            stats.add(scoring.probabilities(m, images, ctx))
        return scoring.reduce_per_image(score(stats), reduce)

    for m in members:
        m.eval()
    return scoring.score_pool_multi(ctx, image_scores, description=description)


def check_labeled(ctx: AcquisitionContext, name: str) -> None:
    if len(ctx.labeled) == 0:
        raise UserError(f"{name} trains committee members on the labeled set, which is empty",
                        fix="set active.initial > 0")


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
