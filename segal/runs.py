"""A run directory: its recipe, pool state, datasets and per-cycle files.

Layout::

    runs/<name>/
      recipe.yaml              the recipe as resolved (defaults filled in)
      state.json               the pool: labeled ids by cycle, pending ids, ids with imported masks, cycle and stage
      .lock                    held (fcntl) by the one command writing the run; empty at rest (segal.runlock)
      log.jsonl                one event per line
      labels/<id>.png          masks imported from annotators (train ids), used instead of the dataset's
      cycles/<k>/task.pt       the task network trained at budget k (weights only)
      cycles/<k>/metrics.json  mIoU / accuracy, per-class scores, labeled count and %, timings
      cycles/<k>/queries.json  the ids chosen after cycle k, their scores and the strategy's diagnostics
      regions/                 region-level runs: the pool's region maps (segal.regions.cache)
      regions-labels-<h>.npy   region-level runs: each region's label status, named by state.json
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from torch import nn

from segal.checkpoint import apply_state_dict, load_checkpoint
from segal.config import Recipe, from_dict, plan_budgets, read_yaml_file, to_dict, validate
from segal.data import DATASETS
from segal.data.base import Dataset, read_label_png
from segal.device import Compute, amp_enabled, resolve_device
from segal.distributed import barrier, is_main, local_device
from segal.errors import UserError
from segal.fileio import atomic_write_bytes, fingerprint, get_dotted
from segal.image_costs import CACHE_FILE as IMAGE_COSTS_FILE
from segal.image_costs import ImageCosts
from segal.models import MODELS
from segal.pool import PoolState
from segal.preflight import check_model
from segal.regions.budget import CostPlan, plan_cost
from segal.regions.cache import RegionCache
from segal.regions.maps import RegionSpec, region_shape
from segal.runlock import RunLock
from segal.strategies import make_region_strategy, make_strategy
from segal.tracking import require_tensorboard

# Keys that define an experiment: a resumed run must agree with its recipe on these.
IDENTITY_KEYS = ("task", "seed", "data.dataset", "data.train_split", "data.image_size", "model.name",
                 "model.encoder", "active.initial", "active.budget", "active.strategy")
# ... and for region-level runs (compared only when either recipe is one: older image runs lack the keys).
# active.oracle too: a region run's training reads imported labels for every region labeled after cycle 0
# (segal.regions.training), so one run cannot switch between annotators and the simulated oracle.
REGION_IDENTITY_KEYS = ("active.unit", "active.cost", "active.oracle", "regions")


@dataclass
class Run:
    """Everything the loop and the ``export``/``import``/``evaluate`` commands share about one run."""

    dir: Path
    recipe: Recipe
    source: str | None = None  # the user's recipe file, named in errors (default: the stored copy)
    lock: RunLock | None = field(default=None, repr=False)  # held by a command that changes the run
    _pool: Dataset | None = field(default=None, repr=False)
    _test: Dataset | None = field(default=None, repr=False)
    _regions: RegionCache | None = field(default=None, repr=False)
    _clicks: np.ndarray | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ files
    def take_lock(self) -> None:
        """Become the run's one writer, or stop with the PID of the process that is (see segal.runlock)."""
        if is_main() and (self.lock is None or not self.lock.held):
            self.lock = RunLock(self.dir).acquire()

    def close(self) -> None:
        """Release the run's lock (the kernel does it too if the process dies)."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def labels_dir(self) -> Path:
        return self.dir / "labels"

    def cycle_dir(self, cycle: int) -> Path:
        return self.dir / "cycles" / str(cycle)

    def log(self, event: str, **fields: Any) -> None:
        if not is_main():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {"time": round(time.time(), 3), "event": event, **fields}
        with open(self.dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record, default=str) + "\n")

    # ------------------------------------------------------------------ data and models
    @property
    def device(self) -> torch.device:
        return local_device(resolve_device(self.recipe.device))

    @property
    def amp(self) -> bool:
        return amp_enabled(self.recipe.train.amp, self.device)

    @property
    def compute(self) -> Compute:
        """The recipe's device, AMP, image size, inference batch and workers, for every stage."""
        t = self.recipe.train
        return Compute(device=self.device, image_size=self.recipe.data.image_size, amp=self.amp,
                       batch_size=t.eval_batch_size, num_workers=t.num_workers)

    def _build_dataset(self, split: str) -> Dataset:
        d = self.recipe.data
        if d.root is not None and not Path(d.root).expanduser().exists():
            raise UserError("data root not found (a relative data.root in a recipe is read from the recipe "
                            "file's folder, a --data-root from the current folder)", path=d.root,
                            fix="pass --data-root PATH, or set data.root in the recipe (absolute, or relative to it)")
        builder = DATASETS.get(d.dataset)
        try:
            return builder(d.root and str(Path(d.root).expanduser()), split, **d.options)
        except TypeError as exc:
            raise UserError(f"bad data.options for dataset {d.dataset!r}: {exc}", fix="see datasets/*.md") from None

    @property
    def pool(self) -> Dataset:
        if self._pool is None:
            self._pool = self._build_dataset(self.recipe.data.train_split)
            if len(self._pool) == 0:
                raise UserError(f"the {self.recipe.data.train_split!r} split is empty", path=self.recipe.data.root,
                                fix="check data.root and data.train_split")
        return self._pool

    @property
    def test(self) -> Dataset:
        if self._test is None:
            self._test = self._build_dataset(self.recipe.data.test_split)
        return self._test

    @property
    def num_classes(self) -> int:
        """From the pool, or from the test split when only that is open: `segal evaluate` needs no train split."""
        return len((self._pool if self._pool is not None else self.test).classes)

    def build_model(self, seed: int) -> nn.Module:
        m = self.recipe.model
        torch.manual_seed(seed)
        return MODELS.get(m.name)(self.num_classes, encoder=m.encoder, weights=m.weights, **m.options)

    def load_task_model(self, cycle: int) -> nn.Module:
        path = self.cycle_dir(cycle) / "task.pt"
        if not path.exists():
            raise UserError(f"no trained task network for cycle {cycle}", path=path,
                            fix="run `segal acquire` on the run to train it (again, if it was deleted); earlier "
                                "cycles' networks are kept only with train.keep_checkpoints: true")
        model = self.build_model(0)
        apply_state_dict(model, load_checkpoint(path), path)
        return model

    # ------------------------------------------------------------------ regions (active.unit: region)
    @property
    def region_spec(self) -> RegionSpec:
        r = self.recipe.regions
        if r is None:
            raise ValueError("an image-level run has no regions")
        return RegionSpec(method=r.method, segments=r.segments, compactness=r.compactness, patch=r.patch,
                          resolution=None if r.resolution is None else (int(r.resolution[0]), int(r.resolution[1])))

    @property
    def region_oracle(self) -> Literal["precise", "dominant"]:
        """How the simulated oracle labels a region (``regions.oracle``)."""
        if self.recipe.regions is None:
            raise ValueError("an image-level run has no regions")
        return self.recipe.regions.oracle

    def region_cache(self, progress: Any = None) -> RegionCache:
        """The pool's region maps under ``regions/``: built (or resumed) by rank 0, then opened by every rank."""
        if self._regions is None:
            directory = self.dir / "regions"
            if is_main():
                RegionCache.build(self.pool, self.region_spec, directory, progress)
            barrier()
            self._regions = RegionCache.open(directory)
        return self._regions

    def region_clicks(self, progress: Any = None) -> np.ndarray:
        """Clicks of labeling each region with the run's simulated oracle (segal.regions.training)."""
        if self._clicks is None:
            from segal.regions.click_cache import cached_precise_clicks
            from segal.regions.training import region_clicks

            cache = self.region_cache(progress)
            self._clicks = (cached_precise_clicks(self.pool, cache, progress) if self.region_oracle == "precise"
                            else region_clicks(self.pool, cache, self.region_oracle, progress))
        return self._clicks

    @property
    def plan_needs_regions(self) -> bool:
        """Whether :meth:`region_plan` builds the region maps: a click budget counts the whole pool's clicks."""
        return self.recipe.active.unit == "region" and self.recipe.active.cost == "clicks"

    def region_plan(self) -> CostPlan:
        """How a region run spends (segal.regions.budget.plan_cost): pixels count at the regions' resolution.

        A pixel budget needs only the maps' shape; a click budget counts the clicks of the whole pool,
        which needs the region maps (built here if they are not yet: :func:`start_run` calls it only
        once it holds the run's lock, see :attr:`plan_needs_regions`)."""
        a, pool = self.recipe.active, self.pool
        initial_cost = None
        if a.cost == "clicks":
            total = int(self.region_clicks().sum())
            if self.region_oracle == "precise" and a.cycles is None and a.final is not None:
                # the ledger charges the initial images their whole-image clicks (segal.image_costs), not the
                # sum of their regions' (on CamVid 44,000 against 272,358 for 37 images): plan with the
                # pool's mean whole-image clicks (counted once, cached with the run), or the run stops short
                whole = ImageCosts(pool, self.dir / "cache").block(np.arange(len(pool)))["clicks"]
                n = a.initial if isinstance(a.initial, int) else round(a.initial * len(pool))
                initial_cost = whole * n / len(pool)
        else:
            h, w = region_shape(self.region_spec, pool.load_image(0).shape)
            total = len(pool) * h * w
        return plan_cost(a, len(pool), total, self.source or str(self.dir / "recipe.yaml"), initial_cost)

    # ------------------------------------------------------------------ state
    def new_state(self) -> PoolState:
        pool = self.pool
        if self.recipe.active.unit == "region":  # budgets[k]: the cost units acquired by regions up to cycle k
            plan = self.region_plan()
            budgets = [k * plan.per_cycle for k in range(plan.cycles + 1)]
        else:
            budgets = plan_budgets(self.recipe.active, len(pool), self.source or str(self.dir / "recipe.yaml"))
        return PoolState(size=len(pool), budgets=budgets, seed=self.recipe.seed, pool_fingerprint=fingerprint(pool.ids))

    def load_state(self) -> PoolState:
        state = PoolState.load(self.state_path)
        pool = self.pool
        if state.size != len(pool) or state.pool_fingerprint != fingerprint(pool.ids):
            raise UserError(
                f"the pool changed since this run started ({state.size} → {len(pool)} images or other ids)",
                path=self.state_path, fix="restore the dataset, or start a new run with --output-dir",
            )
        return state

    def save_state(self, state: PoolState) -> None:
        state.save(self.state_path)

    def override_masks(self, state: PoolState | None = None) -> dict[str, Path]:
        """Masks imported from annotators, by image id.

        With ``state``, every image the state records as imported must still have its file: a lost
        ``labels/`` folder is an error, never a silent fall-back to the dataset's own masks.
        """
        found = {p.stem: p for p in self.labels_dir.glob("*.png")} if self.labels_dir.is_dir() else {}
        for index in state.human if state is not None else ():
            image_id = self.pool.image_id(index)
            if image_id not in found:
                raise UserError(f"the imported mask of {image_id} is missing", path=self.labels_dir / f"{image_id}.png",
                                fix="restore the run's labels/ folder from a backup (segal will not train "
                                    "on the dataset's own mask instead)")
        return found


