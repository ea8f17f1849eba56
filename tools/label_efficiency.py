"""The CamVid label-efficiency benchmark: every strategy against random, several seeds, one table.

    python tools/label_efficiency.py --ceiling --jobs 2 --threads 2   # the full grid and the ceiling
    python tools/label_efficiency.py --strategies random,entropy --seeds 0 --cycles 3
    python tools/label_efficiency.py --quick                    # a smoke run: tiny sizes, 1 seed

It is `segal sweep` with the settings fixed and printed, so that a number in a closing note can be
reproduced from scratch: CamVid train (367 images) as the pool, val (101) as the test split, DeepLabV3+
(ResNet-18, no pretrained weights), 10% initial labeled set, +5% per cycle to 40%.  Each cycle trains
``max(min_steps, ceil(epochs × labeled / batch))`` steps (``--steps N`` restores the old fixed count),
VAAL ``--vae-epochs`` passes over labeled + unlabeled.  The defaults EPOCHS and MIN_STEPS below come
from the convergence check (tools/convergence.py, docs/results.md), VAE_EPOCHS from tools/vaal_budget.py;
``--warm-epochs 30`` warm-starts every later cycle, which brings the full grid's training to an estimated
5.5 h on 2 cores (re-initialising: about 14 h); with VAAL's 60 VAE epochs and their cross-fitted AUROC
a seed's five strategies take 1 h 40 min on 2 cores and the whole grid ≈ 5.5–5.8 h (docs/results.md).
``--ceiling`` also trains every seed on the whole pool (OUT/ceiling) and reports against it;
``--ceiling-only`` trains just that (a ceiling pairs with no run, so it may come from any machine).
``--vaal-diversity K`` runs a VAAL variant that takes its K·b least labeled-looking images and keeps b of
them by k-center greedy on the VAE means: on CamVid, plain VAAL's top-b picks runs of neighbouring frames
(the report's "adjacent picks"), which this spreads out.  Its runs go to OUT/vaal-diversity-K with cycle 0
copied from OUT's runs, and OUT's report names them ``vaal (diversity_factor=K)``.  With ``--unit region``
it is region VAAL's diversity step (segal.strategies.region_vaal.spread_picks; its runs go to
OUT/regions[-warmN]-vaal-diversity-K).
The grid is resumable: kill it and run the same command again (finished runs are skipped, a cycle
resumes from its last epoch).
The report (table, curves.png, report.html, summary.json) is written to OUT/report, with each strategy's
CPU hours per run and the grid's total (segal.compute_time: CPU time, since on a shared machine the wall
time measures the load; the total ÷ 2 is the grid's time on 2 idle cores at one thread a run).

``--unit region`` runs the region benchmark of issue 16 instead (see :func:`region_settings`)::

    python tools/label_efficiency.py --unit region --warm-epochs 30 --ceiling --jobs 2 --threads 2
    python tools/label_efficiency.py --unit region --quick      # a smoke run

From the same initial 10% of images as the image runs of the same seed, region runs add 5% of the
pool's pixels per cycle for 4 cycles (to 30%): ``--strategies`` random, entropy, class_balanced and
vaal with the precise oracle (OUT/regions), and ``--dominant`` (default class_balanced, the acquisition
Cai et al. pair with one-click labels) with the dominant oracle too (OUT/regions-dominant).  Regions
are SLIC superpixels (400 asked, ~356 made per image) computed at 180×240, half the masks' size:
half the SLIC time of 360×480, and still ~120 pixels (11×11) per superpixel at that size.
The baselines are image-level ``--baselines`` (random, entropy) in OUT itself, with the image grid's
own settings and names, so that pointing ``--out`` at a finished issue-14 grid folder reuses its runs
(run this after that grid has finished: a run another process holds stops the sweep at its lock).
The report of baselines, region runs and ceiling goes to OUT/report-regions (OUT/report is the image
grid's, and leaves region runs out).

**Training schedule of a region run.**  An image run's ``train.epochs`` count passes over its labeled
images; a region run's labels are spread over many more images than the same pixels would fill
(after one cycle of 5% in superpixels, 305–338 of the 367 images are touched in ``--quick``), so
epochs over images touched would train a region run up to 6× more steps than the image run it is
compared with, for the same labels.  segal counts a region run's epochs over its labeled *pixels* in whole-image
equivalents (labeled pixels ÷ pixels per image, rounded up; segal.region_loop), with the same
``min_steps`` floor and the same ``warm_epochs``: at every budget a region run trains exactly as many
steps as an image run with as many labeled pixels: equal compute.  Region VAAL trains
``--region-vae-steps`` iterations per cycle (epochs over ~30k crops would be ~100× image VAAL's), on at
most ``--max-unlabeled`` unlabeled regions.
Equal steps are not equal passes, though: one step of 8 partly labeled images carries far fewer labeled
pixels than one of 8 whole ones, so each region label is seen ~6× less often than an image label, and
**this schedule is not converged** (docs/results.md, "Region schedule check": on seed 2, twice the warm
steps gain +2.49 mIoU at 15% of the pixels, six times +2.77 at 30%).  ``--region-warm-epochs N`` trains
the region runs' warm cycles ``N`` epochs instead of ``--warm-epochs`` (cycle 0, still copied from the
image runs, is unchanged), into OUT/regions-warmN; the estimates below are for the unconverged ×1.

**Estimated wall time of the full region grid** (3 seeds × 4 precise + 1 dominant strategy = 15 runs;
the baselines and the ceiling are the image grid's, reused), ``--warm-epochs 30 --jobs 2 --threads 2``.
Measured on core 0 at 96×128, batch 8, one thread, while the issue-14 grid and other tests ran there:
a training step takes 0.58 s of CPU (2.2 s of wall time, the core being shared: the CPU time is the
uncontended estimate); a region-VAAL iteration (width 32, z 32, 32×32 crops, batch 32) 0.43 s; SLIC at
180×240 0.069 s per image (356 regions per image, ~120 pixels each).  Per run: cycle 0 from scratch
1600 steps (the floor), then warm cycles at 56, 74, 93, 111 image equivalents: 210 + 278 + 349 + 417
steps, 2854 in all = 28 min; evaluation, scoring, regions and clicks ~2 min; region VAAL adds
4 × (1000 × 0.43 s + ~90 s scoring) = 35 min.  15 × 30 min + 3 × 35 min ≈ 9.3 core-hours, ≈ 4.6 h on 2 cores,
before sharing cycle 0.  A precise-oracle region run's cycle 0 trains the image runs' network (the same
mIoU to the last digit in ``--quick``; ``test_shared_start``: the same bytes), so each of them copies its
seed's image-run cycle-0 network (segal.shared_start; ``donors``) and is paired with the image baselines
from the first network on.  The dominant-oracle run trains its own (its initial images learn their
regions' majority classes): 12 × 1600 steps = 3.0 core-hours fewer, ≈ 6.3 core-hours ≈ 3.2 h on 2 cores.

``--benchmark cifar10`` applies the same protocol to classification (issue 14)::

    python tools/label_efficiency.py --benchmark cifar10 --warm-epochs 30 --ceiling --jobs 2 --threads 2

The pool is the CIFAR-10 JPEG subset (``../shared/data/cifar10-jpg``: 10,000 train images, 2,000 test),
``recipes/cifar10-jpg.yaml`` (ResNet-18 at 32×32 from scratch, SGD 0.05 poly, batch 128), strategies
random, entropy, coreset and vaal, 10% → 40% by 5%, accuracy instead of mIoU; its EPOCHS and MIN_STEPS
(:data:`BENCHMARKS`) come from its own convergence check (``tools/convergence.py --benchmark cifar10``;
docs/results.md).
Its runs, ceiling and report go to ``--out`` (default ``runs/label-efficiency-cifar10``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_STRATEGIES = "random,entropy,coreset,vaal,vaal:paper"

# The schedule, from the convergence check (tools/convergence.py; docs/results.md): at 40% (145 images)
# 1600 steps = 88 passes is converged (doubling: +0.81 mIoU, mean of 2 seeds); at 10% an 800-step floor
# is not (+1.37), so the floor is 1600 (doubling it: +3.51, not converged).  VAE_EPOCHS from tools/vaal_budget.py
# (vaal seed 0, cycle 4, 109 labeled / 258 unlabeled): the discriminator's cross-fitted AUROC was
# 0.616 [0.552, 0.681] at 30 epochs, 0.731 [0.671, 0.791] at 60 and 0.738 [0.679, 0.797] at 120, so 60 is
# where it stops gaining, at half 120's cost (651 against 1314 CPU s an acquisition).
EPOCHS = 88  # passes over the labeled set per cycle (measured at 40%)
MIN_STEPS = 1600  # floor for the small budgets (800 too few at 10%; 1600 → 3200: +3.51)
VAE_EPOCHS = 60.0  # VAAL passes over labeled + unlabeled per cycle (≈ 690 iterations at 367 images, batch 32)
REGION_VAE_STEPS = 1000  # region-VAAL iterations per cycle (batch 32: ~1 pass over 32k crops; a budget, not measured)


@dataclass(frozen=True)
class Benchmark:
    """One dataset's benchmark: what it trains on, and the schedule its convergence check chose."""

    recipe: str  # under recipes/
    data: str  # under ../shared/data/
    strategies: str
    image_size: tuple[int, int]
    batch_size: int
    epochs: int
    min_steps: int
    vae_epochs: float
    vae_batch: int
    out: str


