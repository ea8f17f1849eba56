"""The region half of the active-learning loop (``active.unit: region``).

:class:`segal.loop.ActiveLoop` runs the same stages for both units; in a region run it hands these
steps to :class:`RegionSteps`:

* **start** — the pool's region maps are built (or opened) under ``<run>/regions/``, and the initial
  whole images (the same ones an image-level run with the same seed starts from) are labeled: every
  region of them, in cycle 0;
* **train** — on the images touched, through :class:`~segal.regions.training.RegionTrainingView`: the
  partial masks of the ``regions.oracle``, unlabeled pixels ignored by the loss.  ``train.epochs`` (and
  ``warm_epochs``) count passes over the labeled *pixels* in whole-image equivalents (labeled pixels ÷
  pixels per image, rounded up), not over the images touched, with the same ``min_steps`` floor
  (:meth:`RegionSteps.schedule`): a region run then trains as many steps as an image run with the same
  labeled pixels, though its labels are spread over many more images;
* **evaluate** — as image runs, plus the cost ledger (images touched, regions, pixels, pixel share,
  clicks) and, for the dominant oracle, its label noise;
* **acquire** — the region strategy scores every unlabeled region; regions are taken greedily in
  score order while they fit the cycle's budget in ``active.cost`` units, and written to
  ``queries.json`` before the state moves on;
* **label** — the simulated oracle labels them; labels and state are saved together
  (:func:`~segal.regions.state.save_region_state`), so a SIGKILL at any moment resumes to the same run.
  With ``active.oracle: human`` they become *pending* instead and the run stops (``await_labels``)
  until ``segal import`` (:mod:`segal.human`) stores the annotators' labels under ``labels/`` and
  labels them; from then on the images train on those stored labels in every region labeled after
  cycle 0 (the initial whole images still come from the dataset).

This module does not import :mod:`segal.loop` (which imports it): what it needs from the loop, the
cycle's network, comes in as a callable.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from segal import distributed as dist
from segal.config import TrainConfig
from segal.data.base import Dataset
from segal.distributed import is_main
from segal.engine import planned_steps
from segal.errors import UserError
from segal.fileio import atomic_write_json, read_json
from segal.metrics import collapse_warning
from segal.pool import PoolState, hand_over
from segal.progress import Progress
from segal.regions.budget import CostLedger, select_under_budget, unit_costs
from segal.regions.cache import RegionCache
from segal.regions.state import FILE_PREFIX, RegionLabels, load_region_labels, save_region_state
from segal.regions.training import RegionTrainingView, class_shares, labeled_noise
from segal.runs import Run
from segal.strategies import make_region_strategy
from segal.strategies.context import build_context
from segal.strategies.region_base import RegionContext


class RegionSteps:
    """The region-level parts of one run's loop: its cache, its region labels and its strategy."""

    def __init__(self, run: Run, progress: Progress):
        self.run, self.progress = run, progress
        a = run.recipe.active
        self.strategy = make_region_strategy(a.strategy, a.strategy_params, str(run.dir / "recipe.yaml"))
        self.oracle = run.region_oracle
        self.human = a.oracle == "human"  # annotators label the queried regions (segal export / import)
        self._labels: RegionLabels | None = None
        self._human_masks: dict[int, Path] = {}  # pool index → labels/<id>.png of an image with imported labels

    @property
    def labels(self) -> RegionLabels:
        if self._labels is None:
            raise RuntimeError("the region labels are read by start() or resume() first")
        return self._labels

    # ------------------------------------------------------------------ start and resume
    def start(self, state: PoolState, initial_images: np.ndarray) -> None:
        """Label every region of ``initial_images`` in cycle 0 and save the first region state."""
        cache = self.run.region_cache(self.progress)
        labels = RegionLabels.empty(cache.offsets)
        labels.add_labeled(labels.regions_of(initial_images), cycle=0)
        save_region_state(state, labels, self.run.state_path)
        self._labels = labels

    def resume(self, state: PoolState) -> None:
        """Read the region labels ``state`` names, checked against it and against the region maps."""
        if state.regions is None:
            raise UserError("the recipe says active.unit: region but this run's state.json is of an image-level run",
                            path=self.run.state_path,
                            fix="restore active.unit: image in the recipe, or start a new run with --output-dir")
        cache = self.run.region_cache(self.progress)
        self._labels = load_region_labels(state, self.run.state_path, cache.offsets)
        masks = self.run.override_masks(state)  # a lost labels/ file is an error, never the dataset's mask instead
        self._human_masks = {i: masks[self.run.pool.image_id(i)] for i in state.human}
        if is_main():  # a kill between state.json's rename and the deletion of the older labels file left it
            for old in self.run.dir.glob(f"{FILE_PREFIX}*.npy"):
                if old.name != state.regions["file"]:
                    old.unlink(missing_ok=True)

    # ------------------------------------------------------------------ train and evaluate
    def training_view(self, cycle: int, source: Dataset | None = None) -> RegionTrainingView:
        """The pool with the partial masks of the regions labeled through ``cycle``, cut from the images and
        ground truth of ``source`` (default: the pool; the loop hands in its training-input cache when
        ``data.cache`` is on: it stores the ground truth, which never changes, shrunk as image runs train on)."""
        return RegionTrainingView(source if source is not None else self.run.pool, self.run.region_cache(),
                                  self.labels, self.oracle, cycle, human=self._human_masks)

    def schedule(self, cfg: TrainConfig, cycle: int) -> TrainConfig:
        """Cycle ``cycle``'s schedule (module docstring): ``planned_steps`` of the labeled pixels' whole-image
        equivalents, per rank; a fixed ``train.steps`` is kept as it is."""
        if cfg.steps:
            return cfg
        cache = self.run.region_cache()
        status = self.labels.status
        pixels = int(cache.area[(status >= 0) & (status <= cycle)].sum(dtype=np.int64))
        images = math.ceil(pixels / (cache.shape[0] * cache.shape[1]))
        return dataclasses.replace(cfg, steps=planned_steps(cfg, max(1, images // dist.world())))

    def initial_clicks(self, cache: RegionCache) -> int | None:
        """Clicks of the initial images labeled whole (segal.image_costs, cached with the run), for a precise
        oracle; ``None`` for the dominant one, whose initial images cost a click per region, as labeled."""
        if self.oracle != "precise":
            return None
        from segal.image_costs import ImageCosts

        initial = np.unique(cache.image_of(np.flatnonzero(self.labels.status == 0)))
        return int(ImageCosts(self.run.pool, self.run.dir / "cache").block(initial)["clicks"])

    def cost_metrics(self, cycle: int) -> dict[str, Any]:
        """What ``metrics.json`` of ``cycle`` adds in a region run: the cost ledger, and the dominant oracle's noise."""
        cache = self.run.region_cache()
        ledger = CostLedger.of(self.labels, cache.area, self.run.region_clicks(self.progress), cycle,
                               initial_clicks=self.initial_clicks(cache))
        out: dict[str, Any] = {"unit": "region", "oracle": self.oracle, "cost": ledger.to_json()}
        if self.oracle == "dominant" and not self.human:  # the simulated oracle's noise; annotators' is not known
            wrong, labeled = labeled_noise(self.run.pool, cache, self.labels, cycle)
            out["label_noise"] = {"wrong_pixels": wrong, "labeled_pixels": labeled,
                                  "share": wrong / labeled if labeled else 0.0}
        return out

    # ------------------------------------------------------------------ acquire and label
    def acquire(self, state: PoolState, cycle: int, queries_path: Path, model_of: Callable[[], nn.Module]) -> int:
        """Score the unlabeled regions, take them under the cycle's budget, write ``queries.json``; returns the count."""
        run, labels, cache = self.run, self.labels, self.run.region_cache()
        budget = state.budgets[cycle + 1] - state.budgets[cycle]
        candidates = labels.unlabeled_regions()
        if not len(candidates):
            raise UserError(f"cycle {cycle} has a budget to spend but every region of the pool is labeled",
                            path=run.dir / "recipe.yaml", fix="lower active.budget, active.final or active.cycles")
        model = model_of() if self.strategy.needs_model else None
        images = np.unique(labels.image_of(candidates))
        base = build_context(
            run.pool, state.labeled_indices(), budget, unlabeled=images, num_classes=run.num_classes,
            compute=run.compute, cycle=cycle, seed=run.recipe.seed, model=model, progress=self.progress,
            workdir=run.cycle_dir(cycle), cache_dir=run.dir / "cache",
        )
        kind = run.recipe.active.cost
        clicks = run.region_clicks(self.progress)
        cost = unit_costs(kind, cache.area[candidates], clicks[candidates])
        t0, cpu0 = time.perf_counter(), time.process_time()
        scores, reported = self.strategy.score_with_diagnostics(RegionContext(base, cache, labels, candidates, cost))
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != candidates.shape or not np.isfinite(scores).all():
            raise RuntimeError(f"region strategy {self.strategy.name} returned {scores.shape} scores for "
                               f"{len(candidates)} regions, or non-finite ones")
        chosen = select_under_budget(candidates, scores, cost, budget)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
        position = np.searchsorted(candidates, chosen)
        touched = np.unique(labels.image_of(chosen))
        atomic_write_json(queries_path, {
            "cycle": cycle,
            "strategy": self.strategy.name,
            "unit": "region",
            "cost": kind,
            "budget": budget,
            "spent": int(cost[position].sum()),
            "regions": chosen.tolist(),  # global region ids, best first
            "indices": touched.tolist(),  # the images they lie in
            "ids": [run.pool.image_id(int(i)) for i in touched],
            "scores": scores[position].tolist(),
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu_seconds, 3),
            "diagnostics": {"candidates": len(candidates), "pool_score_mean": float(scores.mean()),
                            "pool_score_std": float(scores.std()),
                            "class_histogram": class_shares(run.pool, cache, chosen), **reported},
        })
        warning = collapse_warning(cycle, reported)  # region VAAL's discriminator AUROC holds 0.5
        if warning:
            self.progress.warn(warning)
        return len(chosen)

    def label(self, state: PoolState, cycle: int, queries_path: Path) -> int:
        """The simulated oracle labels the queried regions in cycle ``cycle + 1`` (a human oracle: they become
        pending and the run waits for ``segal import``); labels and state saved together."""
        chosen = read_json(queries_path)["regions"]
        labels = self.labels
        fresh = RegionLabels(labels.offsets, labels.status.copy())  # the saved labels stay intact on a failure
        hand_over(fresh, state, chosen, cycle, human=self.human)
        save_region_state(state, fresh, self.run.state_path)
        self._labels = fresh
        return len(chosen)


__all__ = ["RegionSteps"]