def remove_crash_leftovers(run_dir: Path) -> None:
    """Delete the temp files and import staging folders that a killed process left behind.

    They are never read (a temp file only counts once renamed), so this is tidiness; it runs when a
    run is resumed, as one run directory has one writer at a time.
    """
    import shutil

    for path in run_dir.rglob(".*.tmp"):
        path.unlink(missing_ok=True)
    for path in run_dir.glob(".import-*"):
        shutil.rmtree(path, ignore_errors=True)


def write_recipe(run_dir: Path, recipe: Recipe) -> None:
    atomic_write_bytes(run_dir / "recipe.yaml", yaml.safe_dump(to_dict(recipe), sort_keys=False).encode())


def acquire_target(target: str | Path) -> tuple[Path, Path | None]:
    """What ``segal acquire TARGET`` reads: ``(recipe file, None)``, or for a run directory its own
    ``recipe.yaml`` and the directory, so that a run continues (after ``segal import``, say) without
    repeating the flags of the command that started it: they are in that copy."""
    target = Path(target)
    if not target.is_dir():
        return target, None
    if not (target / "recipe.yaml").is_file() or not (target / "state.json").is_file():  # a user's recipe.yaml
        what = "no recipe.yaml" if not (target / "recipe.yaml").is_file() else "no state.json"  # is not a run
        raise UserError(f"is a folder, neither a recipe file nor a segal run directory ({what})", path=target,
                        fix="pass the recipe YAML file itself (e.g. recipes/demo.yaml), or a run directory "
                            "`segal acquire` wrote")
    return target / "recipe.yaml", target


