"""Run results: load run directories and compute every statistic the report shows.

Runs are grouped by strategy (``vaal`` and ``vaal (paper)`` stay apart when
``active.strategy_params.mode`` differs from the strategy's default mode; when any run is region-level
every label also names its unit and a dominant oracle: ``random (images)``, ``entropy (regions)``,
``random (regions, dominant)``).  Runs of one such label whose other strategy parameters differ (a
sweep over VAAL's ``diversity_factor``, say) are told apart by the parameters that differ among them, a
missing one read as the strategy's default: ``vaal (diversity_factor=0)`` and ``vaal (diversity_factor=4)``.
Where two runs of one label still share a seed, the ``train`` settings that differ among that label's runs
name them too (``random (regions, train.warm_epochs=180)``): one seed is never averaged with itself.

Axes (``segal report --x``): ``fraction`` (labeled images, a share of the pool; a region run's images
touched), ``pixels`` (``cost.pixel_share``: labeled pixels, a share of the pool's pixels) or ``clicks``
(``cost.clicks``), from the ``cost`` block of each cycle's metrics.json (region runs:
:class:`segal.regions.budget.CostLedger`; image runs: :mod:`segal.image_costs`, by the same rules).
The default is ``pixels`` when any run is region-level, else ``fraction``; a run from before the
cost records has ``fraction`` only.

- image runs on ``fraction`` share their budgets: they are aligned by labeled fraction rounded to 4
  decimals, so seeds of one protocol land on the same budgets even when pool sizes differ by rounding.
- on any other axis runs do not share x values, so each run's curve is **interpolated linearly** at a
  common grid, with **no extrapolation** (a grid point below a run's first cycle or past its last has
  no value for that run, and a strategy's mean there is over the seeds that have one, ``n``).  The
  grid: every strategy's per-cycle mean x (over its seeds), pooled and sorted; points within a quarter
  of a cycle step of the first point of a group are one grid point, the group's smallest (so it lies
  within the range of every strategy that has a point there, the last budget included), moved into the
  range of every *run* of those strategies where it lies outside one (on clicks, seeds' cycle 0 costs
  differ: a mean-of-seeds point below one seed's first cycle would leave that seed out), the step being
  each strategy's own median cycle step (the smaller of the two), and no group holding two points of one
  strategy: on clicks, a dominant run's cheap cycles (a click a region) each keep their grid point.
  Every statistic below is then taken at the grid points ("budgets"); per-class scores stay at each
  strategy's own cycles (their mean x).

The baseline of the gains and paired statistics is image-level ``random`` (``random`` when all runs
are image-level), else region-level ``random`` (precise oracle first); none without a random run.

Statistics (every number is also in ``summary.json``, metrics as fractions in [0, 1]):

- mean ± std over seeds at each budget; std is the sample std (ddof=1) when two or more seeds reach
  that budget and 0 with a single seed (there is no spread to estimate).
- area under the learning curve: trapezoid rule over the labeled fraction divided by the fraction
  range, i.e. the curve's average height, comparable to the metric itself.  It is taken over the
  budgets that every strategy reached, so strategies are compared on the same range (a run that is
  still going does not shorten or lengthen another's).  With a single common budget it is the value
  there.  ``auc`` uses the mean curve; ``auc_std`` is the spread of the per-seed areas (``None`` when
  fewer than two seeds span the range).  When no budget is common to every strategy (a dominant run's
  clicks end before the others' begin), each AUC is over its own range and each paired AUC gain over
  the budgets the strategy shares with the baseline, with a warning.
- fraction to target: the smallest labeled fraction at which a strategy's mean reaches
  ``target`` × the best final mean over strategies (final = the strategy's last budget), ``None``
  if it never does.
- gain over random (the baseline): strategy mean − random mean at each budget both reached (metric points).
- paired gain over random (the baseline): runs of two strategies with the same seed share the initial labeled set
  and the network initialisation (both derive from the seed; a region run starts from the same whole
  images as an image run), so each seed gives one paired difference (strategy − random) at every
  budget both runs reached (on a cost axis: both interpolated there), and one of their areas (over the
  common budgets).  Reported: the mean over seeds with a two-sided 95% Student t-interval,
  mean ± t(0.975, n−1) · sd / √n (sd with ddof=1; no interval with one seed).  A gain is marked
  ``real`` only when its interval excludes zero.  A pair whose state.json cycle-0 labeled set or
  pool fingerprint differ is left out with a warning (``summary["warnings"]``); a pair that cannot be
  checked (no state.json) is kept with a warning.  A kept pair whose cycle-0 scores differ (the runs of a
  seed share their cycle-0 network, segal.shared_start, unless they ran in different numeric environments:
  segal.environment) is named in ``summary["environment_notes"]``: its gains include that noise.  A
  dominant-oracle region run is not named: its cycle 0 trains on its regions' majority classes, by design.
- acquisitions by group: per cycle, the share of the acquired images in each recording sequence or
  group (CamVid sequence, Cityscapes city), the mean over seeds.
- adjacent picks (image runs of pools with groups): per cycle, the share of the acquired images whose
  neighbour in the pool's order within their group (the image just before or after it: for CamVid's
  name-sorted frames, the frame 1 s earlier or later) was acquired in the same batch, the mean over
  seeds; per strategy, the mean over every acquisition of every seed, and each seed's mean.  Such
  picks are near-duplicates, so a high share is labels spent twice on one scene; a top-b rule over a
  smooth score (VAAL, entropy) picks runs of frames, random about 2b/unlabeled.
- per-class scores: mean ± sample std over the seeds that scored the class (absent classes skipped).
- discriminator AUROC (VAAL) per cycle: mean ± sample std over seeds, and a 95% Student t-interval
  over them (clipped to [0, 1]) with two or more seeds; each seed's own interval is kept too.
- budgets: each labeled fraction with its mean labeled count; settings: the recipe keys with their
  value (one when all runs agree, else per strategy); ``segal_versions``: from each metrics.json.
- labels the baseline needs (label savings): for each budget x of a strategy with mean m, the smallest x'
  at which the baseline's mean curve, linearly interpolated between its budgets, first reaches m; the
  strategy uses ``x / x'`` of the baseline's labels there (below 1: it saves labels).  Where the
  baseline never reaches m within its budgets, x' is more than its last budget and the ratio a bound
  (``bound: "more"``); where the baseline's first budget already reaches m, x' is at most that budget
  (``bound: "at_most"``).  Mean curves, not per seed: one seed's curve rarely reaches another's value.
- ceiling: a run whose cycle 0 is trained on the whole pool (``segal acquire --ceiling``) is not a
  strategy; its mean over seeds is the ceiling.  Each strategy's final mean is given as a fraction
  of it, and the smallest budget on the axis (labeled fraction, pixels or clicks) whose mean reaches
  90% and 95% of it (``None`` if never), with what the baseline needs for the strategy's result there
  (``at_ceiling``: the label savings above, at that budget).

In ``summary.json`` a point's ``fraction`` is its x on the report's axis (``summary["axis"]``): a share
of the pool on ``fraction`` and ``pixels``, a count on ``clicks``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from segal.compute_time import compute_summary
from segal.errors import UserError
from segal.fileio import get_dotted, read_json

RANDOM = "random"
CEILING_SHARES = (0.9, 0.95)  # shares of the ceiling whose labeled fraction is reported
RERUN = "re-run that cycle or delete the file"  # the fix for a corrupt metrics or queries file


@dataclass
class RunData:
    """What the report needs from one run directory."""

    dir: Path
    recipe: dict[str, Any]
    metrics: list[dict[str, Any]]  # one per finished cycle, by cycle
    queries: dict[int, dict[str, Any]] = field(default_factory=dict)  # cycle -> queries.json
    initial: tuple[int, ...] | None = None  # state.json's cycle-0 labeled indices (None: no state.json)
    pool_fingerprint: str | None = None

    @property
    def is_ceiling(self) -> bool:
        """Cycle 0 trained on the whole pool: the reference every strategy is measured against."""
        return float(self.metrics[0]["fraction"]) >= 1.0 - 1e-9

    @property
    def strategy(self) -> str:
        return str(self.metrics[0].get("strategy") or get_dotted(self.recipe, "active.strategy") or "?")

    @property
    def mode(self) -> str | None:
        """The strategy's ``mode`` parameter, ``None`` when unset or equal to the strategy's default."""
        params = get_dotted(self.recipe, "active.strategy_params") or {}
        mode = params.get("mode") if isinstance(params, dict) else None
        return None if mode is None or mode == _default_mode(self.strategy) else str(mode)

    @property
    def unit(self) -> str:
        """What the run acquired: ``image`` or ``region`` (``active.unit``; runs before it existed: image)."""
        return str(self.metrics[0].get("unit") or get_dotted(self.recipe, "active.unit") or "image")

    @property
    def oracle(self) -> str | None:
        """A region run's simulated oracle (``precise`` or ``dominant``); ``None`` for an image run."""
        if self.unit != "region":
            return None
        return str(self.metrics[0].get("oracle") or get_dotted(self.recipe, "regions.oracle") or "precise")

    def name(self, units: bool = False) -> str:
        """The strategy label of the report: the strategy, its non-default mode, and with ``units`` (a report
        holding region runs) its unit and a dominant oracle: ``vaal (paper)``, ``random (regions, dominant)``."""
        parts = [] if self.mode is None else [self.mode]
        if units:
            parts.append("regions" if self.unit == "region" else "images")
            if self.oracle == "dominant":
                parts.append("dominant")
        return self.strategy if not parts else f"{self.strategy} ({', '.join(parts)})"

    @property
    def label(self) -> str:
        return self.name()

    def x(self, metrics: dict[str, Any], axis: str) -> float:
        """Where one cycle's ``metrics`` lie on ``axis`` (module docstring, "Axes")."""
        cost: dict[str, Any] = metrics.get("cost") or {}
        if axis == "fraction":
            if self.unit == "image":
                return float(metrics["fraction"])
            return float(cost["images_touched"]) / float(metrics["pool"])  # a region run's "fraction" is its pixels
        return float(cost["pixel_share"] if axis == "pixels" else cost["clicks"])

    def lacks(self, axis: str) -> str | None:
        """Why the run cannot be placed on ``axis`` (``None`` when it can)."""
        if axis == "fraction":
            return None if self.unit == "image" or all(
                isinstance(m.get("cost"), dict) and "images_touched" in m["cost"] and m.get("pool")
                for m in self.metrics) else "its metrics.json lack the images touched"
        field = "pixel_share" if axis == "pixels" else "clicks"
        if all(isinstance(m.get("cost"), dict) and field in m["cost"] for m in self.metrics):
            return None
        if axis == "pixels" and "accuracy" in self.metrics[0]:
            return "it is a classification run (its labels have no pixels)"
        return "its metrics.json predate the cost records (no 'cost')"

    @property
    def seed(self) -> int | None:
        return self.metrics[0].get("seed", get_dotted(self.recipe, "seed"))


