"""The convergence check of the CamVid benchmark: does doubling the steps still change mIoU?

    python tools/convergence.py --out runs/convergence                    # 37:800 and 145:1600, seeds 0,1
    python tools/convergence.py --points 37:800,145:1600 --seeds 0,1 --jobs 2
    python tools/convergence.py --quick --out /tmp/conv                   # a smoke run (tests)

A schedule is converged at a budget when training twice as long changes the test mIoU by less than
``--tolerance`` points (issue 14: 1 point, mean over 2 seeds).  For each ``N:S`` point this trains
``random`` on ``N`` labeled images (one cycle, no acquisition) for ``S`` and for ``2S`` steps, for every
seed, with the benchmark's settings (``tools/label_efficiency.py``: DeepLabV3+ R18 from scratch, batch 8,
Adam 1e-3 poly, the training-input cache), and prints mIoU per run, the mean change and the verdict.

Every run is a plain ``segal acquire`` in ``OUT/n<N>-s<S>-seed<seed>`` (the command is printed), so it
resumes when killed and run again, and ``segal report`` reads it.  ``--jobs J`` runs J at once with one
thread each, each pinned to its own core where the affinity mask allows (two 1-thread processes share
2 cores far better than two 2-thread ones).  The table is also written to ``OUT/convergence.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Job:
    labeled: int
    steps: int
    seed: int

    @property
    def name(self) -> str:
        return f"n{self.labeled}-s{self.steps}-seed{self.seed}"


def parse_points(text: str) -> list[tuple[int, int]]:
    """``"37:800,145:1600"`` → ``[(37, 800), (145, 1600)]``."""
    points = []
    for part in text.split(","):
        labeled, _, steps = part.partition(":")
        if not (labeled.strip().isdigit() and steps.strip().isdigit()) or int(labeled) < 1 or int(steps) < 1:
            raise SystemExit(f"error: bad --points entry {part!r} — fix: write LABELED:STEPS, e.g. 37:800")
        points.append((int(labeled), int(steps)))
    return points


def jobs_for(points: list[tuple[int, int]], seeds: list[int]) -> list[Job]:
    """S then 2S at every point, seed by seed: the cheap half of the evidence arrives first."""
    return [Job(n, s * k, seed) for seed in seeds for n, s in points for k in (1, 2)]


def command(job: Job, args: argparse.Namespace) -> list[str]:
    segal = [sys.executable, "-m", "segal.cli"]
    cmd = [*segal, "acquire", str(ROOT / "recipes" / "camvid.yaml"), "--output-dir", str(Path(args.out) / job.name),
           "--seed", str(job.seed), "--strategy", "random", "--image-size", *map(str, args.image_size),
           "--steps", str(job.steps), "--set", f"active.initial={job.labeled}", "--set", "active.cycles=0",
           "--set", f"train.batch_size={args.batch_size}", "--set", "data.cache=true", "--threads", "1", "--quiet"]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    return cmd


def final_miou(run_dir: Path) -> float | None:
    """The run's cycle-0 mIoU in points (``cycles/0/metrics.json`` stores a fraction), None while unfinished."""
    path = run_dir / "cycles" / "0" / "metrics.json"
    if not path.is_file():
        return None
    return 100 * float(json.loads(path.read_text())["miou"])


def run_all(jobs: list[Job], args: argparse.Namespace) -> dict[str, float]:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    free = list(cores)

    def one(job: Job) -> None:
        out = Path(args.out) / job.name
        if final_miou(out) is not None:
            return
        core = free.pop(0) if free else None
        try:
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
            pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
            print("  $ " + " ".join(command(job, args)), flush=True)
            t0 = time.perf_counter()
            done = subprocess.run(command(job, args), env=env, preexec_fn=pin, check=False)
            print(f"  {job.name}: exit {done.returncode} after {time.perf_counter() - t0:.0f} s", flush=True)
        finally:
            if core is not None:
                free.append(core)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, jobs))
    return {job.name: m for job in jobs if (m := final_miou(Path(args.out) / job.name)) is not None}


def verdict(points: list[tuple[int, int]], seeds: list[int], miou: dict[str, float], tolerance: float) -> list[dict]:
    """Per point: mIoU at S and 2S for each seed, the mean change, and whether it is below ``tolerance``."""
    rows = []
    for n, s in points:
        pairs = [(miou.get(Job(n, s, seed).name), miou.get(Job(n, 2 * s, seed).name)) for seed in seeds]
        done = [(a, b) for a, b in pairs if a is not None and b is not None]
        change = sum(b - a for a, b in done) / len(done) if done else None
        rows.append({"labeled": n, "steps": s, "per_seed": [list(p) for p in pairs],
                     "mean_at_steps": sum(a for a, _ in done) / len(done) if done else None,
                     "mean_at_double": sum(b for _, b in done) / len(done) if done else None,
                     "mean_change": change, "seeds_done": len(done),
                     "converged": None if change is None else abs(change) < tolerance})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/convergence")
    parser.add_argument("--points", default="37:800,145:1600", help="LABELED:STEPS pairs; each also runs 2×STEPS")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--image-size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data-root", help="CamVid root (default: the recipe's data.root)")
    parser.add_argument("--tolerance", type=float, default=1.0, help="mIoU points (issue 14: 1)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread and one core each")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.seeds, args.image_size, args.batch_size = "4:2", "0", [32, 64], 2
    points, seeds = parse_points(args.points), [int(s) for s in args.seeds.split(",")]
    print(f"convergence check: points {points} (and 2× steps), seeds {seeds}, size {args.image_size}, "
          f"batch {args.batch_size}, tolerance {args.tolerance} mIoU, out {args.out}", flush=True)
    miou = run_all(jobs_for(points, seeds), args)
    rows = verdict(points, seeds, miou, args.tolerance)
    for row in rows:
        per_seed = "; ".join(f"{a if a is None else round(a, 2)} → {b if b is None else round(b, 2)}"
                             for a, b in row["per_seed"])
        change = "–" if row["mean_change"] is None else f"{row['mean_change']:+.2f}"
        print(f"  {row['labeled']} labeled, {row['steps']} → {2 * row['steps']} steps: {per_seed}; "
              f"mean change {change}; converged: {row['converged']}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    out = {"settings": {**vars(args), "points": points, "seeds": seeds}, "points": rows,
           "runs": {k: round(v, 4) for k, v in miou.items()}, "jobs": [asdict(j) for j in jobs_for(points, seeds)]}
    from segal.fileio import atomic_write_json

    atomic_write_json(Path(args.out) / "convergence.json", out)
    return 0 if all(r["seeds_done"] == len(seeds) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
