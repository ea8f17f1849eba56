"""Scale benchmark: pool state and pool scoring at ImageNet size, and the resized-image cache.

    python tools/bench_scale.py                 # 10k, 100k and 1.28M ids
    python tools/bench_scale.py --quick         # 10k and 100k only
    python tools/bench_scale.py --camvid ../shared/data/camvid   # also time the VAE-input cache on real PNGs
    python tools/bench_scale.py --regions       # region pools of 10k, 100k and 1.28M regions instead

(1) saves and loads a PoolState with 10% labeled; (2) scores every unlabeled image of a synthetic
pool (8×8 images generated on the fly, a 1×1-conv "network") with the streaming entropy scorer in a
fresh subprocess per size and reports its peak RSS: it should stay flat as the pool grows, because
memory is bounded by the batch, not the pool; (3) times reading VAE-sized inputs by decoding the
full images versus from the memory-mapped cache.

``--regions`` does the same for region-level runs, one fresh subprocess per pool of 1,280 grid regions
per image: builds and reopens the region cache, saves and loads the region labels (10% of the images
labeled) with ``state.json``, scores every unlabeled region by the mean of a synthetic per-pixel map
streamed image by image, selects a 5% pixel budget, and reports peak RSS above the imports' baseline.
The memory-mapped maps count in RSS once read (164 MB at 1.28M regions, page cache the kernel can
reclaim); the rest is about 100 bytes per region (the cache's area, boxes and offsets, the labels, the
scores, and the sort inside ``select_under_budget``), never a pixel map of more than one image.
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


# ---------------------------------------------------------------------------------------------- regions
# Region-level pools: N synthetic images cut into a grid of PATCH-pixel squares (GRID rows × columns).
# A 256×320 map of 8-pixel patches holds 32×40 = 1,280 regions, so 1,000 images make 1.28 million
# regions while the uint16 maps stay at 164 KB per image (164 MB on disk at the largest size).
REGION_GRID = (32, 40)
REGION_PATCH = 8
REGION_IMAGES = (8, 78, 1000)  # 10,240, 99,840 and 1,280,000 regions
LABELED_SHARE = 0.10  # of the images, labeled whole (cycle 0)
PIXEL_BUDGET = 0.05  # of all the pool's pixels, acquired in one selection


class GridImages:
    """A pool of ``n`` blank ``H×W`` images: grid regions do not depend on the pixels, only on the size."""

    task = "segmentation"

    def __init__(self, n: int, shape: tuple[int, int]):
        self.n, self.shape = n, shape

    def __len__(self) -> int:
        return self.n

    def image_id(self, i: int) -> str:
        return f"img{i:07d}"

    def image_path(self, i: int) -> None:
        return None

    def load_image(self, i: int) -> np.ndarray:
        return np.zeros((*self.shape, 3), np.uint8)

    @property
    def ids(self) -> list[str]:
        return [self.image_id(i) for i in range(self.n)]


def pixel_scores(image: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A stand-in for one image's per-pixel softmax entropy: seeded uniform ``float32`` at the map's size."""
    return np.random.default_rng((seed, image)).random(shape, dtype=np.float32)