@functools.cache
def _param_defaults(strategy: str) -> dict[str, Any]:
    """The defaults of the strategy's ``Params`` ({} for an unknown or since-removed strategy)."""
    try:
        from segal.strategies import STRATEGIES

        fields = dataclasses.fields(STRATEGIES.get(strategy).Params)
    except Exception:
        return {}
    return {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}


def _default_mode(strategy: str) -> Any:
    """Default of the strategy's ``Params.mode`` (so ``vaal`` and ``vaal:fixed`` are one group)."""
    return _param_defaults(strategy).get("mode")  # an unknown strategy: keep whatever mode the recipe names


def run_labels(runs: list[RunData], units: bool = False) -> list[str]:
    """Each run's label in the report: :meth:`RunData.name`, and where runs of one name differ in other
    strategy parameters, those parameters (``vaal (diversity_factor=4)``; module docstring)."""
    names = [r.name(units) for r in runs]
    params = []
    for r in runs:
        given = get_dotted(r.recipe, "active.strategy_params")
        params.append({**_param_defaults(r.strategy), **(given if isinstance(given, dict) else {})})
    labels = list(names)
    for name in set(names):
        members = [k for k, n in enumerate(names) if n == name]
        keys = sorted({key for k in members for key in params[k]} - {"mode"})
        varying = [key for key in keys
                   if len({json.dumps(params[k].get(key), sort_keys=True, default=str) for k in members}) > 1]
        for k in members if varying else []:
            extra = ", ".join(f"{key}={params[k].get(key)}" for key in varying)
            labels[k] = f"{name[:-1]}, {extra})" if name.endswith(")") else f"{name} ({extra})"
    return _split_by_training(runs, labels)


