"""Keep a benchmark grid's results beyond the machine it ran on: save finished runs' records, restore them.

    python tools/run_records.py save runs/label-efficiency docs/records/camvid      # after runs finish
    python tools/run_records.py restore docs/records/camvid runs/label-efficiency   # on a fresh machine

A grid of the label-efficiency benchmark takes more core-hours than one session of a machine holds, and
a fresh machine starts with no run folders.  ``save`` copies the records of every finished run (recipe,
state, log, each cycle's metrics/train/queries JSON; never ``task.pt``, caches or TensorBoard events:
segal.records) keeping the grid's layout, about 20 kB a run (CamVid, 7 cycles), so they can be committed.
``restore`` puts them back into a grid folder before the benchmark is re-run there: its finished runs
are skipped, the remaining runs train, and its report covers old and new runs alike.  ``segal report``
also reads a records folder directly.  Unfinished runs are not saved (their next cycle warm-starts
from a network that is not kept); a run already in the target grid is left alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segal.cli import os_error_line  # noqa: E402
from segal.errors import UserError  # noqa: E402
from segal.records import restore_records, save_records  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    save = sub.add_parser("save", help="copy finished runs' records out of a grid folder")
    save.add_argument("grid", type=Path)
    save.add_argument("records", type=Path)
    restore = sub.add_parser("restore", help="copy saved records into a grid folder")
    restore.add_argument("records", type=Path)
    restore.add_argument("grid", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(soft_wrap=True)  # one line per message, however narrow the terminal
    try:
        if args.command == "save":
            done, source = save_records(args.grid, args.records), args.grid
        else:
            done, source = restore_records(args.records, args.grid), args.records
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except OSError as exc:
        console.print(f"[bold red]error:[/] {os_error_line(exc) or exc}", highlight=False)
        return 2
    verb = "saved" if args.command == "save" else "restored"
    for run in done.copied:
        console.print(f"{verb}: {run.relative_to(source)}", highlight=False)
    for run, why in done.skipped.items():
        console.print(f"[yellow]left out[/]: {run.relative_to(source)} — {why}", highlight=False)
    console.print(f"{len(done.copied)} run(s) {verb}, {len(done.skipped)} left out", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