BENCHMARKS = {
    "camvid": Benchmark("camvid.yaml", "camvid", DEFAULT_STRATEGIES, (96, 128), 8, EPOCHS, MIN_STEPS, VAE_EPOCHS, 32,
                        "runs/label-efficiency"),
    # `tools/convergence.py --benchmark cifar10` (docs/results.md), test accuracy: at 1,000 images (10%) 800 → 1,600
    # steps gained −0.30 and +2.45 points (seeds 0, 1; mean +1.07, over the 1-point rule), so the floor is 1,600
    # (1,600 → 3,200 not yet measured); at 4,000 (40%) 51 passes = 1,594 steps → 3,200 gained +0.80 and +1.65
    # (seeds 0, 1; mean +1.23, over the rule), so EPOCHS is 102 (3,188 steps at 40%; doubling that is unmeasured).
    # With --warm-epochs, EPOCHS sets only the ceiling's steps (cycle 0 sits at the floor).  VAAL: 2 passes over
    # the 10,000 images (≈ 312 iterations at batch 64), a budget not yet checked with tools/vaal_budget.py.
    "cifar10": Benchmark("cifar10-jpg.yaml", "cifar10-jpg", "random,entropy,coreset,vaal", (32, 32), 128,
                         102, 1600, 2.0, 64, "runs/label-efficiency-cifar10"),
}