def _split_by_training(runs: list[RunData], labels: list[str]) -> list[str]:
    """Where two runs of one label have one seed (the same runs trained longer, say: region runs at
    ``train.warm_epochs`` 30 and 180), the ``train`` settings that differ among that label's runs join it
    (``random (regions, train.warm_epochs=180)``), so that they are two curves, not one mean over a
    seed counted twice.  Labels without such a clash are left alone."""
    out = list(labels)
    for label in set(labels):
        members = [k for k, n in enumerate(labels) if n == label]
        seeds = [runs[k].seed for k in members]
        if len(set(map(str, seeds))) == len(seeds):
            continue
        train = [get_dotted(runs[k].recipe, "train") for k in members]
        train = [t if isinstance(t, dict) else {} for t in train]
        keys = sorted({key for t in train for key in t})
        varying = [key for key in keys if len({json.dumps(t.get(key), sort_keys=True, default=str) for t in train}) > 1]
        for k, t in zip(members, train, strict=True) if varying else []:
            extra = ", ".join(f"train.{key}={t.get(key)}" for key in varying)
            out[k] = f"{label[:-1]}, {extra})" if label.endswith(")") else f"{label} ({extra})"
    return out


def _repeated_seeds(groups: dict[str, list[RunData]]) -> list[str]:
    """A warning for each seed that two runs of one curve (or of the ceiling) share with nothing in their
    labels to tell them apart (a run and its copy; ceilings of two schedules): the mean and std then count
    that seed twice, which the reader must know."""
    out = []
    for label, members in groups.items():
        by_seed: dict[str, list[RunData]] = {}
        for r in members:
            by_seed.setdefault(str(r.seed), []).append(r)
        for seed, same in by_seed.items():
            if len(same) > 1:
                out.append(f"{label} seed {seed}: {len(same)} runs ({', '.join(str(r.dir) for r in same)}) are "
                           "averaged as if they were different seeds; pass one of them")
    return out


# ---------------------------------------------------------------------------- loading

def is_run_dir(path: Path) -> bool:
    return (path / "recipe.yaml").is_file() and (path / "cycles").is_dir()


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories among ``paths``; a directory that is not a run is searched for runs below it."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise UserError("no such run directory", path=path, fix="pass the output dir of `segal acquire`")
        if is_run_dir(path):
            found.append(path)
            continue
        below = sorted(p.parent for p in path.rglob("recipe.yaml") if is_run_dir(p.parent)) if path.is_dir() else []
        if not below:
            raise UserError("not a run directory and holds none (no recipe.yaml with cycles/)", path=path,
                            fix="pass run directories written by `segal acquire` or `segal sweep`")
        found.extend(below)
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    if not unique:
        raise UserError("no run directories given", fix="pass one or more run directories")
    return list(unique.values())


def load_run(run_dir: Path) -> RunData:
    recipe_path = run_dir / "recipe.yaml"
    try:
        recipe = yaml.safe_load(recipe_path.read_text()) or {}
    except yaml.YAMLError:
        raise UserError("malformed recipe.yaml", path=recipe_path, fix="restore the run's resolved recipe") from None
    cycle_dirs = sorted((p for p in (run_dir / "cycles").iterdir() if p.is_dir() and p.name.isdigit()),
                        key=lambda p: int(p.name))
    metrics = []
    for d in cycle_dirs:
        if (d / "metrics.json").is_file():
            m = read_json(d / "metrics.json", fix=RERUN)
            if not isinstance(m, dict) or "fraction" not in m or not ("miou" in m or "accuracy" in m):
                raise UserError("metrics.json lacks 'fraction' or 'miou'/'accuracy'", path=d / "metrics.json",
                                fix="re-evaluate the run with `segal evaluate`")
            metrics.append(m)
    if not metrics:
        raise UserError("run has no evaluated cycle (no cycles/*/metrics.json)", path=run_dir,
                        fix="run `segal acquire` until cycle 0 is evaluated, or leave this run out")
    queries = {int(d.name): read_json(d / "queries.json", fix=RERUN) for d in cycle_dirs if (d / "queries.json").is_file()}
    initial, fingerprint = None, None
    if (run_dir / "state.json").is_file():
        state = read_json(run_dir / "state.json", fix="restore the run's state.json (it is written atomically)")
        labeled = state.get("labeled", {}) if isinstance(state, dict) else {}
        if isinstance(labeled, dict) and isinstance(labeled.get("0"), list):
            initial = tuple(sorted(int(i) for i in labeled["0"]))
        fingerprint = state.get("pool_fingerprint") if isinstance(state, dict) else None
    return RunData(run_dir, recipe if isinstance(recipe, dict) else {}, metrics, queries, initial, fingerprint)


# ---------------------------------------------------------------------------- statistics

def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1); std is 0 for a single value."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) >= 2 else 0.0


# Two-sided 95% Student t quantiles t(0.975, df) for df = 1..30 (standard tables; checked against
# scipy.stats.t.ppf in the tests).  scipy is not a dependency, and only this one quantile is needed.
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788,
         2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639,
         2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)
