"""The ``segal`` command: parse arguments, call the library, show progress and tables.

User errors (:class:`~segal.errors.UserError`), and the file-system errors a user can fix (permission
denied, read-only file system, disk full, a file where a folder belongs), print one line and exit
with code 2.  Ctrl-C exits with 130 and SIGTERM with 143, both after the last atomic write, so
re-running the same command resumes.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from segal import __version__
from segal.errors import UserError
from segal.progress import Progress as ProgressReporter
from segal.registry import Registry

console = Console(stderr=True, log_path=False)  # log lines without a `cli.py:66` tag
out = Console()


class RichProgress(ProgressReporter):
    """rich progress bars for long work, and readable log lines for events."""

    def __init__(self, console: Console, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self._progress: Progress | None = None

    def _bars(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
                disable=self.quiet or not self.console.is_terminal,
            )
            self._progress.start()
        return self._progress

    def track(self, iterable, total: int | None = None, description: str = ""):
        bars = self._bars()
        task = bars.add_task(description, total=total)
        try:
            for item in iterable:
                yield item
                bars.advance(task)
        finally:
            bars.remove_task(task)

    def log(self, event: str, **fields: Any) -> None:
        if self.quiet or event == "train_epoch":
            return
        text = _EVENT_TEXT.get(event)
        if text:
            try:
                self.console.log(text.format(**fields))
            except (KeyError, IndexError, ValueError):
                self.console.log(f"{event} {fields}")

    def warn(self, message: str) -> None:
        self.console.log(f"[yellow]warning:[/] {escape(message)}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


_EVENT_TEXT = {
    "start": "started: pool of {pool} images, budgets {budgets}, strategy [bold]{strategy}[/]",
    "resume": "resuming at cycle {cycle}, stage {stage}",
    "trained": "cycle {cycle}: trained {steps} steps in {seconds}s (loss {loss:.3f})",
    "evaluated": "cycle {cycle}: evaluated with {labeled} labeled images",
    "acquired": "cycle {cycle}: acquired {count} images in {seconds}s",
    "labeled": "cycle {cycle}: {count} images labeled by the {oracle} oracle",
    "regions_acquired": "cycle {cycle}: acquired {count} regions in {seconds}s",
    "regions_labeled": "cycle {cycle}: {count} regions labeled by the simulated {oracle} oracle",
    "sweep_run": "sweep {index}/{total}: [bold]{strategy}[/] seed {seed} → {dir}",
    "sweep_skip": "sweep {index}/{total}: {strategy} seed {seed} already finished, skipped",
    "awaiting_labels": "cycle {cycle}: {pending} images wait for labels — run `segal export`, label them, then `segal import`",
}


def results_table(title: str, rows) -> Table:
    table = Table(title=title)
    table.add_column("cycle", justify="right")
    table.add_column("labeled", justify="right")
    table.add_column("% of pool", justify="right")
    metric = rows[0].metric_name if rows else "miou"
    table.add_column("mIoU" if metric == "miou" else "accuracy", justify="right")
    for r in rows:
        table.add_row(str(r.cycle), str(r.labeled), f"{100 * r.fraction:.1f}", f"{100 * r.metric:.2f}")
    return table


MAX_CYCLE_COLUMNS = 8  # the per-class table shows the last cycles only, so it fits a terminal


def per_class_table(title: str, rows) -> Table | None:
    """Per-class IoU (%), one row per class and one column per cycle; ``None`` without per-class scores."""
    rows = [r for r in rows if r.per_class][-MAX_CYCLE_COLUMNS:]
    if not rows:
        return None
    table = Table(title=title)
    table.add_column("class")
    for r in rows:
        table.add_column(f"cycle {r.cycle}\n{r.labeled} labeled", justify="right")
    for name in dict.fromkeys(n for r in rows for n in r.per_class):
        values = [r.per_class.get(name) for r in rows]
        table.add_row(escape(name), *("–" if v is None or v != v else f"{100 * v:.1f}" for v in values))
    return table


def add_set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe key, e.g. --set active.initial=0.05 --set active.strategy_params.steps=100 "
                        "(dotted key; the value is YAML, checked like the recipe file)")


def add_recipe_overrides(p: argparse.ArgumentParser) -> None:
    """Options shared by `acquire` and `sweep` that override recipe keys."""
    add_set_option(p)
    p.add_argument("--data-root", help="dataset root, relative to the current folder (overrides data.root, which "
                                       "a recipe gives relative to its own folder)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--cycles", type=int, help="number of acquisitions (overrides active.final)")
    p.add_argument("--oracle", choices=["simulated", "human"])
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps", type=int, help="the task network's optimiser steps per cycle instead of epochs "
                                              "(VAAL's own: --set active.strategy_params.steps=N)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    p.add_argument("--threads", type=int, help="intra-op threads (default: the usable cores, capped by OMP_NUM_THREADS)")
    p.add_argument("--quiet", action="store_true")


def recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data.root": args.data_root, "device": args.device, "active.cycles": args.cycles, "active.oracle": args.oracle,
        "train.epochs": args.epochs, "train.steps": args.steps, "data.image_size": args.image_size,
    }


def _split(text: str, what: str, cast=str) -> list:
    try:
        items = [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"bad {what} list {text!r}", fix=f"write a comma-separated list, e.g. --{what} 0,1,2") from None
    if not items:
        raise UserError(f"empty {what} list", fix=f"e.g. --{what} 0,1,2")
    return items


# ---------------------------------------------------------------------- commands

def cmd_acquire(args: argparse.Namespace) -> int:
    from segal.config import load_recipe, parse_set
    from segal.device import resolve_device
    from segal.distributed import init_from_env, is_main
    from segal.loop import ActiveLoop
    from segal.runs import acquire_target, start_run
    from segal.strategies import check_strategy_params

    recipe_path, run_dir = acquire_target(args.recipe)  # a run directory continues with its own recipe
    overrides = {
        **recipe_overrides(args), "output_dir": args.output_dir or (run_dir and str(run_dir)), "seed": args.seed,
        "active.strategy": args.strategy,
        "log.tensorboard": True if args.tensorboard else None,
    }
    if args.ceiling:
        from segal.config import CEILING_OVERRIDES

        overrides.update(CEILING_OVERRIDES)
    warnings: list[str] = []
    sets = parse_set(args.set)
    # a run's recipe.yaml keeps data.root absolute; a relative one there is from an older segal: the cwd's
    recipe = load_recipe(recipe_path, overrides, sets, warnings, root_base=Path.cwd() if run_dir else None)
    if recipe.active.unit != "region":  # start_run checks a region strategy's (it may have no image variant)
        check_strategy_params(recipe.active.strategy, recipe.active.strategy_params, str(recipe_path), sets)
    warnings += _steps_note(args, recipe)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if args.ceiling and args.output_dir is None:  # never into the recipe's own run directory
        recipe.output_dir = str(recipe.run_dir.with_name(recipe.run_dir.name + "-ceiling"))
    distributed = init_from_env(resolve_device(recipe.device))  # under torchrun: join the group
    run = start_run(recipe, str(recipe_path))
    progress = RichProgress(console, quiet=args.quiet or not is_main())
    try:
        loop = ActiveLoop(run, progress)
        rows = loop.run_loop()
    finally:
        progress.close()
        run.close()  # release the run's lock (segal.runlock)
    if is_main():
        title = f"{recipe.name}: {recipe.active.strategy} on {recipe.data.dataset} ({run.dir})"
        out.print(results_table(title, rows))
    if distributed:
        import torch.distributed

        torch.distributed.destroy_process_group()
    return 0


def _steps_note(args: argparse.Namespace, recipe) -> list[str]:
    """``--steps`` sizes the task network only: say so when the strategy trains networks of its own (VAAL)."""
    import dataclasses

    from segal.strategies import REGION_STRATEGIES, STRATEGIES

    strategy = recipe.active.strategy
    registry = REGION_STRATEGIES if recipe.active.unit == "region" else STRATEGIES
    if strategy not in registry:
        return []  # start_run refuses it, naming the recipe
    taken = {f.name for f in dataclasses.fields(registry.get(strategy).Params)}
    if args.steps is None or "steps" not in taken or recipe.active.strategy_params.get("steps") is not None:
        return []
    return [f"--steps sizes the task network only; {strategy} trains its own networks for "
            "active.strategy_params.epochs — size them with --set active.strategy_params.steps=N"]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from segal.config import parse_set
    from segal.evaluate import evaluate_run

    sets = parse_set(args.set)
    if args.data_root is not None:
        sets["data.root"] = args.data_root
    progress = RichProgress(console)
    try:
        rows = evaluate_run(Path(args.run_dir), progress=progress, split=args.split, predictions=args.predictions,
                            sets=sets)
    finally:
        progress.close()
    out.print(results_table(f"re-evaluated {args.run_dir}", rows))
    classes = per_class_table("per-class IoU (%)", rows)
    if classes is not None:
        out.print(classes)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from segal.human import export_pending

    main = export_pending(Path(args.run_dir), args.format, Path(args.out))
    out.print(f"exported to {main}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from segal.human import import_labels

    count = import_labels(Path(args.run_dir), Path(args.path))
    out.print(f"imported {count} masks; run `segal acquire {args.run_dir}` to continue")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from segal.report import report

    report([Path(p) for p in args.run_dirs], Path(args.out) if args.out else None, console=out, target=args.target,
           axis=args.axis)
    return 0


def cmd_costs(args: argparse.Namespace) -> int:
    from segal.cost_records import record_costs
    from segal.results import find_runs

    for run_dir in find_runs([Path(p) for p in args.run_dirs]):
        count = record_costs(run_dir)
        out.print(f"{run_dir}: {count} metrics.json updated" if count else
                  f"{run_dir}: nothing to add (its costs are recorded)")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from segal.config import parse_set
    from segal.sweep import sweep

    strategies = _split(args.strategies, "strategies")
    seeds = _split(args.seeds, "seeds", int)
    progress = RichProgress(console, quiet=args.quiet)
    try:
        sweep(args.recipe, strategies, seeds, Path(args.out), recipe_overrides(args), progress,
              target=args.target, console=out, sets=parse_set(args.set), jobs=args.jobs, threads=args.threads)
    finally:
        progress.close()
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from segal.select import select_images

    progress = RichProgress(console, quiet=args.quiet)
    try:
        chosen, diagnostics = select_images(
            Path(args.images), args.budget, labeled_file=Path(args.labeled) if args.labeled else None,
            strategy=args.strategy, params=args.param, out=Path(args.out), seed=args.seed, device=args.device,
            work_dir=Path(args.work_dir) if args.work_dir else None, progress=progress)
    finally:
        progress.close()
    auroc = diagnostics.get("auroc")
    extra = f" (discriminator AUROC {auroc:.3f})" if isinstance(auroc, float) else ""
    how = "at random (initial set: no --labeled)" if diagnostics.get("initial_random_set") else f"with {args.strategy}"
    out.print(f"chose {len(chosen)} images {how}{extra}; ids written to {args.out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from segal.serve import Backend, write_tasks

    if args.write_tasks:
        path, count = write_tasks(Path(args.run_dir), Path(args.write_tasks))
        out.print(f"wrote {count} tasks to {path}: import it into the Label Studio project (see the README)")
        return 0
    try:
        from segal.serve.app import TOKEN_ENV, serve_forever
    except ImportError:
        raise UserError("segal serve needs Flask", fix="pip install 'segal-vaal[serve]'") from None
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        raise UserError("segal serve needs a token, which Label Studio sends with every request",
                        fix=f"pass --token TOKEN or set {TOKEN_ENV}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] serving on {escape(args.host)}, not loopback: anyone who can reach it "
                      "and has the token can read predictions and change the run's labels", soft_wrap=True)
    progress = RichProgress(console)
    backend = Backend(Path(args.run_dir), retrain_every=args.retrain_every, progress=progress,
                      say=lambda message: console.log(escape(message)))
    try:
        backend.start()
        console.log(f"serving {escape(args.run_dir)} ({backend.version}) on http://{args.host}:{args.port}; "
                    f"retraining after every {backend.step} new labels")
        serve_forever(backend, token, args.host, args.port)
    finally:
        backend.close(wait=False)  # a retraining in progress resumes on the next start
        progress.close()
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from segal.data import DATASETS
    from segal.models import MODELS
    from segal.strategies import REGION_STRATEGIES, STRATEGIES

    registries: dict[str, Registry[Any]] = {"strategies": STRATEGIES, "datasets": DATASETS, "models": MODELS}
    registry = registries[args.command]
    for name in registry.names():
        out.print(name)
    if args.command == "strategies":  # active.unit: region looks its strategy up in a registry of its own
        for name in REGION_STRATEGIES.names():
            out.print(f"{name} (region)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segal", description="Active learning for semantic segmentation: VAAL and baselines.")
    parser.add_argument("--version", action="version", version=f"segal {__version__}")  # segal-vaal's, from pip
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("acquire", help="run (or resume) the active-learning loop of a recipe")
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/demo.yaml, or a run directory to continue it "
                                  "with its own recipe (e.g. after `segal import`)")
    p.add_argument("--output-dir", help="run directory (default runs/<name>)")
    p.add_argument("--seed", type=int)
    p.add_argument("--strategy", help="acquisition strategy (see `segal strategies`); another than the recipe's "
                                      "drops the recipe's active.strategy_params (a warning names them): set the "
                                      "new one's with --set active.strategy_params.KEY=VALUE")
    p.add_argument("--ceiling", action="store_true",
                   help="train once on the whole pool (100%% labeled, no acquisition): the reference line of "
                        "`segal report`; writes to --output-dir or runs/<name>-ceiling")
    p.add_argument("--tensorboard", action="store_true",
                   help="write TensorBoard event files to RUN_DIR/tensorboard (sets log.tensorboard: true)")
    add_recipe_overrides(p)
    p.set_defaults(func=cmd_acquire)

    p = sub.add_parser("sweep", help="run (or resume) a strategies × seeds grid of a recipe, then report")
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/demo.yaml")
    p.add_argument("--strategies", required=True, help="comma-separated, NAME or NAME:MODE, e.g. random,entropy,vaal:paper")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    p.add_argument("--out", required=True, help="folder for the runs (<strategy>-seed<seed>) and report/")
    p.add_argument("--target", type=float, default=0.95, help="report the budget reaching this share of the best final score")
    add_recipe_overrides(p)
    p.add_argument("--jobs", type=int, default=1, help="runs side by side, the threads divided between them (default 1)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("select", help="choose images to label with a task-agnostic strategy (VAAL, random): no task network")
    p.add_argument("images", help="folder of images (searched recursively)")
    p.add_argument("--budget", type=int, required=True, help="how many images to choose")
    p.add_argument("--labeled", help="text file of already-labeled image ids (paths relative to the folder), one per line")
    p.add_argument("--strategy", default="vaal", help="a strategy that needs no task network (default vaal)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy parameter, e.g. --param image_size=64 --param steps=2000 (YAML values)")
    p.add_argument("--out", required=True, help="write the chosen ids here, one per line, most informative first")
    p.add_argument("--work-dir", help="keep the strategy's checkpoints and image cache here (enables resume)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("evaluate", help="re-evaluate every cycle's checkpoint of a run")
    p.add_argument("run_dir")
    p.add_argument("--split", help="split to evaluate (default: the recipe's test split)")
    p.add_argument("--predictions", help="also write predicted masks here in the dataset's own label encoding")
    p.add_argument("--data-root", help="evaluate on the dataset in this folder instead of the run's data.root")
    add_set_option(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export the pending images with predicted masks for an annotation tool")
    p.add_argument("run_dir")
    p.add_argument("--format", required=True, choices=["cvat-mask", "cvat-xml", "labelstudio", "coco", "png"])
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="import annotated masks for the pending images")
    p.add_argument("run_dir")
    p.add_argument("path")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("report", help="curves and tables from run directories")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="output folder (default: <common parent of the runs>/report)")
    p.add_argument("--target", type=float, default=0.95, help="report the budget reaching this share of the best final score")
    p.add_argument("--x", dest="axis", choices=("fraction", "pixels", "clicks"),
                   help="what the x axis counts: labeled images (fraction of the pool), labeled pixels (share of the "
                        "pool's pixels) or annotator clicks (default: pixels when a run is region-level, else fraction)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("costs", help="add the cost ledger (pixels, clicks) to image runs made before segal recorded it, "
                                     "so that `segal report --x pixels|clicks` places them; recount a region run's "
                                     "initial images' clicks whole where it predates that rule")
    p.add_argument("run_dirs", nargs="+", help="run directories, or folders holding them (a sweep's --out)")
    p.set_defaults(func=cmd_costs)

    p = sub.add_parser("serve", help="serve a human-oracle run as a Label Studio ML backend (predict, webhook, retrain)")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=9090)
    p.add_argument("--token", help="the token Label Studio must send (default: $SEGAL_SERVE_TOKEN)")
    p.add_argument("--retrain-every", type=int, help="retrain after this many new labels (default: serve.retrain_every, "
                                                     "else active.budget)")
    p.add_argument("--write-tasks", metavar="DIR", help="write Label Studio tasks for every unlabeled image to DIR and exit")
    p.set_defaults(func=cmd_serve)

    for name in ("strategies", "datasets", "models"):
        sub.add_parser(name, help=f"list registered {name}").set_defaults(func=cmd_list)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so that ``finally`` blocks and temp-file clean-up run."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated


# What the user can do about the file-system errors a run meets; any other OSError is a bug.
_OS_FIXES = {
    errno.EACCES: ("permission denied", "give yourself access (ls -l; chmod), or choose another folder, e.g. --output-dir"),
    errno.EPERM: ("operation not permitted", "give yourself access (ls -l; chmod), or choose another folder"),
    errno.EROFS: ("read-only file system", "write the run to a writable folder with --output-dir, or copy it there"),
    errno.ENOSPC: ("no space left on the device", "free disk space, then re-run the same command: it resumes"),
    errno.EDQUOT: ("disk quota exceeded", "free disk space, then re-run the same command: it resumes"),
    errno.EISDIR: ("is a folder, a file was expected", "pass the file's path, not its folder's"),
    errno.ENOTDIR: ("a part of this path is a file, a folder was expected", "check the path: move the file away or pass the folder"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
}


def os_error_line(exc: OSError) -> str | None:
    """One line naming the path and a fix, for the OSError families a user can fix; else None."""
    if exc.errno not in _OS_FIXES:
        return None
    what, fix = _OS_FIXES[exc.errno]
    where = " → ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    return f"{where}: {what} — fix: {fix}" if where else f"{what} — fix: {fix}"


def dist_error_line(exc: RuntimeError) -> str | None:
    """One line for a failed collective (a rank died or timed out: see ``SEGAL_DIST_TIMEOUT``); else None.

    torch.distributed is looked up only if already imported, so the CLI keeps starting without torch.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None or not isinstance(exc, getattr(dist, "DistError", ())):
        return None
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (f"a distributed collective failed on this rank: {first} — fix: read the other ranks' output "
            "for the first error; if ranks are only slow, raise SEGAL_DIST_TIMEOUT (seconds); "
            "re-run the same command to resume")


def main(argv: list[str] | None = None) -> int:
    from segal.threads import prefer_passive_wait

    prefer_passive_wait()  # before torch loads OpenMP: idle threads sleep instead of spinning on shared cores
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _in_main_thread() else None
    try:
        from segal.threads import configure_threads

        configure_threads(getattr(args, "threads", None))  # see segal.threads: sized to the usable cores
        return args.func(args)
    except UserError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except (OSError, RuntimeError) as exc:  # a full disk, a failed collective: one line; anything else is a bug
        line, code = (os_error_line(exc), 2) if isinstance(exc, OSError) else (dist_error_line(exc), 1)
        if line is None:
            raise
        console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        return code
    except KeyboardInterrupt:
        console.print("interrupted — re-run the same command to resume from the last finished step", soft_wrap=True)
        return 130
    except Terminated:
        console.print("terminated (SIGTERM) — re-run the same command to resume from the last finished step", soft_wrap=True)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