def settings(args: argparse.Namespace) -> tuple[dict, dict]:
    """Recipe overrides and per-strategy parameters for the benchmark."""
    overrides = {
        "data.root": args.data_root,
        "data.image_size": list(args.image_size),
        "train.steps": args.steps,  # None: the schedule rule below
        "train.epochs": args.epochs,
        "train.min_steps": args.min_steps,
        "train.reinit": args.warm_epochs is None,  # --warm-epochs: warm start, a deviation from the paper
        "train.warm_epochs": args.warm_epochs,
        "data.cache": True,  # decoded inputs at ≤ 2× the working size: the same batches, less decoding
        "train.batch_size": args.batch_size,
        "active.initial": 0.1,
        "active.budget": 0.05,
        "active.final": None,
        "active.cycles": args.cycles,
        "device": args.device,
    }
    vaal = {"image_size": args.vae_size, "z_dim": args.z_dim, "width": args.vae_width, "batch_size": args.vae_batch,
            "epochs": args.vae_epochs, "steps": args.vae_steps}
    if args.vaal_diversity:
        vaal["diversity_factor"] = args.vaal_diversity
    return overrides, {"vaal": vaal}


def diversity_folder(k: int) -> str:
    """Where ``--vaal-diversity K`` runs go inside OUT: their names are the plain VAAL runs' (vaal-seedS)."""
    return f"vaal-diversity-{k}"


DEFAULT_REGION_STRATEGIES = "random,entropy,class_balanced,vaal"
REGION_FOLDER, DOMINANT_FOLDER = "regions", "regions-dominant"