_Z975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """t(0.975, df): the table for df ≤ 30, beyond it the Cornish–Fisher expansion (error < 1e-5)."""
    if df < 1:
        raise ValueError(f"a t quantile needs df ≥ 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def mean_ci(values: list[float]) -> dict[str, Any]:
    """Mean with its two-sided 95% t-interval over ``values`` (one per seed); ``ci`` is ``None`` for a
    single value, and ``real`` says whether the interval excludes zero."""
    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    if len(a) < 2:
        return {"n": len(a), "mean": mean, "ci": None, "real": False}
    half = t_quantile_975(len(a) - 1) * float(a.std(ddof=1)) / math.sqrt(len(a))
    lo, hi = mean - half, mean + half
    return {"n": len(a), "mean": mean, "ci": [lo, hi], "real": bool(lo > 0 or hi < 0)}


def normalised_auc(x: list[float], y: list[float]) -> float:
    """Trapezoid area under y(x) divided by the x range: the curve's mean height."""
    if len(x) == 1:
        return float(y[0])
    xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.sum((xa[1:] - xa[:-1]) * (ya[1:] + ya[:-1]) / 2) / (xa[-1] - xa[0]))


def _key(fraction: float) -> float:
    return round(float(fraction), 4)


def _metric_name(runs: list[RunData]) -> str:
    names = {"miou" if "miou" in m else "accuracy" for r in runs for m in r.metrics}
    if len(names) > 1:
        raise UserError("runs mix segmentation (mIoU) and classification (accuracy)",
                        fix="report segmentation and classification runs separately")
    return names.pop()


def _per_class(metrics: dict[str, Any]) -> dict[str, float | None]:
    return metrics.get("per_class_iou") or metrics.get("per_class_accuracy") or {}


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(present)) if present else None


AXES = ("fraction", "pixels", "clicks")  # the x axes of a report (module docstring, "Axes")
AXIS_LABELS = {"fraction": "labeled images (% of pool)", "pixels": "labeled pixels (% of the pool's pixels)",
               "clicks": "annotator clicks"}


def choose_axis(runs: list[RunData], axis: str | None = None) -> str:
    """``axis``, or by default ``pixels`` when any run is region-level, else ``fraction``; every run must
    have it recorded (runs from before the cost records report on ``fraction`` only)."""
    if axis is None:
        axis = "pixels" if any(r.unit == "region" for r in runs) else "fraction"
    if axis not in AXES:
        raise UserError(f"unknown report axis {axis!r}", fix=f"use one of {', '.join(AXES)}")
    only_ceilings = all(r.is_ceiling for r in runs)  # then they are the curves (summarize)
    for r in runs:
        if (only_ceilings or not r.is_ceiling) and (why := r.lacks(axis)):
            raise UserError(f"this run cannot be placed on the {axis} axis: {why}", path=r.dir, fix=_axis_fix(r, axis))
    return axis


def _axis_fix(run: RunData, axis: str) -> str:
    if axis == "fraction":
        return "re-run its evaluation with this segal version, or leave it out"
    if run.unit == "image" and "accuracy" not in run.metrics[0]:  # written before image runs recorded costs
        return f"record its costs with `segal costs {run.dir}`, report it with --x fraction, or leave it out"
    return "report it with --x fraction, or leave it out"


class _Points:
    """One run's curve on the report's axis: its cycles' x values (ascending) and scores.

    ``exact`` (image runs on the fraction axis): values are looked up at the budget rounded to 4
    decimals.  Otherwise the curve is interpolated linearly between its cycles and has no value
    outside ``[first x, last x]`` (no extrapolation)."""

    def __init__(self, run: RunData, axis: str, metric: str, exact: bool):
        rows = sorted(((run.x(m, axis), float(m[metric]), m) for m in run.metrics), key=lambda t: t[0])
        self.exact = exact
        self.rows = [m for _, _, m in rows]
        self.x = np.array([x for x, _, _ in rows], dtype=np.float64)
        self.y = np.array([y for _, y, _ in rows], dtype=np.float64)
        self.by_key = {_key(x): y for x, y, _ in rows}
        self.row_by_key = {_key(x): m for x, _, m in rows}
        keep = np.r_[self.x[1:] != self.x[:-1], True]  # equal x (nothing acquired): the later cycle's score
        self._xi, self._yi = self.x[keep], self.y[keep]

    def at(self, x: float) -> float | None:
        if self.exact:
            return self.by_key.get(_key(x))
        slack = 1e-9 * max(1.0, abs(x))  # float noise of a cumulative sum, not an extrapolation
        if x < self._xi[0] - slack or x > self._xi[-1] + slack:
            return None
        return float(np.interp(x, self._xi, self._yi))


def cost_grid(curves: dict[str, list[_Points]]) -> list[float]:
    """The common grid of a cost axis (module docstring, "Axes"): each strategy's cycle-mean x values,
    pooled; a point within a quarter of a cycle step of a group's first point joins the group, whose grid
    point is the smallest (so that it lies within the range of every strategy that has a point there).
    The step is each strategy's own median (the smaller of the two strategies'), and a group holds at most
    one point of a strategy: a strategy whose cycles cost far less than the others' (one click per region
    against a polygon's) keeps every cycle as its own grid point."""
    points: list[tuple[float, float, str]] = []  # x, a quarter of its strategy's median step, strategy
    for label, runs in curves.items():
        cycles = max(len(p.x) for p in runs)
        own = [float(np.mean([p.x[k] for p in runs if k < len(p.x)])) for k in range(cycles)]
        steps = [b - a for a, b in zip(own, own[1:], strict=False) if b > a]
        tol = 0.25 * float(np.median(steps)) if steps else 0.0
        points += [(x, tol, label) for x in own]
    groups: list[tuple[float, set[str]]] = []
    start, start_tol, members = None, 0.0, set()
    for x, tol, label in sorted(points):
        if start is not None and x - start <= min(tol, start_tol) and label not in members:
            members.add(label)
            continue
        members = {label}
        groups.append((x, members))
        start, start_tol = x, tol
    return sorted({_within_every_run(x, [curves[label] for label in members]) for x, members in groups})