def score_regions(cache, labels, seed: int = 0) -> np.ndarray:
    """The mean pixel score of every region of an image with an unlabeled region, streaming image by image.

    One image's pixel map is alive at a time and is reduced per region with ``np.bincount`` on that
    image's region map into one preallocated ``float32`` array (``NaN`` for images skipped because they
    are fully labeled), so memory is 4 bytes per region plus one image, whatever the pool's size.
    """
    scores = np.full(cache.num_regions, np.nan, dtype=np.float32)
    unlabeled = labels.status == -1  # segal.regions.state.UNLABELED
    offsets, area = cache.offsets, cache.area
    for i in range(cache.num_images):
        start, end = int(offsets[i]), int(offsets[i + 1])
        if not unlabeled[start:end].any():
            continue
        region_map = cache.region_map(i)
        sums = np.bincount(region_map.ravel(), weights=pixel_scores(i, region_map.shape, seed).ravel(),
                           minlength=end - start)
        scores[start:end] = sums / area[start:end]
    return scores


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _proc_status_mb(field: str) -> float | None:
    """A field of /proc/self/status (Linux) in MB: current anonymous or file-backed resident memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def region_worker(images: int, directory: Path, grid: tuple[int, int] = REGION_GRID,
                  patch: int = REGION_PATCH) -> dict:
    """Build, reopen, save/load the labels of, score and select from one region pool (in this process)."""
    import segal.distributed  # noqa: F401  (torch, ~470 MB, which the first write imports: baseline, not pool)
    from segal.pool import PoolState
    from segal.regions.budget import select_under_budget
    from segal.regions.cache import RegionCache
    from segal.regions.maps import RegionSpec
    from segal.regions.state import RegionLabels, load_region_labels, save_region_state

    out: dict = {"images": images, "baseline_mb": _rss_mb(), "file_baseline_mb": _proc_status_mb("RssFile")}
    shape = (grid[0] * patch, grid[1] * patch)
    spec = RegionSpec(method="grid", patch=patch, resolution=shape)
    t0 = time.perf_counter()
    RegionCache.build(GridImages(images, shape), spec, directory / "cache")
    out["build_s"] = time.perf_counter() - t0
    out["cache_mb"] = sum(p.stat().st_size for p in (directory / "cache").rglob("*") if p.is_file()) / 1e6
    out["rss_build_mb"] = _rss_mb()
    t0 = time.perf_counter()
    cache = RegionCache.open(directory / "cache")
    out["open_s"] = time.perf_counter() - t0
    out["regions"] = cache.num_regions

    labels = RegionLabels.empty(cache.offsets)
    labeled_images = np.random.default_rng(0).choice(images, max(1, round(LABELED_SHARE * images)), replace=False)
    labels.add_labeled(labels.regions_of(labeled_images), cycle=0)
    state = PoolState(size=images, budgets=[len(labeled_images)], seed=0, pool_fingerprint="bench")
    state_path = directory / "run" / "state.json"
    state_path.parent.mkdir()
    t0 = time.perf_counter()
    save_region_state(state, labels, state_path)
    out["save_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = load_region_labels(PoolState.load(state_path), state_path, cache.offsets)
    out["load_s"] = time.perf_counter() - t0
    assert loaded == labels
    out["state_mb"] = sum(p.stat().st_size for p in state_path.parent.iterdir()) / 1e6
    out["labeled"] = loaded.num_labeled

    t0 = time.perf_counter()
    scores = score_regions(cache, loaded)
    out["score_s"] = time.perf_counter() - t0
    out["rss_score_mb"] = _rss_mb()
    candidates = loaded.unlabeled_regions()
    out["scored"] = len(candidates)
    assert np.isfinite(scores[candidates]).all()
    budget = PIXEL_BUDGET * int(cache.area.sum(dtype=np.int64))
    t0 = time.perf_counter()
    chosen = select_under_budget(candidates, scores[candidates], cache.area[candidates], budget)
    out["select_s"] = time.perf_counter() - t0
    out["chosen"] = len(chosen)
    out["chosen_pixels"] = int(cache.area[chosen].sum(dtype=np.int64))
    out["budget_pixels"] = budget
    out["peak_mb"] = _rss_mb()
    out["anon_mb"], out["file_mb"] = _proc_status_mb("RssAnon"), _proc_status_mb("RssFile")
    return out


def bench_regions(images: int, directory: Path, grid: tuple[int, int] = REGION_GRID,
                  patch: int = REGION_PATCH) -> dict:
    """:func:`region_worker` in a fresh process, so that its peak RSS is that pool's alone."""
    args = [sys.executable, str(Path(__file__).resolve()), "--region-worker", str(images), "--dir", str(directory),
            "--grid", str(grid[0]), str(grid[1]), "--patch", str(patch)]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def regions_table(rows: list[dict], grid: tuple[int, int] = REGION_GRID) -> Table:
    table = Table(title=f"region pools: {grid[0]}×{grid[1]} grid regions per image, "
                        f"{LABELED_SHARE:.0%} of images labeled, {PIXEL_BUDGET:.0%} pixel budget",
                  caption="baseline: RSS after the imports (torch); growth: peak minus baseline; of it mapped: "
                          "file-backed pages of maps.npy read by the scorer (page cache the kernel can reclaim)")
    for col in ("regions", "images", "build s", "cache MB", "open s", "save s", "load s", "state MB",
                "scoring s", "regions/s", "select s", "baseline MB", "peak RSS MB", "growth MB",
                "of it mapped MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['regions']:,}", f"{r['images']:,}", f"{r['build_s']:.2f}", f"{r['cache_mb']:.1f}",
                      f"{r['open_s']:.3f}", f"{r['save_s']:.3f}", f"{r['load_s']:.3f}", f"{r['state_mb']:.2f}",
                      f"{r['score_s']:.2f}", f"{r['scored'] / r['score_s']:,.0f}", f"{r['select_s']:.3f}",
                      f"{r['baseline_mb']:.0f}", f"{r['peak_mb']:.0f}", f"{r['peak_mb'] - r['baseline_mb']:.0f}",
                      "?" if r["file_mb"] is None else f"{r['file_mb'] - r['file_baseline_mb']:.0f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the 1.28M pool")
    parser.add_argument("--camvid", type=Path, help="CamVid root for the cache benchmark")
    parser.add_argument("--regions", action="store_true",
                        help="benchmark region pools (10k, 100k and 1.28M regions) instead of image pools")
    parser.add_argument("--images", type=int, nargs="+", help="--regions: images per pool (default 8 78 1000)")
    parser.add_argument("--grid", type=int, nargs=2, default=REGION_GRID, metavar=("ROWS", "COLUMNS"),
                        help="--regions: grid regions per image")
    parser.add_argument("--patch", type=int, default=REGION_PATCH, help="--regions: side of a region in pixels")
    parser.add_argument("--region-worker", type=int, help=argparse.SUPPRESS)  # one pool, in this process
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.region_worker is not None:
        print(json.dumps(region_worker(args.region_worker, args.dir, tuple(args.grid), args.patch)))
        return
    sizes = SIZES[:2] if args.quick else SIZES
    console = Console(width=140)  # the table is wider than a pipe's default 80 columns
    if args.regions:
        images = args.images or (REGION_IMAGES[:2] if args.quick else REGION_IMAGES)
        rows = []
        for n in images:
            with tempfile.TemporaryDirectory() as tmp:  # one pool on disk at a time
                rows.append(bench_regions(n, Path(tmp), tuple(args.grid), args.patch))
        Console(width=180).print(regions_table(rows, tuple(args.grid)))
        return
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
