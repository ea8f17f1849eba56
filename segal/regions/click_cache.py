"""Precise click costs, computed once per region cache and stored next to its maps.

Counting each region's polygon clicks (:func:`segal.regions.training.region_clicks`) reads every mask
of the pool and traces every class piece: about 10 s on CamVid's 367 images, paid at each process
start before this cache.  The result is a pure function of the region maps, the ground truth and the
click rule, so it is kept in ``<region cache>/clicks-precise.npz`` with the key it was computed
under: the region cache's manifest (spec, pool ids, image digest and the digests of its arrays), a
digest of the masks (sizes and modification times of up to 64 sampled mask files, and the first
mask's pixels, as the region cache digests images) and the rule's constants.  A changed key, a torn
or edited file (its array carries its own SHA-256) is a cache miss: the clicks are counted again and
the file rewritten atomically.  Dominant clicks (one per region) need no cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from segal.data.base import Dataset
from segal.data.files import digest_file_stats, sampled_indices
from segal.fileio import atomic_write_bytes
from segal.progress import Progress
from segal.regions import costs
from segal.regions.cache import RegionCache
from segal.regions.training import region_clicks

FILE = "clicks-precise.npz"
FORMAT = 2  # bump when the click rule changes in a way its constants below do not show (2: nested pieces count)


def clicks_key(pool: Dataset, cache: RegionCache) -> dict[str, Any]:
    """What precise clicks depend on: the region maps (the cache's manifest), the masks and the rule."""
    masks = hashlib.sha256()
    digest_file_stats(masks, (pool.target_path(i) for i in sampled_indices(len(pool))))
    masks.update(np.ascontiguousarray(pool.load_target(0)).tobytes())
    manifest = json.dumps(cache.manifest, sort_keys=True, default=str).encode()
    return {"format": FORMAT, "maps": hashlib.sha256(manifest).hexdigest()[:32], "masks": masks.hexdigest()[:32],
            "epsilon": costs.EPSILON, "min_vertices": costs.MIN_VERTICES, "regions": cache.num_regions}


def _read(path: Path, key: dict[str, Any]) -> np.ndarray | None:
    """The stored clicks when the file is intact and was computed under ``key``; else ``None``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_key, digest, clicks = json.loads(str(data["key"])), str(data["sha256"]), data["clicks"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # JSONDecodeError is a ValueError
        return None
    if stored_key != key or clicks.dtype != np.int64 or clicks.shape != (key["regions"],):
        return None
    if hashlib.sha256(clicks.tobytes()).hexdigest() != digest:
        return None
    return clicks


def cached_precise_clicks(pool: Dataset, cache: RegionCache, progress: Progress | None = None) -> np.ndarray:
    """Precise clicks of every region of ``cache`` (``int64``): read from the cache directory when current,
    else counted (:func:`~segal.regions.training.region_clicks`) and stored atomically."""
    key = clicks_key(pool, cache)
    path = Path(cache.directory) / FILE
    clicks = _read(path, key) if path.exists() else None
    if clicks is None:
        clicks = np.ascontiguousarray(region_clicks(pool, cache, "precise", progress), dtype=np.int64)
        buffer = io.BytesIO()
        np.savez(buffer, clicks=clicks, key=np.array(json.dumps(key, sort_keys=True)),
                 sha256=np.array(hashlib.sha256(clicks.tobytes()).hexdigest()))
        atomic_write_bytes(path, buffer.getvalue())
    return clicks


__all__ = ["FILE", "cached_precise_clicks", "clicks_key"]