def _within_every_run(x: float, member_runs: list[list[_Points]]) -> float:
    """``x`` moved into ``[latest first x, earliest last x]`` of every run of the group's strategies, so that
    each seed has a value there: on clicks the seeds' cycle 0 cost different clicks (other images), and a
    mean-of-seeds point below one seed's first cycle or past one's last would leave that seed out of the
    budget and out of the AUC.  Unchanged when those ranges do not overlap."""
    runs = [p for member in member_runs for p in member]
    lo, hi = max(float(p.x[0]) for p in runs), min(float(p.x[-1]) for p in runs)
    return x if lo > hi else min(max(x, lo), hi)


def summarize(runs: list[RunData], target: float = 0.95, axis: str | None = None) -> dict[str, Any]:
    """Every number of the report, as a JSON-ready dict (see the module docstring for definitions).

    ``axis``: ``fraction``, ``pixels`` or ``clicks`` (default: :func:`choose_axis`)."""
    metric = _metric_name(runs)
    axis = choose_axis(runs, axis)
    units = any(r.unit == "region" for r in runs)
    exact = axis == "fraction" and not units
    ceiling_runs = [r for r in runs if r.is_ceiling]
    if len(ceiling_runs) < len(runs):
        runs = [r for r in runs if not r.is_ceiling]  # only ceilings given: show them as curves of one point
    else:
        ceiling_runs = []
    groups: dict[str, list[RunData]] = {}
    for r, label in zip(runs, run_labels(runs, units), strict=True):
        groups.setdefault(label, []).append(r)
    baseline = _baseline(groups)
    order = sorted(groups, key=lambda label: (label != baseline, label))
    groups = {label: groups[label] for label in order}
    curves = {label: [_Points(r, axis, metric, exact) for r in members] for label, members in groups.items()}
    if exact:
        grid = sorted({_key(x) for points in curves.values() for p in points for x in p.x})
    else:
        grid = cost_grid(curves)

    strategies: dict[str, dict[str, Any]] = {}
    for label, members in groups.items():
        curve = []
        for g in grid:
            found = [(r, p, p.at(g)) for r, p in zip(members, curves[label], strict=True)]
            hits = [(r, p, v) for r, p, v in found if v is not None]
            if not hits:
                continue
            values = [v for _, _, v in hits]
            mean, std = mean_std(values)
            rows = [p.row_by_key[_key(g)] for _, p, _ in hits] if exact else []  # interpolated: no cycle's own
            seconds = [m["train_seconds"] for m in rows if m.get("train_seconds") is not None]
            labeled = [m["labeled"] for m in rows if m.get("labeled") is not None]
            curve.append({
                "fraction": g, "labeled": float(np.mean(labeled)) if labeled else None,
                "mean": mean, "std": std, "n": len(values), "values": values,
                "seeds": [r.seed for r, _, _ in hits],
                "train_seconds": float(np.mean(seconds)) if seconds else None,
            })
        by_x: dict[float, list[dict]] = {}  # per-class scores at the runs' own budgets or cycles (never interpolated)
        for p in curves[label]:
            for k, m in enumerate(p.rows):
                by_x.setdefault(_key(p.x[k]) if exact else k, []).append(m)
        classes = list(dict.fromkeys(name for r in members for m in r.metrics for name in _per_class(m)))
        per_class = [{"fraction": f if exact else _cycle_x(curves[label], int(f)),
                      **_class_stats([_per_class(m) for m in by_x[f]], classes)} for f in sorted(by_x)]
        strategies[label] = {
            "strategy": members[0].strategy, "mode": members[0].mode, "unit": members[0].unit,
            "oracle": members[0].oracle,
            "runs": [str(r.dir) for r in members], "seeds": sorted({r.seed for r in members if r.seed is not None}),
            "curve": curve, "per_class": per_class, "diagnostics": _diagnostics(members, axis, exact),
            "adjacent_share": _adjacent_summary(members),
            "label_noise": _label_noise(members, axis),
        }

    common = sorted(set.intersection(*({p["fraction"] for p in s["curve"]} for s in strategies.values())))
    warnings: list[str] = _repeated_seeds({**groups, "ceiling": ceiling_runs} if ceiling_runs else groups)
    if not common and len(strategies) > 1:
        warnings.append("no budget on this axis is reached by every strategy, so each AUC is over its strategy's own "
                        "range (not comparable across strategies) and each paired AUC gain over the budgets that "
                        "strategy shares with the baseline")
    finals = {label: s["curve"][-1]["mean"] for label, s in strategies.items()}
    best_label = max(finals, key=lambda label: finals[label])
    threshold = target * finals[best_label]
    for label, s in strategies.items():
        points = {p["fraction"]: p for p in s["curve"]}
        span = common or [p["fraction"] for p in s["curve"]]
        s["auc"] = normalised_auc(span, [points[f]["mean"] for f in span])
        per_seed = []
        for p in curves[label]:
            own = [p.at(f) for f in span]
            if all(v is not None for v in own):
                per_seed.append(normalised_auc(span, [float(v) for v in own if v is not None]))
        s["auc_std"] = mean_std(per_seed)[1] if len(per_seed) > 1 else None  # None: fewer than 2 seeds span it
        s["auc_range"] = [span[0], span[-1]]
        s["final"] = {k: s["curve"][-1][k] for k in ("fraction", "mean", "std", "n")}
        s["fraction_to_target"] = next((p["fraction"] for p in s["curve"] if p["mean"] >= threshold), None)
        if baseline is not None and label != baseline:
            rnd = {p["fraction"]: p["mean"] for p in strategies[baseline]["curve"]}
            s["gain_over_random"] = [{"fraction": p["fraction"], "gain": p["mean"] - rnd[p["fraction"]]}
                                     for p in s["curve"] if p["fraction"] in rnd]
        else:
            s["gain_over_random"] = None
        s["savings"] = ([_savings(p, strategies[baseline]["curve"]) for p in s["curve"]]
                        if baseline is not None and label != baseline else None)

    notes: list[str] = []
    for label, s in strategies.items():
        if baseline is None or label == baseline:
            s["paired"] = None
            continue
        shared = common or sorted({p["fraction"] for p in s["curve"]}
                                  & {p["fraction"] for p in strategies[baseline]["curve"]})
        s["paired"] = _paired(label, groups[label], curves[label], groups[baseline], curves[baseline], grid, shared,
                              warnings, notes)
    ceiling = _ceiling(ceiling_runs, metric)
    for s in strategies.values():
        s["of_ceiling"] = None if ceiling is None else s["final"]["mean"] / ceiling["mean"]
        s["fraction_to_ceiling"] = None if ceiling is None else {
            str(share): next((p["fraction"] for p in s["curve"] if p["mean"] >= share * ceiling["mean"]), None)
            for share in CEILING_SHARES}
        s["at_ceiling"] = None if ceiling is None or s["savings"] is None else {
            share: next((v for v in s["savings"] if v["fraction"] == f), None)
            for share, f in s["fraction_to_ceiling"].items()}

    budgets = []
    for f in sorted({p["fraction"] for s in strategies.values() for p in s["curve"]}):
        counts = [p["labeled"] for s in strategies.values() for p in s["curve"]
                  if p["fraction"] == f and p["labeled"] is not None]
        budgets.append({"fraction": f, "labeled": float(np.mean(counts)) if counts else None})
    datasets = sorted({str(get_dotted(r.recipe, "data.dataset")) for r in runs})
    models = sorted({_model_name(r.recipe) for r in runs})
    return {
        "metric": metric, "target": target, "threshold": threshold,
        "axis": axis, "axis_label": AXIS_LABELS[axis], "interpolated": not exact,
        "baseline": baseline,
        "best_final": {"strategy": best_label, "mean": finals[best_label]},
        "dataset": ", ".join(datasets), "model": ", ".join(models),
        "seeds": max(len(s["seeds"]) for s in strategies.values()),
        "fractions": [b["fraction"] for b in budgets],  # the x of every row, on the axis
        "budgets": budgets,  # each x with its mean labeled count (fraction axis only)
        "common_fractions": common,
        "strategies": strategies,
        "ceiling": ceiling,
        "warnings": warnings,
        "environment_notes": notes,
        "settings": settings(groups, ceiling_runs),
        "compute": compute_summary({label: [r.dir for r in members] for label, members in groups.items()},
                                   [r.dir for r in ceiling_runs]),
        "segal_versions": sorted({str(m["segal_version"]) for r in runs + ceiling_runs for m in r.metrics
                                  if m.get("segal_version")}),
    }


