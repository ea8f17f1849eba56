"""The active-learning cycle: train → evaluate → acquire → label, resumable at every step.

Each step writes its result atomically *before* the state advances, and a resumed run reuses a
step's result when it exists.  So a kill at any moment repeats at most the unfinished step, and
an acquisition, once written to ``queries.json``, is never recomputed or lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from segal.config import from_dict
from segal.data.base import Dataset
from segal.distributed import barrier
from segal.engine import evaluate, load_checkpoint, load_model_state, save_checkpoint, train
from segal.errors import UserError
from segal.oracle import OracleView
from segal.pool import PoolState, atomic_write_json
from segal.runs import Run, read_json
from segal.strategies import STRATEGIES
from segal.strategies.base import Progress, Strategy
from segal.strategies.context import build_context

WARN_AUROC = 0.05


@dataclass
class CycleResult:
    cycle: int
    labeled: int
    fraction: float
    metric_name: str
    metric: float


def make_strategy(recipe, source: str) -> Strategy:
    """The recipe's strategy with its parameters checked against the strategy's ``Params``."""
    a = recipe.active
    cls = STRATEGIES.get(a.strategy)
    params = from_dict(cls.Params, a.strategy_params, source, prefix="active.strategy_params.")
    return cls(params)


def _seed(*parts: int) -> int:
    return int(np.random.default_rng(list(parts)).integers(2**31 - 1))


def initial_selection(run: Run, state: PoolState, progress: Progress | None = None) -> np.ndarray:
    """The random initial labeled set, optionally biased by leaving out classes (the paper's study)."""
    pool, a = run.pool, run.recipe.active
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
        if len(candidates) < state.budgets[0]:
            raise UserError(
                f"only {len(candidates)} images avoid classes {sorted(excluded)}, the initial set needs {state.budgets[0]}",
                fix="exclude fewer classes or lower active.initial",
            )
    rng = np.random.default_rng([run.recipe.seed, 0x1417])
    return np.sort(rng.choice(candidates, size=state.budgets[0], replace=False))


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

    def __init__(self, run: Run, progress: Progress | None = None, max_cycles: int | None = None):
        self.run = run
        self.progress = progress or Progress()
        self.max_cycles = max_cycles
        self.strategy = make_strategy(run.recipe, str(run.dir / "recipe.yaml"))

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
        return OracleView(self.run.pool, self.run.override_masks(), noisy, noise_seed=self.run.recipe.seed)

    def _event(self, event: str, **fields) -> None:
        self.run.log(event, **fields)
        self.progress.log(event, **fields)

    def _trained_model(self, state: PoolState, cycle: int):
        """Train (or reload) the task network of ``cycle``."""
        run, cfg = self.run, self.run.recipe.train
        cdir = run.cycle_dir(cycle)
        final = cdir / "task.pt"
        model = run.build_model(_seed(run.recipe.seed, cycle, 7))
        if final.exists():
            load_model_state(model, load_checkpoint(final), final)
            return model.to(run.device), None
        if not cfg.reinit and cycle > 0 and (run.cycle_dir(cycle - 1) / "task.pt").exists():
            previous = run.cycle_dir(cycle - 1) / "task.pt"
            load_model_state(model, load_checkpoint(previous), previous)
        result = train(
            model, self.oracle_view(state), state.labeled_indices(), cfg,
            image_size=run.recipe.data.image_size, device=run.device, seed=_seed(run.recipe.seed, cycle, 11),
            amp=run.amp, checkpoint=cdir / "train_state.pt", progress=self.progress,
            description=f"cycle {cycle}: training on {state.num_labeled} images",
        )
        save_checkpoint(final, model.state_dict())
        (cdir / "train_state.pt").unlink(missing_ok=True)
        return model, result

    def _train_member(self, state: PoolState, cycle: int):
        """Train extra task networks for ensemble-style strategies with the loop's own recipe."""
        run = self.run

        def train_model(model, indices, seed):
            train(model, self.oracle_view(state), indices, run.recipe.train, image_size=run.recipe.data.image_size,
                  device=run.device, seed=_seed(run.recipe.seed, cycle, seed), amp=run.amp, progress=self.progress,
                  description=f"cycle {cycle}: committee member {seed}")
            return model

        return train_model

    # ------------------------------------------------------------------ the loop
    def run_loop(self) -> list[CycleResult]:
        run = self.run
        if run.state_path.exists():
            state = run.load_state()
            new_budgets = run.new_state().budgets
            if new_budgets[: len(state.budgets)] == state.budgets[: len(new_budgets)] and new_budgets != state.budgets:
                if len(new_budgets) > len(state.budgets) and state.stage == "done":
                    state.stage = "acquire"
                state.budgets = new_budgets if len(new_budgets) > state.cycle else state.budgets
                run.save_state(state)
            self._event("resume", cycle=state.cycle, stage=state.stage)
        else:
            state = run.new_state()
            state.add_labeled(initial_selection(run, state, self.progress), cycle=0)
            run.save_state(state)
            self._event("start", pool=state.size, budgets=state.budgets, strategy=run.recipe.active.strategy)
        cycles_done = 0
        while state.stage != "done":
            if state.stage == "await_labels":
                self._event("awaiting_labels", pending=len(state.pending), cycle=state.cycle)
                break
            self.step(state)
            if state.stage == "train":
                cycles_done += 1
                if self.max_cycles is not None and cycles_done >= self.max_cycles:
                    break
        return self.results()

    def step(self, state: PoolState) -> None:
        """Advance one stage; every stage saves its output before the state moves on."""
        self._step(state)
        barrier()  # rank 0 has written the step's files before any rank reads them

    def _step(self, state: PoolState) -> None:
        run, cycle = self.run, state.cycle
        cdir = run.cycle_dir(cycle)
        cdir.mkdir(parents=True, exist_ok=True)
        if state.stage == "train":
            t0 = time.perf_counter()
            self.model, result = self._trained_model(state, cycle)
            if result is not None:
                atomic_write_json(cdir / "train.json", {"steps": result.steps, "final_loss": result.final_loss,
                                                        "seconds": round(result.seconds, 2)})
                self._event("trained", cycle=cycle, steps=result.steps, loss=result.final_loss,
                            seconds=round(time.perf_counter() - t0, 1))
            state.stage = "evaluate"
            run.save_state(state)
        elif state.stage == "evaluate":
            metrics_path = cdir / "metrics.json"
            if not metrics_path.exists():
                model = getattr(self, "model", None) or self._trained_model(state, cycle)[0]
                t0 = time.perf_counter()
                metrics = evaluate(model, run.test, image_size=run.recipe.data.image_size, device=run.device,
                                   batch_size=run.recipe.train.eval_batch_size, amp=run.amp,
                                   num_workers=run.recipe.train.num_workers, progress=self.progress)
                train_info = read_json(cdir / "train.json") if (cdir / "train.json").exists() else {}
                metrics.update(cycle=cycle, labeled=state.num_labeled, pool=state.size,
                               fraction=state.num_labeled / state.size, strategy=run.recipe.active.strategy,
                               seed=run.recipe.seed, eval_seconds=round(time.perf_counter() - t0, 2),
                               train_seconds=train_info.get("seconds"), test_size=len(run.test))
                atomic_write_json(metrics_path, metrics)
                self._event("evaluated", cycle=cycle, labeled=state.num_labeled,
                            **{k: metrics[k] for k in ("miou", "accuracy") if k in metrics})
            state.stage = "done" if cycle >= state.last_cycle else "acquire"
            run.save_state(state)
        elif state.stage == "acquire":
            queries_path = cdir / "queries.json"
            if not queries_path.exists():
                self._acquire(state, cycle, queries_path)
            state.stage = "label"
            run.save_state(state)
        elif state.stage == "label":
            chosen = read_json(cdir / "queries.json")["indices"]
            if run.recipe.active.oracle == "human":
                state.add_pending(chosen)
                state.stage = "await_labels"
            else:
                state.add_labeled(chosen, cycle=cycle + 1)
                state.cycle = cycle + 1
                state.stage = "train"
                self.model = None
            run.save_state(state)
            self._event("labeled", cycle=cycle, count=len(chosen), oracle=run.recipe.active.oracle)
        else:
            raise UserError(f"cannot advance from stage {state.stage!r}", path=run.state_path)

    def _acquire(self, state: PoolState, cycle: int, queries_path) -> None:
        run = self.run
        budget = state.budgets[cycle + 1] - state.budgets[cycle]
        unlabeled = state.unlabeled_indices()
        if budget > len(unlabeled):
            raise UserError(f"cycle {cycle} needs {budget} images but only {len(unlabeled)} are unlabeled",
                            path=run.dir / "recipe.yaml", fix="lower active.budget or active.final")
        model = None
        if self.strategy.needs_model:
            model = getattr(self, "model", None) or self._trained_model(state, cycle)[0]
        ctx = build_context(
            run.pool, state.labeled_indices(), budget, unlabeled=unlabeled, image_size=run.recipe.data.image_size,
            num_classes=run.num_classes, cycle=cycle, seed=run.recipe.seed, device=run.device,
            batch_size=run.recipe.train.eval_batch_size, num_workers=run.recipe.train.num_workers, model=model,
            build_model=lambda: run.build_model(_seed(run.recipe.seed, cycle, 13)),
            train_model=self._train_member(state, cycle), progress=self.progress, amp=run.amp,
            workdir=run.cycle_dir(cycle), cache_dir=run.dir / "cache",
        )
        t0 = time.perf_counter()
        torch.manual_seed(_seed(run.recipe.seed, cycle, 17))
        selection = self.strategy.select(ctx)
        seconds = time.perf_counter() - t0
        chosen = np.asarray(selection.indices, dtype=np.int64)
        if len(chosen) != budget or len(np.unique(chosen)) != budget or not np.isin(chosen, unlabeled).all():
            raise RuntimeError(f"strategy {self.strategy.name} returned an invalid selection")
        diagnostics = dict(selection.diagnostics)
        if run.recipe.active.oracle == "simulated":
            diagnostics["class_histogram"] = class_histogram(run.pool, chosen)
        auroc = diagnostics.get("auroc")
        if auroc is not None and abs(auroc - 0.5) < WARN_AUROC:
            self.progress.warn(f"cycle {cycle}: discriminator AUROC {auroc:.3f} ≈ 0.5 — VAAL is close to random here")
        atomic_write_json(queries_path, {
            "cycle": cycle,
            "strategy": self.strategy.name,
            "budget": budget,
            "indices": chosen.tolist(),
            "ids": [run.pool.image_id(int(i)) for i in chosen],
            "scores": None if selection.scores is None else [float(s) for s in selection.scores],
            "seconds": round(seconds, 3),
            "diagnostics": diagnostics,
        })
        self._event("acquired", cycle=cycle, count=budget, seconds=round(seconds, 2))

    def results(self) -> list[CycleResult]:
        return collect_results(self.run)


def collect_results(run: Run) -> list[CycleResult]:
    rows = []
    for path in sorted(run.dir.glob("cycles/*/metrics.json"), key=lambda p: int(p.parent.name)):
        m = read_json(path)
        name = "miou" if "miou" in m else "accuracy"
        rows.append(CycleResult(m["cycle"], m["labeled"], m["fraction"], name, m[name]))
    return rows
