"""Does VAAL's discriminator learn with more training?  Re-run one cycle's VAAL acquisition of a finished
run at several VAE budgets, and compare the held-out AUROC and the picks.

    python tools/vaal_budget.py runs/cv/vaal-seed0 --cycle 4 --epochs 30,60,120

For cycle K of an image-level VAAL run, the labeled set is the run's own at that cycle (cycle 0's
initial set plus the picks of cycles 0 … K−1, from their ``queries.json``), and each budget trains
the recipe's VAE and discriminator afresh for that many passes over labeled + unlabeled
(``active.strategy_params.epochs``), seeded as ``segal acquire`` seeds it.  So the run's own budget
reproduces the run's picks exactly, which the table checks ("same picks as the run").  Reported per
budget: VAAL iterations, the discriminator's out-of-sample AUROC with its 95% interval (held out or
cross-fitted, as in the run), the overlap of the picks with the run's, and the CPU seconds.

Nothing in the run folder is written: the VAE trains without a checkpoint, and the 32×32 image cache
goes to ``--cache`` (default: a temporary folder).  Results go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segal.cli import os_error_line  # noqa: E402
from segal.errors import UserError  # noqa: E402
from segal.fileio import atomic_write_json, read_json  # noqa: E402
from segal.loop import _seed  # noqa: E402
from segal.runs import open_run  # noqa: E402
from segal.strategies import make_strategy  # noqa: E402
from segal.strategies.context import build_context  # noqa: E402
from segal.strategies.vaal import VAALStrategy  # noqa: E402


def labeled_at(run_dir: Path, cycle: int) -> tuple[np.ndarray, dict]:
    """The run's labeled indices when cycle ``cycle`` acquired (``state.json``: the images labeled in
    cycles 0 … ``cycle``), and that acquisition's ``queries.json``."""
    state = read_json(run_dir / "state.json")
    by_cycle = state.get("labeled") if isinstance(state, dict) else None
    if not isinstance(by_cycle, dict) or any(str(k) not in by_cycle for k in range(cycle + 1)):
        raise UserError(f"state.json has no labeled set for cycles 0 … {cycle}", path=run_dir / "state.json",
                        fix="pick a cycle the run has reached")
    path = run_dir / "cycles" / str(cycle) / "queries.json"
    if not path.is_file():
        raise UserError(f"cycle {cycle} has no queries.json", path=path, fix="pick a cycle the run has acquired in")
    labeled = np.concatenate([np.asarray(by_cycle[str(k)], dtype=np.int64) for k in range(cycle + 1)])
    return np.sort(labeled), read_json(path)


def parse_budgets(text: str) -> list[float]:
    """``--epochs``: positive numbers, comma-separated; anything else is one line naming the flag."""
    try:
        budgets = [float(e) for e in text.split(",")]
    except ValueError:
        budgets = []
    if not budgets or not all(b > 0 and b != float("inf") for b in budgets):
        raise UserError(f"--epochs {text!r} is not a list of positive numbers", fix="e.g. --epochs 30,60,120")
    return budgets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished image-level VAAL run")
    parser.add_argument("--cycle", type=int, required=True, help="the acquisition to re-run")
    parser.add_argument("--epochs", default="30,60,120", help="VAE budgets, passes over labeled + unlabeled")
    parser.add_argument("--cache", type=Path, help="folder for the resized-image cache (default: temporary)")
    parser.add_argument("--out", type=Path, help="JSON results (default: RUN/../vaal-budget-<run>-c<K>.json)")
    args = parser.parse_args(argv)
    console = Console()
    try:
        budgets = parse_budgets(args.epochs)
        run = open_run(args.run)
        a = run.recipe.active
        if a.unit != "image" or a.strategy != "vaal":
            raise UserError(f"the run's strategy is {a.strategy} ({a.unit}s), not image-level vaal",
                            path=args.run / "recipe.yaml", fix="pass a VAAL run")
        labeled, queries = labeled_at(args.run, args.cycle)
        out = args.out or args.run.parent / f"vaal-budget-{args.run.name}-c{args.cycle}.json"
        # before the training, so that a bad --out fails first and costs nothing
        if next((d for d in (out.parent, *out.parent.parents) if d.exists() and not d.is_dir()), None) is not None:
            raise UserError("a part of the results path is a file, a folder was expected", path=out.parent,
                            fix="pass another --out")
        out.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(out.parent, os.W_OK):
            raise UserError("the results folder is not writable", path=out.parent, fix="pass a writable --out")
        theirs = {int(i) for i in queries["indices"]}
        unlabeled = np.setdiff1d(np.arange(len(run.pool)), labeled)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            cache = args.cache or Path(tmp)
            for epochs in budgets:
                params = dict(a.strategy_params, epochs=epochs, steps=None)
                strategy = make_strategy("vaal", params, str(args.run / "recipe.yaml"))
                assert isinstance(strategy, VAALStrategy)
                ctx = build_context(run.pool, labeled, len(theirs), unlabeled=unlabeled, num_classes=run.num_classes,
                                    compute=run.compute, cycle=args.cycle, seed=run.recipe.seed, cache_dir=cache)
                t0, cpu0 = time.perf_counter(), time.process_time()
                torch.manual_seed(_seed(run.recipe.seed, args.cycle, 17))
                selection = strategy.select(ctx)
                d = selection.diagnostics
                picks = {int(i) for i in selection.indices}
                rows.append({"epochs": epochs, "steps": d.get("steps"), "auroc": d.get("auroc"),
                             "auroc_ci": d.get("auroc_ci"), "auroc_on": d.get("auroc_on"),
                             "overlap": len(picks & theirs) / len(theirs), "same_as_run": picks == theirs,
                             "final_disc_loss": d.get("final_disc_loss"),
                             "seconds": round(time.perf_counter() - t0, 1),
                             "cpu_seconds": round(time.process_time() - cpu0, 1)})
                console.print(rows[-1])
        run_params = dataclasses.asdict(make_strategy("vaal", dict(a.strategy_params), "recipe").params)
        atomic_write_json(out, {"run": str(args.run), "cycle": args.cycle, "labeled": int(len(labeled)),
                                "unlabeled": int(len(unlabeled)), "run_params": run_params,
                                "run_auroc": queries.get("diagnostics", {}).get("auroc"), "budgets": rows})
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)  # one line, unwrapped
        return 2
    except OSError as exc:  # an unwritable --out or cache, a full disk: the file and the fix, as segal says it
        line = os_error_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    table = Table(title=f"VAAL budget at cycle {args.cycle} of {args.run} ({len(labeled)} labeled, "
                        f"{len(unlabeled)} unlabeled)")
    for h in ("VAE epochs", "iterations", "AUROC [95% CI]", "on", "picks shared with the run", "CPU s"):
        table.add_column(h, justify="right")
    for r in rows:
        ci = r["auroc_ci"]
        auroc = "–" if r["auroc"] is None else f"{r['auroc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        shared = f"{100 * r['overlap']:.0f}%" + (" (identical)" if r["same_as_run"] else "")
        table.add_row(f"{r['epochs']:g}", str(r["steps"]), auroc, str(r["auroc_on"]), shared, f"{r['cpu_seconds']:.0f}")
    console.print(table)
    console.print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
