"""Acquisition scores for every image that still needs a label, so Label Studio can order its tasks.

A cycle's ``queries.json`` holds the scores of the images the strategy chose, not of the rest of the
pool; this asks the same strategy to rank the whole unlabeled pool (its ``select`` with the budget set
to every candidate) and keeps the chosen images' recorded scores as they are.  VAAL is the one
strategy whose score is lower-first (the discriminator's P(labeled)): it is scored with the cycle's
own VAE and discriminator (``vaal.pt``, no retraining) and served as P(unlabeled) = 1 − P(labeled),
so that for every strategy a higher score means "label this first".  A strategy without scores
(``random``) gives none.  The result is written once per cycle to ``cycles/<k>/serve_scores.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from segal.fileio import atomic_write_json, read_json
from segal.human import acquisition_scores
from segal.loop import ActiveLoop
from segal.pool import PoolState
from segal.runs import Run
from segal.strategies import label_first, make_strategy
from segal.strategies.context import build_context

SCORES_FILE = "serve_scores.json"


def scores_path(run: Run, cycle: int) -> Path:
    return run.cycle_dir(cycle) / SCORES_FILE


def load_scores(run: Run, cycle: int) -> dict[int, float] | None:
    path = scores_path(run, cycle)
    if not path.is_file():
        return None
    doc = read_json(path)
    return {int(i): float(s) for i, s in zip(doc["indices"], doc["scores"], strict=True)}


def compute_scores(run: Run, state: PoolState, cycle: int, model: nn.Module) -> dict[int, float]:
    """Pool index → label-first score for every image not labeled; written to ``serve_scores.json``."""
    a = run.recipe.active
    strategy = make_strategy(a.strategy, a.strategy_params, str(run.dir / "recipe.yaml"))
    labeled = state.labeled_indices()
    candidates = np.setdiff1d(np.arange(state.size), labeled)
    scores: dict[int, float] = {}
    if len(candidates):
        ctx = build_context(
            run.pool, labeled, len(candidates), unlabeled=candidates, num_classes=run.num_classes,
            compute=run.compute, cycle=cycle, seed=run.recipe.seed, model=model,
            build_model=lambda: run.build_model(0), workdir=run.cycle_dir(cycle), cache_dir=run.dir / "cache",
            train_model=ActiveLoop(run)._train_member(state, cycle),  # committee strategies train their members
        )
        if a.strategy == "vaal":
            scores = _vaal_scores(strategy, ctx, run.cycle_dir(cycle))
        else:
            torch.manual_seed(run.recipe.seed)
            selection = strategy.select(ctx)
            if selection.scores is not None:
                scores = {int(i): float(s) for i, s in zip(selection.indices, selection.scores, strict=True)}
    scores = {i: label_first(a.strategy, s) for i, s in scores.items()}
    recorded = acquisition_scores(run, cycle)  # already label-first
    scores.update({i: s for i, s in recorded.items() if i not in set(labeled.tolist())})
    order = sorted(scores)
    atomic_write_json(scores_path(run, cycle), {"cycle": cycle, "strategy": a.strategy, "higher_first": True,
                                                "indices": order, "scores": [scores[i] for i in order]})
    return scores


def _vaal_scores(strategy, ctx, cycle_dir: Path) -> dict[int, float]:
    """The discriminator's P(labeled) of every candidate, from the cycle's own checkpoint (none without it)."""
    from segal.strategies.vaal import CHECKPOINT

    vae, disc = strategy.build()
    if strategy._load(cycle_dir / CHECKPOINT, vae, disc) is None:
        return {}
    vae.to(ctx.device)
    disc.to(ctx.device)
    idx, raw = strategy.score(ctx, vae, disc, ctx.unlabeled, description="VAAL scores for Label Studio")
    return {int(i): float(s) for i, s in zip(idx, raw, strict=True)}