def baseline_needs(xs: list[float], ys: list[float], value: float) -> tuple[float, str]:
    """Where a piecewise-linear curve (``xs`` ascending) first reaches ``value``: ``(x, "exact")``;
    ``(xs[0], "at_most")`` when its first point already does; ``(xs[-1], "more")`` when it never does."""
    if ys[0] >= value:
        return float(xs[0]), "at_most"
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:], strict=False):
        if y1 >= value:  # y0 < value <= y1, so y1 > y0
            return float(x0 + (value - y0) / (y1 - y0) * (x1 - x0)), "exact"
    return float(xs[-1]), "more"


def _savings(point: dict[str, Any], base_curve: list[dict[str, Any]]) -> dict[str, Any]:
    """What the baseline needs for ``point``'s mean, and the share of it the strategy used (module docstring)."""
    needs, bound = baseline_needs([p["fraction"] for p in base_curve], [p["mean"] for p in base_curve], point["mean"])
    return {"fraction": point["fraction"], "mean": point["mean"], "baseline_needs": needs, "bound": bound,
            "ratio": point["fraction"] / needs if needs > 0 else None}


def _baseline(groups: dict[str, list[RunData]]) -> str | None:
    """The label every strategy is paired with: image-level ``random``, else region-level ``random``
    (a precise oracle first), else none."""
    candidates = [(r.unit != "image", r.oracle == "dominant", label) for label, members in groups.items()
                  for r in members[:1] if r.strategy == RANDOM and r.mode is None]
    return min(candidates)[2] if candidates else None


def _cycle_x(points: list[_Points], cycle: int) -> float:
    """The mean x over seeds of a strategy's ``cycle``-th evaluation."""
    return float(np.mean([p.x[cycle] for p in points if cycle < len(p.x)]))


def _class_stats(per_run: list[dict[str, float | None]], classes: list[str]) -> dict[str, Any]:
    """Per-class mean and sample std over the seeds that scored the class (a class absent from a
    seed's test images has no IoU there and is skipped, not counted as 0)."""
    means: dict[str, float | None] = {}
    stds: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for c in classes:
        present = [float(v) for v in (m.get(c) for m in per_run) if v is not None and not math.isnan(float(v))]
        mean, std = mean_std(present) if present else (None, None)
        means[c], stds[c], counts[c] = mean, std, len(present)
    return {"classes": means, "std": stds, "n": counts}


# Recipe keys the report shows elsewhere (the runs' folders and seeds; the strategy labels every table).
_NOT_SETTINGS = ("output_dir", "seed", "name", "active.strategy")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):  # an empty section (random's strategy_params: {}) adds no key
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def settings(groups: dict[str, list[RunData]], ceiling_runs: list[RunData]) -> list[dict[str, Any]]:
    """The recipe keys of the runs, each with its value per strategy label: ``{"key", "values"}``, where
    ``values`` is ``{"all": v}`` when every strategy has the key and every run agrees, else
    ``{label: [v, …]}`` (its distinct values; "–" for null or unset) for the labels that have it."""
    members = {**groups, **({"ceiling": ceiling_runs} if ceiling_runs else {})}
    flat = {label: [_flatten(r.recipe) for r in runs] for label, runs in members.items()}
    keys = list(dict.fromkeys(k for recipes in flat.values() for recipe in recipes for k in recipe
                              if k not in _NOT_SETTINGS))
    rows = []
    for key in keys:  # a label none of whose runs has the key (random has no VAAL steps) is left out
        per_label = {label: list(dict.fromkeys(_setting_text(recipe.get(key)) for recipe in recipes))
                     for label, recipes in flat.items() if any(key in recipe for recipe in recipes)}
        distinct = {v for values in per_label.values() for v in values}
        shared = len(distinct) == 1 and len(per_label) == len(flat)  # every strategy has it, with one value
        rows.append({"key": key, "values": {"all": distinct.pop()} if shared else per_label})
    return rows