def open_run(run_dir: Path | str) -> Run:
    """Open an existing run directory (for export, import, evaluate, report)."""
    run_dir = Path(run_dir)
    path = run_dir / "recipe.yaml"
    if not path.is_file():
        raise UserError("not a segal run directory (no recipe.yaml)", path=run_dir, fix="pass the output dir of `segal acquire`")
    data = read_yaml_file(path, "run's recipe") or {}  # hand-edited or damaged: one clear line
    recipe = from_dict(Recipe, data, str(path))
    validate(recipe, str(path))
    return Run(run_dir, recipe)


def _check_model_fits(run: Run, source: str) -> None:
    """:func:`~segal.preflight.check_model` for a run whose pool is open: with no ``data.image_size``
    the network sees the images at their own size, so the first image's is checked."""
    recipe = run.recipe
    size: Sequence[int] | None = recipe.data.image_size
    if size is None and recipe.task == "segmentation":
        size = run.pool.load_image(0).shape[:2]
    check_model(recipe, run.num_classes, size, source)


def start_run(recipe: Recipe, recipe_source: str) -> Run:
    """Create the run directory, or reopen it after checking it holds the same experiment."""
    DATASETS.get(recipe.data.dataset)  # fail on unknown names before anything is written
    MODELS.get(recipe.model.name)
    if recipe.active.unit == "region":  # a region strategy may have no image-level variant (class_balanced)
        check_region_run(recipe, recipe_source)  # bad params fail here
    else:
        make_strategy(recipe.active.strategy, recipe.active.strategy_params, recipe_source)  # bad params fail here
    if recipe.log.tensorboard:
        require_tensorboard(recipe_source)
    run_dir = recipe.run_dir
    stored = run_dir / "recipe.yaml"
    run = Run(run_dir, recipe, source=recipe_source)
    if stored.exists():
        old = read_yaml_file(stored, "run's recipe") or {}
        new = to_dict(recipe)
        old_test = get_dotted(old, "data.test_split")
        if old_test is not None and old_test != recipe.data.test_split and any(run_dir.glob("cycles/*/metrics.json")):
            raise UserError(  # one learning curve must be measured on one test set
                f"this run is evaluated on split {old_test!r}; changing data.test_split to "
                f"{recipe.data.test_split!r} would mix two test sets in one learning curve", path=recipe_source,
                fix=f"set data.test_split back to {old_test!r} to continue; score another split with "
                    f"`segal evaluate {run_dir} --split {recipe.data.test_split}`")
        keys = IDENTITY_KEYS + (REGION_IDENTITY_KEYS if "region" in (get_dotted(old, "active.unit"),
                                                                    recipe.active.unit) else ())
        changed = [k for k in keys if get_dotted(old, k) != get_dotted(new, k)]
        if changed:
            raise UserError(
                f"{run_dir} holds a run of a different experiment ({', '.join(changed)} differ)",
                path=recipe_source, fix=f"to continue that run with its own recipe, run `segal acquire {run_dir}`; "
                                        "to start this experiment, pass --output-dir NEW_DIR",
            )
        if run.state_path.exists():
            PoolState.load(run.state_path)  # a torn or hand-edited state fails before the recipe is rewritten
    elif run.plan_needs_regions:  # a click budget counts the region maps' clicks: planned under the lock, below
        run.pool  # noqa: B018 -- opens the pool: bad data fails before anything is written
        _check_model_fits(run, recipe_source)
    else:
        run.new_state()  # opens the pool and plans the budgets: bad data fails before anything is written
        _check_model_fits(run, recipe_source)  # the network builds and takes the image size, before anything is written
    new_dir, new_regions = not run_dir.exists(), not (run_dir / "regions").exists()
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
    run.take_lock()  # a second writer stops here, before it deletes or rewrites anything
    try:
        if stored.exists() and is_main():
            remove_crash_leftovers(run_dir)  # only the lock holder may: they could be a live writer's files
        elif run.plan_needs_regions:
            _plan_under_lock(run, new_dir, new_regions)
        write_recipe(run_dir, recipe)
    except BaseException:
        run.close()
        raise
    return run