def region_folders(args: argparse.Namespace) -> tuple[str, str]:
    """Where the precise- and dominant-oracle region runs go inside OUT: ``regions``/``regions-dominant``, or
    with ``--region-warm-epochs N`` (other than ``--warm-epochs``) ``regions-warmN``/``regions-dominant-warmN``,
    whose run names repeat the plain folders' (the same seeds and strategies, trained longer); with
    ``--vaal-diversity K`` each also ends ``-vaal-diversity-K``."""
    n = args.region_warm_epochs
    suffix = f"-warm{n}" if n is not None and n != args.warm_epochs else ""
    if args.vaal_diversity:  # region VAAL with its diversity step: the names repeat plain VAAL's too
        suffix += "-" + diversity_folder(args.vaal_diversity)
    return REGION_FOLDER + suffix, DOMINANT_FOLDER + suffix


def region_settings(args: argparse.Namespace) -> tuple[dict, dict]:
    """Recipe overrides and per-strategy parameters of the region runs: the image benchmark's settings
    (the same initial images, network, schedule rule and seeds) with a pixel budget over SLIC regions."""
    overrides, _ = settings(args)
    if args.region_warm_epochs is not None:  # cycle 0 is untouched (shared_start.NOT_IN_CYCLE_0): still shared
        overrides = {**overrides, "train.warm_epochs": args.region_warm_epochs}
    overrides = {**overrides, "active.unit": "region", "active.cost": "pixels", "active.budget": args.pixel_budget,
                 "active.cycles": args.region_cycles, "regions.method": "slic", "regions.segments": args.segments,
                 "regions.resolution": list(args.region_resolution), "regions.oracle": "precise"}
    vaal = {"image_size": args.vae_size, "z_dim": args.z_dim, "width": args.vae_width, "batch_size": 32,
            "steps": args.region_vae_steps, "max_unlabeled": args.max_unlabeled}
    if args.vaal_diversity:
        vaal["diversity_factor"] = args.vaal_diversity
    return overrides, {"vaal": vaal}


def image_report_dirs(out: Path) -> list[Path]:
    """The runs under ``out`` that the image benchmark's report covers: all but the region folders'."""
    from segal.results import find_runs

    region = [d for d in out.iterdir() if d.is_dir() and d.name.startswith(REGION_FOLDER)] if out.is_dir() else []
    skip = [d.resolve() for d in region]  # regions, regions-dominant and their -warmN variants
    return [d for d in find_runs([out]) if not any(d.resolve().is_relative_to(s) for s in skip)]


def warn_foreign_seeds(runs: list[Path], seeds: list[int], strategies: list[str], console,
                       where: Path | None = None) -> list[int]:
    """Warn, for each seed with runs still to compute here, about its runs from another numeric
    environment (restored records, another machine's): the new runs will not share their cycle 0.
    ``where``: the folder the new runs go to (``--vaal-diversity``'s names repeat OUT's), default any.
    Called after ``configure_threads``, so that this process's fingerprint is at the runs' thread count."""
    from segal.environment import numeric_fingerprint
    from segal.records import foreign_seeds, is_finished
    from segal.sweep import run_name

    runs = [r for r in runs if r.parent.name != "ceiling"]  # a ceiling is no pair: its machine changes no gain
    finished = {r.name for r in runs if is_finished(r) and (where is None or r.parent.resolve() == where.resolve())}
    pending = [s for s in seeds if any(run_name(spec, s) not in finished for spec in strategies)]
    mine = numeric_fingerprint()
    foreign = foreign_seeds(runs, pending, mine)
    for seed, names in sorted(foreign.items()):
        console.print(f"[yellow]warning:[/] seed {seed}: {', '.join(names)} came from another numeric environment "
                      f"than this machine's ({mine}); the new runs of seed {seed} will train another cycle-0 network "
                      "and pair with them only through the noise of the machine: run all of the seed's strategies "
                      "on one machine (docs/results.md)")
    return sorted(foreign)


def holds_runs(out: Path) -> bool:
    """Whether ``out`` already holds a run: an empty or new --out folder has no donors, and is no error."""
    from segal.results import is_run_dir

    return out.is_dir() and any(is_run_dir(p.parent) for p in out.rglob("recipe.yaml"))