def _setting_text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, list | dict):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return str(value)


def _ceiling(runs: list[RunData], metric: str) -> dict[str, Any] | None:
    """Mean ± std over the ceiling runs' seeds (each run's cycle 0, trained on the whole pool)."""
    if not runs:
        return None
    values = [float(r.metrics[0][metric]) for r in runs]
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "n": len(values), "values": values, "seeds": [r.seed for r in runs],
            "runs": [str(r.dir) for r in runs]}


# Recipe keys two paired runs must share for their difference to be the strategy's alone.
_PAIRED_KEYS = ("data.dataset", "data.image_size", "model", "train.epochs", "train.steps", "train.min_steps",
                "train.batch_size", "train.lr", "train.optimizer", "train.schedule", "train.reinit", "active.initial",
                "active.budget")
# An image run against a region run: the budget counts other units by design (a share of images, of pixels).
_PAIRED_KEYS_ACROSS_UNITS = tuple(k for k in _PAIRED_KEYS if k != "active.budget")


def _initial_score(run: RunData) -> float | None:
    """The run's cycle-0 mIoU or accuracy: the same for every run of a seed where they share the initial
    network (segal.shared_start), as paired runs should."""
    first = run.metrics[0]
    if first.get("cycle") != 0:
        return None
    value = first.get("miou", first.get("accuracy"))
    return float(value) if isinstance(value, int | float) else None


def _paired(label: str, members: list[RunData], mine: list[_Points], randoms: list[RunData],
            theirs: list[_Points], grid: list[float], common: list[float], warnings: list[str],
            notes: list[str]) -> dict[str, Any]:
    """Per-seed gains of ``members`` over the baseline run of the same seed (module docstring); ``notes`` gets
    the pairs kept whose cycle-0 networks differ (another numeric environment: segal.environment)."""
    by_seed = {r.seed: (r, p) for r, p in zip(randoms, theirs, strict=True)}
    pairs: list[tuple[_Points, _Points, RunData]] = []
    for run, points in zip(members, mine, strict=True):
        if run.seed not in by_seed:
            warnings.append(f"{label} seed {run.seed}: the baseline has no run of that seed, so it is left out of the "
                            f"paired statistics ({run.dir})")
            continue
        other, other_points = by_seed[run.seed]
        if run.initial is None or other.initial is None:
            warnings.append(f"{label} seed {run.seed}: cannot check that it shares the baseline's initial labeled "
                            f"set (no state.json in {run.dir if run.initial is None else other.dir})")
        elif run.initial != other.initial or run.pool_fingerprint != other.pool_fingerprint:
            warnings.append(f"{label} seed {run.seed}: its initial labeled set (or pool) differs from the baseline's "
                            f"({run.dir} vs {other.dir}); the pair is left out of the paired statistics")
            continue
        start, other_start = _initial_score(run), _initial_score(other)
        dominant = (run.oracle == "dominant") != (other.oracle == "dominant")  # its cycle 0 differs by design
        if start is not None and other_start is not None and abs(start - other_start) > 1e-9 and not dominant:
            notes.append(f"{label} seed {run.seed}: its cycle-0 score is not the baseline's ({100 * start:.2f} vs "
                            f"{100 * other_start:.2f}), so the two did not train the same initial network: they ran in "
                            "different numeric environments (another CPU path or package versions; each run's "
                            "log.jsonl names its own), and the pair's gains include that noise (kept)")
        keys = _PAIRED_KEYS if run.unit == other.unit else _PAIRED_KEYS_ACROSS_UNITS
        differing = [k for k in keys if get_dotted(run.recipe, k) != get_dotted(other.recipe, k)]
        if differing:
            warnings.append(f"{label} seed {run.seed}: its recipe differs from the baseline's in "
                            f"{', '.join(differing)} (kept, but the pair compares more than the strategy)")
        pairs.append((points, other_points, run))
    per_budget = []
    for g in grid:
        gains, seeds = [], []
        for a_points, b_points, run in pairs:
            a, b = a_points.at(g), b_points.at(g)
            if a is not None and b is not None:
                gains.append(a - b)
                seeds.append(run.seed)
        if gains:
            per_budget.append({"fraction": g, "seeds": seeds, "gains": gains, **mean_ci(gains)})
    auc_gains, auc_seeds = [], []
    for a_points, b_points, run in pairs:
        a_values, b_values = [a_points.at(g) for g in common], [b_points.at(g) for g in common]
        if common and all(v is not None for v in a_values + b_values):
            auc_gains.append(normalised_auc(common, [float(v) for v in a_values if v is not None])
                             - normalised_auc(common, [float(v) for v in b_values if v is not None]))
            auc_seeds.append(run.seed)
    auc = {"seeds": auc_seeds, "gains": auc_gains, **mean_ci(auc_gains)} if auc_gains else None
    return {"pairs": len(pairs), "per_budget": per_budget, "auc": auc}


def _model_name(recipe: dict[str, Any]) -> str:
    name, encoder = get_dotted(recipe, "model.name"), get_dotted(recipe, "model.encoder")
    return f"{name}/{encoder}" if name == "deeplabv3plus" and encoder else str(name)


