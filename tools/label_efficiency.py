"""The CamVid label-efficiency benchmark: every strategy against random, several seeds, one table.

    python tools/label_efficiency.py                            # the full grid (hours on 2 CPU cores)
    python tools/label_efficiency.py --strategies random,entropy --seeds 0 --cycles 3
    python tools/label_efficiency.py --quick                    # a smoke run: tiny sizes, 1 seed

It is `segal sweep` with the settings fixed and printed, so that a number in a closing note can be
reproduced from scratch: CamVid train (367 images) as the pool, val (101) as the test split, DeepLabV3+
(ResNet-18, no pretrained weights), 10% initial labeled set, +5% per cycle. The grid is resumable: kill
it and run the same command again. The report (table, curves.png, report.html) is written to
OUT/report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_STRATEGIES = "random,entropy,coreset,vaal,vaal:paper"


def settings(args: argparse.Namespace) -> tuple[dict, dict]:
    """Recipe overrides and per-strategy parameters for the benchmark."""
    overrides = {
        "data.root": args.data_root,
        "data.image_size": list(args.image_size),
        "train.steps": args.steps,
        "train.epochs": None,
        "train.batch_size": args.batch_size,
        "active.initial": 0.1,
        "active.budget": 0.05,
        "active.final": None,
        "active.cycles": args.cycles,
        "device": args.device,
    }
    vaal = {"image_size": args.vae_size, "z_dim": args.z_dim, "width": args.vae_width, "batch_size": 32,
            "steps": args.vae_steps}
    return overrides, {"vaal": vaal}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "camvid"))
    parser.add_argument("--out", default="runs/label-efficiency")
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cycles", type=int, default=5, help="acquisitions after the initial 10%% (5 → 35%%)")
    parser.add_argument("--image-size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    parser.add_argument("--steps", type=int, default=200, help="task-network optimiser steps per cycle")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--vae-size", type=int, default=32)
    parser.add_argument("--z-dim", type=int, default=32)
    parser.add_argument("--vae-width", type=int, default=32)
    parser.add_argument("--vae-steps", type=int, default=300)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.cycles, args.steps, args.image_size = "0", 1, 3, [32, 64]
        args.vae_size, args.z_dim, args.vae_width, args.vae_steps = 32, 8, 8, 3

    from segal.cli import RichProgress
    from segal.errors import UserError
    from segal.sweep import sweep

    console = Console()
    overrides, params = settings(args)
    console.print("[bold]CamVid label-efficiency benchmark[/]")
    for key, value in {**overrides, "strategies": args.strategies, "seeds": args.seeds,
                       "vaal": params["vaal"], "out": args.out}.items():
        console.print(f"  {key}: {value}")
    progress = RichProgress(Console(stderr=True))
    try:
        sweep(ROOT / "recipes" / "camvid.yaml", args.strategies.split(","), [int(s) for s in args.seeds.split(",")],
              Path(args.out), overrides, progress, strategy_params=params, console=console)
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    finally:
        progress.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
