"""A strategies × seeds grid of runs of one recipe, then a report comparing them.

Runs go one after another through the same code path as ``segal acquire`` (``start_run`` +
``ActiveLoop``), each in ``<out>/<strategy>[-<mode>]-seed<seed>``.  Re-running the same sweep skips
finished runs without opening their data and resumes an interrupted one from its last atomic step,
so a sweep killed at any moment is continued by running it again.

A strategy may carry a mode, ``vaal:paper``: strategy ``vaal`` with ``strategy_params.mode: paper``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segal.config import load_recipe, plan_budgets
from segal.errors import UserError
from segal.pool import PoolState
from segal.progress import Progress

_NAME = re.compile(r"^[A-Za-z0-9_.]+(:[A-Za-z0-9_.]+)?$")


def parse_strategy(spec: str) -> tuple[str, str | None]:
    """``"vaal:paper"`` → ``("vaal", "paper")``; ``"entropy"`` → ``("entropy", None)``."""
    spec = spec.strip()
    if not _NAME.match(spec):
        raise UserError(f"bad strategy {spec!r}", fix="write NAME or NAME:MODE, e.g. random,entropy,vaal:paper")
    name, _, mode = spec.partition(":")
    return name, mode or None


def run_name(spec: str, seed: int) -> str:
    name, mode = parse_strategy(spec)
    return f"{name}-{mode}-seed{seed}" if mode else f"{name}-seed{seed}"


def _params(spec: str, recipe_strategy: str, recipe_params: dict[str, Any],
            extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The recipe's params apply only to its own strategy; then per-name, per-spec params, then the mode."""
    name, mode = parse_strategy(spec)
    params = dict(recipe_params) if name == recipe_strategy else {}
    params.update(extra.get(name, {}))
    if spec != name:
        params.update(extra.get(spec, {}))
    if mode is not None:
        params["mode"] = mode
    return params


def is_finished(run_dir: Path, recipe) -> bool:
    """The run reached its last budget and the recipe asks for no more (checked without loading data)."""
    state_path = run_dir / "state.json"
    if not state_path.is_file():
        return False
    if recipe.active.unit == "region":  # budgets in pixels or clicks need the data: a resume checks (quickly)
        return False
    state = PoolState.load(state_path)
    return state.stage == "done" and plan_budgets(recipe.active, state.size, str(run_dir / "recipe.yaml")) == state.budgets