def _plan_under_lock(run: Run, new_dir: bool, new_regions: bool) -> None:
    """Plan a new click-budget run: build its region maps (only the lock holder may write them) and check
    the budget against the pool's clicks.  A refused plan removes what this call wrote, the region maps
    (and a precise plan's whole-image click counts) while the lock is held, then the folder (and its lock file) if ``start_run`` created it: a refused
    run leaves the folder as it found it.  A kill here leaves a resumable region cache (only a cache)."""
    import shutil

    from segal.runlock import LOCK_NAME

    costs = run.dir / "cache" / IMAGE_COSTS_FILE  # the whole-image clicks a precise plan counts (region_plan)
    new_costs, new_cache = not costs.exists(), not costs.parent.exists()
    try:
        run.new_state()
    except UserError:
        if is_main():
            if new_regions:
                shutil.rmtree(run.dir / "regions", ignore_errors=True)
            if new_costs:
                costs.unlink(missing_ok=True)
            if new_cache:
                with contextlib.suppress(OSError):  # not empty: another process has written since
                    costs.parent.rmdir()
            if new_dir:
                run.close()
                (run.dir / LOCK_NAME).unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # not empty: another process has written since
                    run.dir.rmdir()
        raise


def check_region_run(recipe: Recipe, source: str) -> None:
    """What a region-level run cannot do yet, refused before anything is written."""
    a = recipe.active
    if a.label_noise > 0:
        raise UserError("active.label_noise corrupts whole images, so it has no meaning in a region-level run",
                        path=source, fix="set active.label_noise: 0; regions.oracle: dominant measures the noise "
                                         "of one-click region labels instead")
    make_region_strategy(a.strategy, a.strategy_params, source)


def load_override_mask(path: Path) -> np.ndarray:
    return read_label_png(path)


__all__ = ["Run", "acquire_target", "open_run", "start_run", "write_recipe"]