def run_regions(args: argparse.Namespace, recipe: Path, out: Path, seeds: list[int], progress, console) -> None:
    """The region benchmark: image baselines, region runs (precise, then dominant), ceiling, one report."""
    from segal.config import CEILING_OVERRIDES
    from segal.report import report
    from segal.sweep import run_name, sweep

    image_overrides, image_params = settings(argparse.Namespace(**{**vars(args), "vaal_diversity": 0}))  # baselines: plain
    overrides, params = region_settings(args)
    baselines = [s for s in args.baselines.split(",") if s]
    if baselines:  # the image grid's runs, same names and settings: finished ones are skipped
        sweep(recipe, baselines, seeds, out, image_overrides, progress, strategy_params=image_params,
              console=None, jobs=args.jobs, threads=args.threads, write_report=False)
    image_runs = [out / run_name(s, seed) for s in baselines for seed in seeds]  # cycle 0 is theirs (shared_start)
    precise, dominant = region_folders(args)
    strategies = args.strategies.split(",")
    sweep(recipe, strategies, seeds, out / precise, overrides, progress,
          strategy_params=params, console=None, jobs=args.jobs, threads=args.threads, write_report=False,
          donors=image_runs)
    dirs = [out / precise, *image_runs]
    mine = [*image_runs, *(out / precise / run_name(s, seed) for s in strategies for seed in seeds)]
    if args.dominant:
        sweep(recipe, [args.dominant], seeds, out / dominant, {**overrides, "regions.oracle": "dominant"},
              progress, strategy_params=params, console=None, jobs=args.jobs, threads=args.threads,
              write_report=False, donors=image_runs)
        dirs.append(out / dominant)
        mine += [out / dominant / run_name(args.dominant, seed) for seed in seeds]
    if args.ceiling:
        sweep(recipe, ["random"], seeds, out / "ceiling", {**image_overrides, **CEILING_OVERRIDES}, progress,
              console=None, jobs=args.jobs, threads=args.threads, write_report=False)
        dirs.append(out / "ceiling")
        mine += [out / "ceiling" / run_name("random", seed) for seed in seeds]
    from segal.cost_records import record_costs
    from segal.results import is_run_dir

    # image runs made by a segal that did not record costs yet (the issue-14 grid's): only this invocation's
    # runs, since another invocation may be training the folder's other strategies (their lock would refuse)
    for run_dir in mine:
        if is_run_dir(run_dir):
            record_costs(run_dir)
    report(dirs, out / "report-regions", console=console)


