"""The convergence check of the CamVid benchmark: does doubling the steps still change mIoU?

    python tools/convergence.py --out runs/convergence                    # 37:800 and 145:1600, seeds 0,1
    python tools/convergence.py --points 37:800,145:1600 --seeds 0,1 --jobs 2
    python tools/convergence.py --quick --out /tmp/conv                   # a smoke run (tests)
    python tools/convergence.py --benchmark cifar10 --out runs/convergence-cifar10   # 1000:800, 4000:1600

``--benchmark cifar10`` checks the CIFAR-10 JPEG benchmark instead (``recipes/cifar10-jpg.yaml``, ResNet-18
at 32×32, batch 128, accuracy in points instead of mIoU).

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

# Each benchmark's recipe and the defaults of the check (tools/label_efficiency.py trains with the same).
BENCHMARKS = {
    "camvid": {"recipe": "camvid.yaml", "points": "37:800,145:1600", "image_size": [96, 128], "batch_size": 8},
    "cifar10": {"recipe": "cifar10-jpg.yaml", "points": "1000:800,4000:1600", "image_size": [32, 32],
                "batch_size": 128},
}


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
    recipe = ROOT / "recipes" / BENCHMARKS[args.benchmark]["recipe"]
    cmd = [*segal, "acquire", str(recipe), "--output-dir", str(Path(args.out) / job.name),
           "--seed", str(job.seed), "--strategy", "random", "--image-size", *map(str, args.image_size),
           "--steps", str(job.steps), "--set", f"active.initial={job.labeled}", "--set", "active.cycles=0",
           "--set", f"train.batch_size={args.batch_size}", "--set", "data.cache=true", "--threads", "1", "--quiet"]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    return cmd


def final_miou(run_dir: Path) -> float | None:
    """The run's cycle-0 mIoU (accuracy for classification) in points (``cycles/0/metrics.json`` stores a
    fraction), None while unfinished."""
    path = run_dir / "cycles" / "0" / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return 100 * float(metrics["miou"] if "miou" in metrics else metrics["accuracy"])


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
    parser.add_argument("--benchmark", choices=sorted(BENCHMARKS), default="camvid")
    parser.add_argument("--out", default="runs/convergence")
    parser.add_argument("--points", help="LABELED:STEPS pairs; each also runs 2×STEPS (default: 37:800,145:1600 "
                                         "camvid, 1000:800,4000:1600 cifar10)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="default: 96 128, 32 32 (cifar10)")
    parser.add_argument("--batch-size", type=int, help="default: 8 (camvid), 128 (cifar10)")
    parser.add_argument("--data-root", help="the dataset's root (default: the recipe's data.root)")
    parser.add_argument("--tolerance", type=float, default=1.0, help="mIoU points (issue 14: 1)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread and one core each")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    args = parser.parse_args(argv)
    for key, value in BENCHMARKS[args.benchmark].items():
        if key != "recipe" and getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.points, args.seeds, args.batch_size = "4:2", "0", 2
        args.image_size = [32, 64] if args.benchmark == "camvid" else [32, 32]
    points, seeds = parse_points(args.points), [int(s) for s in args.seeds.split(",")]
    print(f"convergence check ({args.benchmark}): points {points} (and 2× steps), seeds {seeds}, size {args.image_size}, "
          f"batch {args.batch_size}, tolerance {args.tolerance} points, out {args.out}", flush=True)
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
