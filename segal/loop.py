"""The active-learning cycle: train → evaluate → acquire → label, resumable at every step.

Each step writes its result atomically *before* the state advances, and a resumed run reuses a
step's result when it exists.  So a kill at any moment repeats at most the unfinished step, and
an acquisition, once written to ``queries.json``, is never recomputed or lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segal import __version__
from segal.checkpoint import apply_state_dict, load_checkpoint, save_checkpoint
from segal.data.base import Dataset, require_labeled_pixels
from segal.distributed import barrier, is_main
from segal.engine import cycle_schedule, evaluate, predict_masks, train
from segal.environment import describe
from segal.errors import UserError
from segal.fileio import atomic_write_json, read_json
from segal.image_costs import ImageCosts
from segal.metrics import WARN_AUROC, collapse_warning  # noqa: F401  (segal.loop.collapse_warning: tests, users)
from segal.oracle import OracleView
from segal.pool import PoolState, hand_over
from segal.progress import Progress
from segal.region_loop import RegionSteps
from segal.runs import Run
from segal.strategies import make_strategy
from segal.strategies.context import build_context
from segal.tracking import QUERY_IMAGES, log_acquisition, log_evaluation, open_tracker, query_panel


@dataclass
class CycleResult:
    cycle: int
    labeled: int
    fraction: float
    metric_name: str
    metric: float
    per_class: dict[str, float | None] = field(default_factory=dict)  # IoU by class name (segmentation)


def _seed(*parts: int) -> int:
    return int(np.random.default_rng(list(parts)).integers(2**31 - 1))


def initial_selection(run: Run, state: PoolState, progress: Progress | None = None,
                      count: int | None = None) -> np.ndarray:
    """The random initial labeled set, optionally biased by leaving out classes (the paper's study).

    ``count`` images (default ``state.budgets[0]``, which a region run's budgets do not count in images):
    a region run with the same seed and ``active.initial`` starts from the same images."""
    pool, a = run.pool, run.recipe.active
    count = state.budgets[0] if count is None else count
    candidates = np.arange(len(pool))
    if a.initial_exclude_classes:
        excluded = set(a.initial_exclude_classes)
        keep = []
        for i in (progress or Progress()).track(candidates, total=len(candidates), description="biased initial pool"):
            target = pool.load_target(int(i))
            present = set(np.unique(target).tolist()) if isinstance(target, np.ndarray) else {int(target)}
            if not present & excluded:
                keep.append(i)
        candidates = np.asarray(keep, dtype=np.int64)
        if len(candidates) < count:
            raise UserError(
                f"only {len(candidates)} images avoid classes {sorted(excluded)}, the initial set needs {count}",
                fix="exclude fewer classes or lower active.initial",
            )
    rng = np.random.default_rng([run.recipe.seed, 0x1417])
    return np.sort(rng.choice(candidates, size=count, replace=False))


def class_histogram(pool: Dataset, indices: np.ndarray) -> dict[str, float]:
    """Share of each class among the acquired images' labelled pixels (or labels, for classification)."""
    counts = np.zeros(len(pool.classes), dtype=np.int64)
    for i in indices:
        target = pool.load_target(int(i))
        if isinstance(target, np.ndarray):
            valid = target[target != pool.classes.ignore_index]
            counts += np.bincount(valid.ravel(), minlength=len(counts))[: len(counts)]
        else:
            counts[int(target)] += 1
    total = max(int(counts.sum()), 1)
    return {name: round(float(c) / total, 5) for name, c in zip(pool.classes.names, counts, strict=True)}


class ActiveLoop:
    """Drives one run from wherever its state says it is to its last budget (or a human-label stop)."""

    def __init__(self, run: Run, progress: Progress | None = None, max_cycles: int | None = None,
                 initial_donors: Sequence[Path] = ()):
        self.run = run
        self.initial_donors = tuple(initial_donors)  # runs whose cycle-0 network this one may copy (segal.shared_start)
        self.progress = progress or Progress()
        self.max_cycles = max_cycles
        self.tracking = run.recipe.log.tensorboard and is_main()  # TensorBoard events (segal.tracking)
        self.tracker = open_tracker(run.dir, self.tracking)
        a = run.recipe.active
        # a region run's strategy is self.regions.strategy: its name may have no image variant (class_balanced)
        self.strategy = None if a.unit == "region" else make_strategy(a.strategy, a.strategy_params,
                                                                      str(run.dir / "recipe.yaml"))
        self.model: nn.Module | None = None  # this cycle's trained network, once trained or reloaded
        self._costs: ImageCosts | None = None  # an image run's cost counter, opened at the first evaluation
        # active.unit: region — the region half of each stage (segal.region_loop); None in image runs
        self.regions = RegionSteps(run, self.progress) if a.unit == "region" else None
        self._stages: dict[str, Callable[[PoolState, int, Path], None]] = {
            "train": self._train_stage,
            "evaluate": self._evaluate_stage,
            "acquire": self._acquire_stage,
            "label": self._label_stage,
        }  # stage -> handler; each writes its output, then advances and saves the state

    # ------------------------------------------------------------------ helpers
    def oracle_view(self, state: PoolState) -> OracleView:
        noisy: set[int] = set()
        a = self.run.recipe.active
        if a.label_noise > 0:
            for cycle, indices in state.labeled.items():
                if cycle == 0:
                    continue  # the initial set is clean; the study corrupts acquired labels
                rng = np.random.default_rng([self.run.recipe.seed, 0x401, cycle])
                chosen = rng.choice(indices, size=round(a.label_noise * len(indices)), replace=False)
                noisy.update(int(i) for i in chosen)
        return OracleView(self.run.pool, self.run.override_masks(state), noisy, noise_seed=self.run.recipe.seed)

    def training_view(self, view: Dataset) -> Dataset:
        """With ``data.cache: true``, the oracle's view read through the training-input cache."""
        recipe = self.run.recipe
        if not recipe.data.cache or recipe.data.image_size is None:
            return view
        from segal import distributed as dist
        from segal.data.train_cache import TrainingCache

        root = self.run.dir / "cache" if dist.world() == 1 else self.run.dir / "cache" / f"rank{dist.rank()}"
        return TrainingCache(view, recipe.data.image_size, root, pool=self.run.pool)

    def _image_costs(self) -> ImageCosts:
        """Each labeled image's pixels and precise clicks, counted once per run (segal.image_costs)."""
        if self._costs is None:
            self._costs = ImageCosts(self.run.pool, self.run.dir / "cache")
        return self._costs

    def _event(self, event: str, **fields) -> None:
        self.run.log(event, **fields)
        self.progress.log(event, **fields)

    def _trained_model(self, state: PoolState, cycle: int):
        """Train (or reload) the task network of ``cycle``."""
        run, cfg = self.run, self.run.recipe.train
        cdir = run.cycle_dir(cycle)
        final = cdir / "task.pt"
        model = run.build_model(_seed(run.recipe.seed, cycle, 7))
        if cycle == 0 and self.initial_donors:
            if is_main():
                from segal.shared_start import share_initial_network

                donor = share_initial_network(run, state, self.initial_donors)
                if donor is not None:
                    self.progress.log("shared_initial_network", cycle=cycle, donor=str(donor))
            barrier()
        if final.exists():
            apply_state_dict(model, load_checkpoint(final), final)
            return model.to(run.device), None
        warm = not cfg.reinit and cycle > 0 and (run.cycle_dir(cycle - 1) / "task.pt").exists()
        if warm:
            previous = run.cycle_dir(cycle - 1) / "task.pt"
            apply_state_dict(model, load_checkpoint(previous), previous)
            cfg = cycle_schedule(cfg, warm=True)
        if self.regions is not None:  # epochs count the labeled pixels, in whole images (segal.region_loop)
            cfg = self.regions.schedule(cfg, cycle)
        view: Dataset
        if self.regions is None:
            view = self.oracle_view(state)
            data = self.training_view(view)
        else:  # partial masks cut from the ground truth, which the training-input cache may hold (it never changes)
            view = data = self.regions.training_view(cycle, self.training_view(run.pool))
        require_labeled_pixels(view, state.labeled_indices())  # all-void masks would train to a NaN loss
        result = train(
            model, data, state.labeled_indices(), cfg, compute=run.compute, seed=_seed(run.recipe.seed, cycle, 11),
            checkpoint=cdir / "train_state.pt", progress=self.progress,
            description=f"cycle {cycle}: training on {state.num_labeled} images",
            tracker=self.tracker.sub(f"train/cycle_{cycle}"),
        )
        save_checkpoint(final, model.state_dict())
        (cdir / "train_state.pt").unlink(missing_ok=True)
        return model, result

    def _train_member(self, state: PoolState, cycle: int):
        """Train extra task networks for ensemble-style strategies with the loop's own recipe."""
        run = self.run

        def train_model(model, indices, seed):
            train(model, self.training_view(self.oracle_view(state)), indices, run.recipe.train, compute=run.compute,
                  seed=_seed(run.recipe.seed, cycle, seed), progress=self.progress,
                  description=f"cycle {cycle}: committee member {seed}")
            return model

        return train_model

    # ------------------------------------------------------------------ the loop
    def run_loop(self) -> list[CycleResult]:
        run = self.run
        require_labeled_pixels(run.test, range(len(run.test)), what=f"{run.recipe.data.test_split!r} split",
                               consequence="no score could be computed (the mIoU would be NaN)")
        if run.state_path.exists():
            state = run.load_state()
            new_budgets = run.new_state().budgets
            if new_budgets[: len(state.budgets)] == state.budgets[: len(new_budgets)] and new_budgets != state.budgets:
                if len(new_budgets) > len(state.budgets) and state.stage == "done":
                    state.stage = "acquire"
                state.budgets = new_budgets if len(new_budgets) > state.cycle else state.budgets
                run.save_state(state)
            if self.regions is not None:
                self.regions.resume(state)
            self._event("resume", cycle=state.cycle, stage=state.stage)
            self._replay_tracking(state)
        else:
            state = run.new_state()
            if self.regions is None:
                state.add_labeled(initial_selection(run, state, self.progress), cycle=0)
                run.save_state(state)
            else:  # the initial whole images: every region of them, labeled in cycle 0
                count = run.region_plan().initial_images
                self.regions.start(state, initial_selection(run, state, self.progress, count=count))
            self._event("start", pool=state.size, budgets=state.budgets, strategy=run.recipe.active.strategy)
        if state.stage != "done" and is_main():  # what computes the cycles to come (segal.environment)
            run.log("environment", **describe(run.device))
        cycles_done = 0
        while state.stage != "done":
            if state.stage == "await_labels":
                if not (run.cycle_dir(state.cycle) / "task.pt").exists():  # deleted: `segal export` predicts with it
                    self._trained_model(state, state.cycle)  # same seed and labels: the same network again
                waiting = len(state.pending) if self.regions is None else len(self.regions.labels.images_pending())
                self._event("awaiting_labels", pending=waiting, cycle=state.cycle)
                break
            self.step(state)
            if state.stage == "train":
                cycles_done += 1
                if self.max_cycles is not None and cycles_done >= self.max_cycles:
                    break
        self.tracker.close()
        return self.results()

    def step(self, state: PoolState) -> None:
        """Advance one stage; every stage saves its output before the state moves on."""
        self._step(state)
        barrier()  # rank 0 has written the step's files before any rank reads them

    def _step(self, state: PoolState) -> None:
        handler = self._stages.get(state.stage)
        if handler is None:
            raise UserError(f"cannot advance from stage {state.stage!r}", path=self.run.state_path)
        cdir = self.run.cycle_dir(state.cycle)
        cdir.mkdir(parents=True, exist_ok=True)
        handler(state, state.cycle, cdir)

    def _model_of(self, state: PoolState, cycle: int) -> nn.Module:
        """This cycle's network: the one just trained, or reloaded after a resume."""
        return self.model if self.model is not None else self._trained_model(state, cycle)[0]

    def _train_stage(self, state: PoolState, cycle: int, cdir: Path) -> None:
        run = self.run
        t0 = time.perf_counter()
        self.model, result = self._trained_model(state, cycle)
        if not run.recipe.train.keep_checkpoints:
            drop_older_checkpoints(run, cycle)
        if result is not None:
            atomic_write_json(cdir / "train.json", {"steps": result.steps, "final_loss": result.final_loss,
                                                    "seconds": round(result.seconds, 2),
                                                    "cpu_seconds": _rounded(result.cpu_seconds)})
            self._event("trained", cycle=cycle, steps=result.steps, loss=result.final_loss,
                        seconds=round(time.perf_counter() - t0, 1))
        state.stage = "evaluate"
        run.save_state(state)

    def _evaluate_stage(self, state: PoolState, cycle: int, cdir: Path) -> None:
        run = self.run
        metrics_path = cdir / "metrics.json"
        if not metrics_path.exists():
            model = self._model_of(state, cycle)
            t0, cpu0 = time.perf_counter(), time.process_time()
            metrics = evaluate(model, run.test, compute=run.compute, progress=self.progress)
            train_info = read_json(cdir / "train.json") if (cdir / "train.json").exists() else {}
            metrics.update(cycle=cycle, labeled=state.num_labeled, pool=state.size,
                           fraction=state.num_labeled / state.size, strategy=run.recipe.active.strategy,
                           seed=run.recipe.seed, eval_seconds=round(time.perf_counter() - t0, 2),
                           eval_cpu_seconds=round(time.process_time() - cpu0, 2),
                           train_seconds=train_info.get("seconds"), train_cpu_seconds=train_info.get("cpu_seconds"),
                           test_size=len(run.test),
                           segal_version=__version__)
            if self.regions is not None:  # the cost axes; "fraction" becomes the share of the pool's pixels
                metrics.update(self.regions.cost_metrics(cycle))
                metrics["fraction"] = metrics["cost"]["pixel_share"]
            else:  # the same cost axes, a whole image as one region (segal.image_costs)
                metrics.update(unit="image", cost=self._image_costs().block(
                    state.labeled_indices(), OracleView(run.pool, run.override_masks(state)), set(state.human)))
            atomic_write_json(metrics_path, metrics)
            self._event("evaluated", cycle=cycle, labeled=state.num_labeled,
                        **{k: metrics[k] for k in ("miou", "accuracy") if k in metrics})
        self._track_evaluation(cycle)
        state.stage = "done" if cycle >= state.last_cycle else "acquire"
        run.save_state(state)

    def _acquire_stage(self, state: PoolState, cycle: int, cdir: Path) -> None:
        queries_path = cdir / "queries.json"
        if not queries_path.exists() and self.regions is not None:
            t0 = time.perf_counter()
            count = self.regions.acquire(state, cycle, queries_path, lambda: self._model_of(state, cycle))
            self._event("regions_acquired", cycle=cycle, count=count, seconds=round(time.perf_counter() - t0, 2))
        elif not queries_path.exists():
            self._acquire(state, cycle, queries_path)
        self._track_acquisition(cycle)
        state.stage = "label"
        self.run.save_state(state)

    def _label_stage(self, state: PoolState, cycle: int, cdir: Path) -> None:
        run = self.run
        if self.regions is not None:
            count = self.regions.label(state, cycle, cdir / "queries.json")
            self.model = None
            if state.stage == "await_labels":  # a human oracle: the regions wait for `segal import`
                self._event("regions_pending", cycle=cycle, count=count)
            else:
                self._event("regions_labeled", cycle=cycle, count=count, oracle=run.region_oracle)
            return
        chosen = read_json(cdir / "queries.json")["indices"]
        hand_over(state, state, chosen, cycle, human=run.recipe.active.oracle == "human")
        if state.stage == "train":
            self.model = None
        run.save_state(state)
        self._event("labeled", cycle=cycle, count=len(chosen), oracle=run.recipe.active.oracle)

    def _acquire(self, state: PoolState, cycle: int, queries_path: Path) -> None:
        run = self.run
        budget = state.budgets[cycle + 1] - state.budgets[cycle]
        unlabeled = state.unlabeled_indices()
        if budget > len(unlabeled):
            raise UserError(f"cycle {cycle} needs {budget} images but only {len(unlabeled)} are unlabeled",
                            path=run.dir / "recipe.yaml", fix="lower active.budget or active.final")
        assert self.strategy is not None, "image-level acquisition in a region run"
        model = self._model_of(state, cycle) if self.strategy.needs_model else None
        ctx = build_context(
            run.pool, state.labeled_indices(), budget, unlabeled=unlabeled, num_classes=run.num_classes,
            compute=run.compute, cycle=cycle, seed=run.recipe.seed, model=model,
            build_model=lambda: run.build_model(_seed(run.recipe.seed, cycle, 13)),
            train_model=self._train_member(state, cycle), progress=self.progress,
            workdir=run.cycle_dir(cycle), cache_dir=run.dir / "cache",
        )
        t0, cpu0 = time.perf_counter(), time.process_time()
        torch.manual_seed(_seed(run.recipe.seed, cycle, 17))
        selection = self.strategy.select(ctx)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
        chosen = np.asarray(selection.indices, dtype=np.int64)
        if len(chosen) != budget or len(np.unique(chosen)) != budget or not np.isin(chosen, unlabeled).all():
            raise RuntimeError(f"strategy {self.strategy.name} returned an invalid selection")
        diagnostics = dict(selection.diagnostics)
        if run.recipe.active.oracle == "simulated":
            diagnostics["class_histogram"] = class_histogram(run.pool, chosen)
        warning = collapse_warning(cycle, diagnostics)
        if warning:
            self.progress.warn(warning)
        groups = [run.pool.group(int(i)) for i in chosen]
        atomic_write_json(queries_path, {
            "cycle": cycle,
            "strategy": self.strategy.name,
            "budget": budget,
            "indices": chosen.tolist(),
            "ids": [run.pool.image_id(int(i)) for i in chosen],
            **({"groups": groups} if any(g is not None for g in groups) else {}),  # sequence or city, where known
            "scores": None if selection.scores is None else [float(s) for s in selection.scores],
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu_seconds, 3),  # this process's: a strategy resumed mid-way counts only the rest
            "diagnostics": diagnostics,
        })
        self._event("acquired", cycle=cycle, count=budget, seconds=round(seconds, 2))

    def results(self) -> list[CycleResult]:
        return collect_results(self.run)

    # ------------------------------------------------------------------ tracking (segal.tracking)
    def _replay_tracking(self, state: PoolState) -> None:
        """A resumed session's first events purge the resumed cycle's (segal.tracking): log again
        what that cycle's finished stages wrote before the kill."""
        if state.stage in ("acquire", "label", "await_labels", "done"):
            self._track_evaluation(state.cycle)
        if state.stage in ("label", "await_labels"):
            self._track_acquisition(state.cycle)

    def _track_evaluation(self, cycle: int) -> None:
        cdir = self.run.cycle_dir(cycle)
        if self.tracking and (cdir / "metrics.json").exists():
            train_info = read_json(cdir / "train.json") if (cdir / "train.json").exists() else {}
            log_evaluation(self.tracker.sub("cycles"), cycle, read_json(cdir / "metrics.json"), train_info)

    def _track_acquisition(self, cycle: int) -> None:
        cdir, pool = self.run.cycle_dir(cycle), self.run.pool
        if not self.tracking or not (cdir / "queries.json").exists():
            return
        queries = read_json(cdir / "queries.json")
        shown = queries["indices"][:QUERY_IMAGES]
        masks: dict[int, np.ndarray] = {}
        model = self.model
        if pool.task == "segmentation":
            with torch.random.fork_rng():  # loading a network reseeds torch (CPU and CUDA): keep the run's streams
                if model is None and (cdir / "task.pt").exists():
                    model = self.run.load_task_model(cycle)
                if model is not None:
                    masks = dict(predict_masks(model, pool, shown, compute=self.run.compute))
        panels = [query_panel(pool.load_image(i), masks.get(i), pool.classes.colors) for i in shown]
        log_acquisition(self.tracker.sub("cycles"), cycle, queries, pool.classes.names, panels)


def drop_older_checkpoints(run: Run, cycle: int) -> None:
    """``train.keep_checkpoints: false``: once cycle ``cycle``'s network is saved, earlier cycles' go.
    The latest stays: evaluation, acquisition, export and a resume may still need it."""
    for path in run.dir.glob("cycles/*/task.pt"):
        if path.parent.name.isdigit() and int(path.parent.name) < cycle:
            path.unlink(missing_ok=True)


def collect_results(run: Run) -> list[CycleResult]:
    rows = []
    for path in sorted(run.dir.glob("cycles/*/metrics.json"), key=lambda p: int(p.parent.name)):
        m = read_json(path)
        name = "miou" if "miou" in m else "accuracy"
        rows.append(CycleResult(m["cycle"], m["labeled"], m["fraction"], name, m[name]))
    return rows


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