def sweep(recipe_path: str | Path, strategies: list[str], seeds: list[int], out_root: Path, overrides: dict[str, Any],
          progress: Progress | None = None, strategy_params: dict[str, dict[str, Any]] | None = None, *,
          target: float = 0.95, console=None, sets: dict[str, Any] | None = None, jobs: int = 1,
          threads: int | None = None, write_report: bool = True, donors: Sequence[Path] = ()) -> list[Path]:
    """Run (or resume) every strategy × seed, then write the report to ``out_root/report`` (unless not
    ``write_report``: a caller that reports over several sweeps); return the run dirs.

    ``sets`` are ``--set`` overrides; ``active.strategy_params.KEY`` ones go to every strategy of the
    sweep that has parameter ``KEY`` (``--set active.strategy_params.steps=100`` sizes VAAL only).
    ``jobs > 1`` runs that many runs side by side in child processes, the threads divided between them.
    ``donors``: runs outside this sweep whose cycle-0 network its runs may copy (segal.shared_start checks).
    """
    from segal.loop import ActiveLoop
    from segal.report import report
    from segal.runs import start_run
    from segal.strategies import REGION_STRATEGIES, STRATEGIES, check_strategy_params, make_region_strategy

    progress = progress or Progress()
    if not strategies or not seeds:
        raise UserError("a sweep needs at least one strategy and one seed", fix="e.g. --strategies random,entropy --seeds 0,1,2")
    if len(set(strategies)) != len(strategies) or len(set(seeds)) != len(seeds):
        raise UserError("repeated strategy or seed in the sweep", fix="list each strategy and seed once")
    for spec in strategies:
        parse_strategy(spec)
    out_root = Path(out_root)
    sets = dict(sets or {})
    if "active.strategy" in sets or "active.strategy_params" in sets:
        raise UserError("a sweep takes its strategies from --strategies", path="--set",
                        fix="drop --set active.strategy; set parameters one by one: --set active.strategy_params.KEY=VALUE")
    prefix = "active.strategy_params."
    param_sets = {k[len(prefix):]: sets.pop(k) for k in list(sets) if k.startswith(prefix)}
    unused = set(param_sets)
    base = load_recipe(recipe_path, overrides, sets)
    if base.active.oracle != "simulated":
        raise UserError("a sweep needs the simulated oracle", path=recipe_path, fix="set active.oracle: simulated")
    plan = []
    for spec in strategies:  # build and check every recipe before any training starts
        name, _ = parse_strategy(spec)
        params = _params(spec, base.active.strategy, base.active.strategy_params, strategy_params or {})
        region = base.active.unit == "region"  # region strategies have their own registry (class_balanced)
        accepted = {f.name for f in dataclasses.fields((REGION_STRATEGIES if region else STRATEGIES).get(name).Params)}
        for key, value in param_sets.items():
            if key in accepted:
                params[key] = value
                unused.discard(key)
        for seed in seeds:
            run_dir = out_root / run_name(spec, seed)
            recipe = load_recipe(recipe_path, {**overrides, "seed": seed, "output_dir": str(run_dir),
                                               "active.strategy": name, "active.strategy_params": params}, sets)
            if region:
                make_region_strategy(name, recipe.active.strategy_params, str(recipe_path))  # bad params fail here,
            else:
                check_strategy_params(name, recipe.active.strategy_params, str(recipe_path),  # not mid-sweep
                                      {prefix + k: v for k, v in param_sets.items()})
            plan.append((spec, seed, recipe))
    if unused:
        key = sorted(unused)[0]
        raise UserError(f"no strategy of this sweep has a parameter {key!r}", path=f"--set {prefix}{key}",
                        fix="check the name (see docs/vaal.md for VAAL's), or drop the --set")
    if jobs > 1:
        run_dirs = _sweep_parallel(plan, str(recipe_path), jobs, threads, progress, donors)
        if write_report:
            report(run_dirs, out_root / "report", console=console, target=target)
        return run_dirs
    run_dirs = []
    for k, (spec, seed, recipe) in enumerate(plan, 1):
        run = start_run(recipe, str(recipe_path))  # refuses a directory that holds another experiment
        run_dirs.append(run.dir)
        fields = {"index": k, "total": len(plan), "strategy": spec, "seed": seed, "dir": str(run.dir)}
        if is_finished(run.dir, recipe):
            progress.log("sweep_skip", **fields)
            continue
        progress.log("sweep_run", **fields)
        ActiveLoop(run, progress, initial_donors=[*_same_seed(plan, seed, recipe), *donors]).run_loop()
    if write_report:
        report(run_dirs, out_root / "report", console=console, target=target)
    return run_dirs


def _same_seed(plan: list, seed: int, recipe) -> list[Path]:
    """The other runs of ``seed`` in the sweep: their cycle-0 network is this run's (segal.shared_start)."""
    return [r.run_dir for _spec, s, r in plan if s == seed and r.run_dir != recipe.run_dir]


def _run_child(recipe, recipe_path: str, threads: int, donors: Sequence[Path] = ()) -> str:
    """One run of a parallel sweep, in its own process with its share of the threads."""
    from segal.loop import ActiveLoop
    from segal.runs import start_run
    from segal.threads import configure_threads

    configure_threads(threads)
    run = start_run(recipe, recipe_path)
    try:
        if not is_finished(run.dir, recipe):
            ActiveLoop(run, Progress(), initial_donors=donors).run_loop()
    finally:
        run.close()
    return str(run.dir)


def _sweep_parallel(plan: list, recipe_path: str, jobs: int, threads: int | None, progress: Progress,
                    donors: Sequence[Path] = ()) -> list[Path]:
    """Run the plan ``jobs`` at a time (spawned processes: no forked OpenMP or loader state)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from segal.runs import start_run
    from segal.threads import choose_threads, usable_cores

    per_job = choose_threads(threads, cores=usable_cores(), env=os.environ, jobs=jobs)
    run_dirs = []
    for _spec, _seed, recipe in plan:  # every directory is checked (and created) before any child starts
        run = start_run(recipe, recipe_path)  # refuses a directory that holds another experiment
        run.close()  # the child takes the lock again
        run_dirs.append(run.dir)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # inherited by the children: idle threads sleep
    with ProcessPoolExecutor(max_workers=min(jobs, len(plan)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {}
        for k, (spec, seed, recipe) in enumerate(plan, 1):
            fields = {"index": k, "total": len(plan), "strategy": spec, "seed": seed, "dir": str(recipe.run_dir)}
            if is_finished(recipe.run_dir, recipe):
                progress.log("sweep_skip", **fields)
                continue
            progress.log("sweep_run", **fields, threads=per_job)
            futures[pool.submit(_run_child, recipe, recipe_path, per_job, [*_same_seed(plan, seed, recipe), *donors])] = fields
        for future in as_completed(futures):
            future.result()  # a child's UserError (or bug) stops the sweep here; finished runs stay finished
            progress.log("sweep_done", **futures[future])
    return run_dirs
