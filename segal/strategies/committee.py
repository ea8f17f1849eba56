"""Committees of task networks, shared by the ensemble, QBC and suggestive-annotation strategies.

Members are fresh networks from ``ctx.build_model()`` trained with the loop's own recipe
(``ctx.train_model``) and saved to ``<cycle dir>/<strategy>/member{k}.pt`` with the images and seed
they were trained on, so a resumed acquisition reuses them when both match instead of retraining.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from segal import distributed as dist
from segal.checkpoint import apply_state_dict, load_checkpoint, save_checkpoint
from segal.errors import UserError
from segal.strategies import scoring
from segal.strategies.base import AcquisitionContext


def trained_member(ctx: AcquisitionContext, name: str, k: int, indices: np.ndarray, seed: int) -> nn.Module:
    """Member ``k`` trained on ``indices`` with ``seed``, loaded from its checkpoint when one matches."""
    if ctx.build_model is None or ctx.train_model is None:
        raise RuntimeError(f"{name} needs ctx.build_model and ctx.train_model to train committee members")
    indices = np.asarray(indices, dtype=np.int64)
    wanted = torch.from_numpy(indices.copy())
    path = ctx.workdir / name / f"member{k}.pt" if ctx.workdir is not None else None
    model = ctx.build_model()
    saved = load_checkpoint(path) if path is not None and path.exists() else None
    stored = saved.get("indices") if isinstance(saved, dict) else None
    matches = isinstance(saved, dict) and isinstance(stored, torch.Tensor) and torch.equal(stored, wanted) \
        and saved.get("seed") == seed
    # One decision for every rank, gathered before any rank writes: a rank that looked later would find
    # the checkpoint rank 0 had just saved, skip the barrier below and leave rank 0 waiting in it.
    if all(dist.all_gather_object(matches)):
        assert isinstance(saved, dict)  # this rank's own check passed
        apply_state_dict(model, saved["model"], path)
        return model.to(ctx.device).eval()
    if saved is not None:
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
            members.append(ctx.require_model(f"{name} member {k}").eval())
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


def bootstraps(ctx: AcquisitionContext, count: int, salt: int) -> list[np.ndarray]:
    """``count`` resamples of the labeled set with replacement, each as large as the set (sorted)."""
    rng = ctx.generator(salt)
    return [np.sort(rng.choice(ctx.labeled, size=len(ctx.labeled), replace=True)) for _ in range(count)]