def _diagnostics(members: list[RunData], axis: str = "fraction", exact: bool = True) -> list[dict[str, Any]]:
    """Per acquisition cycle: discriminator AUROC (VAAL: mean, sample std and 95% t-interval over seeds,
    and each seed's own interval), mean acquired class histogram, time."""
    cycles = sorted({c for r in members for c in r.queries})
    out = []
    for c in cycles:
        qs = [(r, r.queries[c]) for r in members if c in r.queries]
        fractions = [r.x(m, axis) for r, _ in qs for m in r.metrics if m.get("cycle") == c]  # x when acquiring
        aurocs = [q.get("diagnostics", {}).get("auroc") for _, q in qs]
        seeded = [float(a) for a in aurocs if a is not None and not math.isnan(float(a))]
        hists = [q.get("diagnostics", {}).get("class_histogram") for _, q in qs]
        hists = [h for h in hists if h]
        names = list(dict.fromkeys(n for h in hists for n in h))
        seconds = [q["seconds"] for _, q in qs if q.get("seconds") is not None]
        shares = [s for s in (_group_share(r, q) for r, q in qs) if s]
        groups = sorted({g for s in shares for g in s})
        adjacent = [a for a in (_adjacent_share(r, q) for r, q in qs) if a is not None]
        intervals = [q.get("diagnostics", {}).get("auroc_ci") for _, q in qs]
        out.append({
            "cycle": c, "fraction": (_key(float(np.mean(fractions))) if exact else float(np.mean(fractions))) if fractions
            else None, "n": len(qs),
            "auroc": _mean_or_none(aurocs),
            "auroc_std": mean_std(seeded)[1] if seeded else None, "auroc_n": len(seeded),  # over seeds
            "auroc_seeds_ci": _clipped(mean_ci(seeded)["ci"]) if len(seeded) > 1 else None,  # t over seeds
            "auroc_ci": [[float(v) for v in ci] for ci in intervals if ci] or None,  # one per seed
            "group_share": {g: float(np.mean([s.get(g, 0.0) for s in shares])) for g in groups} if shares else None,
            "adjacent_share": float(np.mean(adjacent)) if adjacent else None,
            "class_histogram": {n: float(np.mean([h.get(n, 0.0) for h in hists])) for n in names} if hists else None,
            "seconds": float(np.mean(seconds)) if seconds else None,
        })
    return out


def _adjacent_summary(members: list[RunData]) -> dict[str, Any] | None:
    """Adjacent picks over a strategy's runs: the mean over all their acquisitions, and each seed's mean."""
    per_run = {r.seed: [a for a in (_adjacent_share(r, q) for q in r.queries.values()) if a is not None]
               for r in members}
    per_seed = {seed: float(np.mean(v)) for seed, v in sorted(per_run.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)) if v}
    every = [a for v in per_run.values() for a in v]
    return {"mean": float(np.mean(every)), "acquisitions": len(every), "seeds": per_seed} if every else None


def _label_noise(members: list[RunData], axis: str) -> list[dict[str, Any]] | None:
    """Per cycle, the share of labeled pixels whose label is wrong (the simulated dominant oracle's
    ``label_noise`` in metrics.json): mean and sample std over seeds, each seed's share, and the mean
    ``x`` of that cycle.  ``None`` when no run records it (precise and human oracles, image runs)."""
    by_cycle: dict[int, list[tuple[RunData, dict[str, Any]]]] = {}
    for r in members:
        for m in r.metrics:
            noise = m.get("label_noise")
            if isinstance(noise, dict) and noise.get("labeled_pixels"):
                by_cycle.setdefault(int(m["cycle"]), []).append((r, m))
    out = []
    for c, found in sorted(by_cycle.items()):
        shares = [m["label_noise"]["wrong_pixels"] / m["label_noise"]["labeled_pixels"] for _, m in found]
        mean, std = mean_std(shares)
        out.append({"cycle": c, "x": float(np.mean([r.x(m, axis) for r, m in found])), "mean": mean, "std": std,
                    "n": len(shares), "seeds": {str(r.seed): v for (r, _), v in zip(found, shares, strict=True)}})
    return out or None


def _clipped(interval: list[float]) -> list[float]:
    """An AUROC interval within [0, 1], where the AUROC lives (a t-interval of few seeds can overshoot)."""
    return [min(max(v, 0.0), 1.0) for v in interval]


def _group_share(run: RunData, queries: dict[str, Any]) -> dict[str, float] | None:
    """Share of one acquisition per sequence or group: queries.json's ``groups``, or for runs written
    before they were recorded, the group read from the ids by the adapter's own rule."""
    groups = _groups_of(run, queries)
    if not groups:
        return None
    names, counts = np.unique(groups, return_counts=True)
    return {str(n): float(k) / len(groups) for n, k in zip(names, counts, strict=True)}


def _groups_of(run: RunData, queries: dict[str, Any]) -> list[str] | None:
    """The group of each acquired image: queries.json's ``groups``, or the adapter's rule on the ids."""
    groups = queries.get("groups")
    if groups is None:
        rule = _id_group_rule(str(get_dotted(run.recipe, "data.dataset")))
        ids = queries.get("ids")
        groups = [rule(str(i)) for i in ids] if rule is not None and ids else None
    return [str(g) for g in groups] if groups else None


def _adjacent_share(run: RunData, queries: dict[str, Any]) -> float | None:
    """Share of one image acquisition whose pool neighbour (index ± 1) in the same group was acquired with
    it; ``None`` for region runs and for pools without groups (where the pool's order means nothing)."""
    indices, groups = queries.get("indices"), _groups_of(run, queries)
    if run.unit != "image" or not indices or not groups or len(indices) != len(groups):
        return None
    picked = {(g, int(i)) for i, g in zip(indices, groups, strict=True)}
    return float(np.mean([(g, int(i) - 1) in picked or (g, int(i) + 1) in picked
                          for i, g in zip(indices, groups, strict=True)]))


def _id_group_rule(dataset: str):
    if dataset == "camvid":
        from segal.data.camvid import sequence_of

        return sequence_of
    if dataset == "cityscapes":
        from segal.data.cityscapes import city_of

        return city_of
    return None
