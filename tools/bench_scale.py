"""Scale benchmark: pool state and pool scoring at ImageNet size, and the resized-image cache.

    python tools/bench_scale.py                 # 10k, 100k and 1.28M ids
    python tools/bench_scale.py --quick         # 10k and 100k only
    python tools/bench_scale.py --camvid ../shared/data/camvid   # also time the VAE-input cache on real PNGs

(1) saves and loads a PoolState with 10% labeled; (2) scores every unlabeled image of a synthetic
pool (8×8 images generated on the fly, a 1×1-conv "network") with the streaming entropy scorer in a
fresh subprocess per size and reports its peak RSS: it should stay flat as the pool grows, because
memory is bounded by the batch, not the pool; (3) times reading VAE-sized inputs by decoding the
full images versus from the memory-mapped cache.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = (10_000, 100_000, 1_281_167)


def bench_state(n: int, tmp: Path) -> tuple[float, float, int]:
    import segal.distributed  # noqa: F401  (warm the import that the first save triggers)
    from segal.pool import PoolState

    state = PoolState(size=n, budgets=[n // 10], seed=0, pool_fingerprint="bench")
    state.add_labeled(np.random.default_rng(0).choice(n, n // 10, replace=False), cycle=0)
    path = tmp / f"state_{n}.json"
    t0 = time.perf_counter()
    state.save(path)
    t1 = time.perf_counter()
    loaded = PoolState.load(path)
    t2 = time.perf_counter()
    assert loaded.num_labeled == n // 10
    return t1 - t0, t2 - t1, path.stat().st_size


SCORER = r"""
import json, resource, sys, time
import numpy as np, torch
from segal.data.base import ClassSet, Dataset
from segal.device import Compute
from segal.strategies import STRATEGIES
from segal.strategies.context import build_context

class Synthetic(Dataset):
    task = "segmentation"
    classes = ClassSet(("a", "b", "c"), ((0, 0, 0), (1, 1, 1), (2, 2, 2)))
    def __init__(self, n): self.n = n
    def __len__(self): return self.n
    def image_id(self, i): return f"img{i:07d}"
    def load_image(self, i):
        return np.full((8, 8, 3), (i * 2654435761) % 255, dtype=np.uint8)
    def load_target(self, i): return np.zeros((8, 8), np.uint8)
    @property
    def ids(self): return [f"img{i:07d}" for i in range(self.n)]

n = int(sys.argv[1])
torch.set_num_threads(1)
model = torch.nn.Conv2d(3, 3, 1)
pool = Synthetic(n)
labeled = np.arange(0, n, 10)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ctx = build_context(pool, labeled, 1000, num_classes=3, model=model, compute=Compute(batch_size=512))
t0 = time.perf_counter()
sel = STRATEGIES.get("entropy")().select(ctx)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": n, "seconds": seconds, "peak_mb": peak / 1024, "before_mb": base / 1024, "chosen": len(sel.indices)}))
"""


def bench_scoring(n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", SCORER, str(n)], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_cache(camvid: Path, tmp: Path, size: int = 64) -> tuple[float, float, float, int]:
    import cv2

    from segal.data import DATASETS
    from segal.data.cache import ResizedImageCache

    pool = DATASETS.get("camvid")(str(camvid), "train")
    n = len(pool)
    t0 = time.perf_counter()
    for i in range(n):
        cv2.resize(pool.load_image(i), (size, size), interpolation=cv2.INTER_AREA)
    decode = time.perf_counter() - t0
    cache = ResizedImageCache(pool, (size, size), tmp / "cache")
    t1 = time.perf_counter()
    for i in range(n):
        cache.load_image(i)
    fill = time.perf_counter() - t1
    t2 = time.perf_counter()
    for i in range(n):
        cache.load_image(i)
    cached = time.perf_counter() - t2
    return decode, fill, cached, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the 1.28M pool")
    parser.add_argument("--camvid", type=Path, help="CamVid root for the cache benchmark")
    args = parser.parse_args()
    sizes = SIZES[:2] if args.quick else SIZES
    console = Console(width=140)  # the table is wider than a pipe's default 80 columns
    console.print(f"segal scale benchmark — max RSS of this process so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")
    table = Table(title="pool state (10% labeled) and streaming entropy scoring of the unlabeled 90%")
    for col in ("pool ids", "state save s", "state load s", "state.json MB", "scoring s", "images/s", "scorer peak RSS MB"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            save, load, size = bench_state(n, Path(tmp))
            score = bench_scoring(n)
            unl = n - len(range(0, n, 10))
            table.add_row(f"{n:,}", f"{save:.3f}", f"{load:.3f}", f"{size / 1e6:.2f}", f"{score['seconds']:.1f}",
                          f"{unl / score['seconds']:,.0f}", f"{score['peak_mb']:.0f}")
        console.print(table)
        if args.camvid:
            decode, fill, cached, n = bench_cache(args.camvid, Path(tmp))
            t = Table(title=f"VAE inputs (64×64) for {n} CamVid images, one pass")
            for col in ("decode + resize s", "cache fill s (first cycle)", "cache read s (later cycles)", "speed-up"):
                t.add_column(col, justify="right")
            t.add_row(f"{decode:.2f}", f"{fill:.2f}", f"{cached:.3f}", f"{decode / cached:.0f}×")
            console.print(t)


if __name__ == "__main__":
    main()