def fill_defaults(args: argparse.Namespace) -> None:
    """The options left unset take the chosen benchmark's values (a flag given always wins)."""
    bench = BENCHMARKS[args.benchmark]
    defaults = {"data_root": str(ROOT.parent / "shared" / "data" / bench.data), "out": bench.out,
                "image_size": list(bench.image_size), "batch_size": bench.batch_size, "epochs": bench.epochs,
                "min_steps": bench.min_steps, "vae_epochs": bench.vae_epochs, "vae_batch": bench.vae_batch}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with the options left unset taken from the benchmark (and ``--quick``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", choices=sorted(BENCHMARKS), default="camvid",
                        help="the dataset and its defaults (BENCHMARKS): camvid (segmentation) or cifar10")
    parser.add_argument("--data-root", help="default: ../shared/data/<the benchmark's folder>")
    parser.add_argument("--out", help="default: runs/label-efficiency (camvid), runs/label-efficiency-cifar10")
    parser.add_argument("--unit", choices=("image", "region"), default="image",
                        help="image: the issue-14 grid; region: the region benchmark (module docstring)")
    parser.add_argument("--strategies", help=f"default: {DEFAULT_STRATEGIES} (image), "
                                             f"{DEFAULT_REGION_STRATEGIES} (region), "
                                             f"{BENCHMARKS['cifar10'].strategies} (cifar10)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cycles", type=int, default=6, help="acquisitions after the initial 10%% (6 → 40%%)")
    parser.add_argument("--baselines", default="random,entropy", help="--unit region: image-level baselines")
    parser.add_argument("--dominant", default="class_balanced",
                        help="--unit region: the strategy also run with the dominant oracle ('' for none)")
    parser.add_argument("--region-cycles", type=int, default=4, help="--unit region: acquisitions (4 → 30%% pixels)")
    parser.add_argument("--pixel-budget", type=float, default=0.05, help="--unit region: share of the pool's pixels "
                                                                         "per cycle")
    parser.add_argument("--segments", type=int, default=400, help="--unit region: SLIC superpixels per image")
    parser.add_argument("--region-resolution", type=int, nargs=2, default=[180, 240], metavar=("H", "W"),
                        help="--unit region: the size the regions are computed (and pixels counted) at")
    parser.add_argument("--region-warm-epochs", type=int, metavar="N",
                        help="--unit region: the region runs' warm epochs (default: --warm-epochs), e.g. twice them "
                             "for the 2×-steps check; runs other than --warm-epochs go to OUT/regions-warmN")
    parser.add_argument("--region-vae-steps", type=int, default=REGION_VAE_STEPS,
                        help="--unit region: region-VAAL iterations per cycle")
    parser.add_argument("--max-unlabeled", type=int, default=20000,
                        help="--unit region: region VAAL trains on at most this many unlabeled regions")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="default: 96 128 (camvid), 32 32")
    parser.add_argument("--epochs", type=int, help="task-network passes over the labeled set per cycle "
                                                   f"(default {EPOCHS} camvid, {BENCHMARKS['cifar10'].epochs} cifar10)")
    parser.add_argument("--min-steps", type=int, help="floor on the steps of a cycle (default "
                                                      f"{MIN_STEPS} camvid, {BENCHMARKS['cifar10'].min_steps} cifar10)")
    parser.add_argument("--steps", type=int, help="fixed steps per cycle instead of epochs + floor (the old protocol)")
    parser.add_argument("--warm-epochs", type=int,
                        help="warm-start every cycle after the first from the previous network and train it "
                             "ceil(N × labeled / batch) steps (train.reinit: false; the paper re-initialises)")
    parser.add_argument("--batch-size", type=int, help="default: 8 (camvid), 128 (cifar10)")
    parser.add_argument("--vae-size", type=int, default=32)
    parser.add_argument("--z-dim", type=int, default=32)
    parser.add_argument("--vae-width", type=int, default=32)
    parser.add_argument("--vae-epochs", type=float, help="VAAL passes over labeled + unlabeled (default "
                                                         f"{VAE_EPOCHS:g} camvid, {BENCHMARKS['cifar10'].vae_epochs:g})")
    parser.add_argument("--vae-batch", type=int, help="VAAL batch (default 32 camvid, 64 cifar10)")
    parser.add_argument("--vae-steps", type=int, help="fixed VAAL iterations per cycle instead of --vae-epochs")
    parser.add_argument("--vaal-diversity", type=int, default=0, metavar="K",
                        help="VAAL variant: take its K·b least labeled-looking images (regions) and pick b of them by "
                             "k-center greedy on the VAE means (0: off, the paper); the runs go to OUT/vaal-diversity-K "
                             "(OUT/regions[-warmN]-vaal-diversity-K), copy cycle 0 from OUT's runs, and OUT's report "
                             "names them vaal (diversity_factor=K)")
    parser.add_argument("--ceiling", action="store_true",
                        help="also train each seed once on the whole pool (OUT/ceiling): the report's reference line")
    parser.add_argument("--ceiling-only", action="store_true",
                        help="train only the ceilings of --seeds (no strategy runs): a seed's ceiling is no pair, "
                             "so it can be trained on any machine, and a 2×-steps check in its own --out")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, the threads divided between them")
    parser.add_argument("--threads", type=int, help="threads in all (default: the usable cores, see segal.threads)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    args = parser.parse_args(argv)
    fill_defaults(args)
    args.ceiling = args.ceiling or args.ceiling_only
    if args.quick:
        args.seeds, args.cycles, args.steps = "0", 1, 3
        args.image_size = [32, 64] if args.benchmark == "camvid" else [32, 32]
        args.vae_size, args.z_dim, args.vae_width, args.vae_steps = 32, 8, 8, 3
        args.region_cycles, args.segments, args.region_resolution = 1, 50, [45, 60]
        args.region_vae_steps, args.max_unlabeled = 3, 500
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    region = args.unit == "region"
    if region and args.benchmark != "camvid":
        print("error: --unit region needs segmentation masks — fix: drop --unit region, or use --benchmark camvid")
        return 2
    if region and args.ceiling_only:
        print("error: --ceiling-only trains the image-level ceiling, which the region benchmark reuses "
              "— fix: drop --unit region")
        return 2
    if args.region_warm_epochs is not None and (not region or args.warm_epochs is None or args.region_warm_epochs < 1):
        print("error: --region-warm-epochs N sets the warm-started cycles of region runs "
              "— fix: give it with --unit region and --warm-epochs, and N ≥ 1")
        return 2
    if args.strategies is None:
        args.strategies = DEFAULT_REGION_STRATEGIES if region else BENCHMARKS[args.benchmark].strategies
    if args.vaal_diversity and (args.vaal_diversity < 2 or args.ceiling_only
                                or any(not s.startswith("vaal") for s in args.strategies.split(","))
                                or (region and args.dominant not in ("", "vaal"))):
        print("error: --vaal-diversity K is a VAAL variant with K ≥ 2 "
              "— fix: give --strategies vaal (or vaal:paper) and K ≥ 2, without --ceiling-only "
              "(with --unit region: --dominant '' or vaal)")
        return 2

    from segal.threads import prefer_passive_wait

    prefer_passive_wait()  # before torch loads (segal.cli below imports it)
    from segal.cli import RichProgress
    from segal.errors import UserError
    from segal.sweep import sweep
    from segal.threads import configure_threads

    configure_threads(args.threads, jobs=1)

    console = Console()
    overrides, params = region_settings(args) if region else settings(args)
    title = {"camvid": "CamVid", "cifar10": "CIFAR-10 (JPEG)"}[args.benchmark]
    console.print(f"[bold]{title} label-efficiency benchmark{' (regions)' if region else ''}[/]")
    schedule = (f"{args.steps} steps per cycle (fixed)" if args.steps else
                f"max({args.min_steps}, ceil({args.epochs} × labeled / {args.batch_size})) steps per cycle")
    if args.warm_epochs is not None and not args.steps:
        schedule += (f" from scratch at cycle 0; later cycles warm-started for "
                     f"ceil({args.warm_epochs} × labeled / {args.batch_size}) steps")
    strategies = "none (--ceiling-only)" if args.ceiling_only else args.strategies
    shown = {**overrides, "schedule": schedule, "strategies": strategies, "seeds": args.seeds,
             "vaal": params["vaal"], "ceiling": args.ceiling, "jobs": args.jobs, "out": args.out}
    if region:
        shown.update({"schedule": schedule + ", epochs counted over the labeled pixels in whole-image equivalents",
                      "baselines": f"{args.baselines} (image level, in {args.out})",
                      "dominant oracle": args.dominant or "none", "regions out": f"{args.out}/{region_folders(args)[0]}"})
        if args.region_warm_epochs is not None and not args.steps:
            shown["schedule"] += (f"; region runs warm-started for ceil({args.region_warm_epochs} × labeled "
                                  f"image equivalents / {args.batch_size}) steps")
    for key, value in shown.items():
        console.print(f"  {key}: {value}")
    seeds = [int(s) for s in args.seeds.split(",")]
    progress = RichProgress(Console(stderr=True))
    try:
        recipe, out = ROOT / "recipes" / BENCHMARKS[args.benchmark].recipe, Path(args.out)
        if region:
            run_regions(args, recipe, out, seeds, progress, console)
            return 0
        if not args.ceiling_only:
            donors = image_report_dirs(out) if holds_runs(out) else []  # earlier invocations' runs: one cycle 0 a seed
            where = out / diversity_folder(args.vaal_diversity) if args.vaal_diversity else out
            warn_foreign_seeds(donors, seeds, args.strategies.split(","), console, where)
            sweep(recipe, args.strategies.split(","), seeds, where, overrides, progress, strategy_params=params,
                  console=console, jobs=args.jobs, threads=args.threads, donors=donors)
        if args.ceiling:  # same recipe and schedule rule on the whole pool; then one report over everything
            from segal.config import CEILING_OVERRIDES
            from segal.report import report

            sweep(recipe, ["random"], seeds, out / "ceiling", {**overrides, **CEILING_OVERRIDES}, progress,
                  console=None, jobs=args.jobs, threads=args.threads)
            report(image_report_dirs(out), out / "report", console=console)
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    finally:
        progress.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
