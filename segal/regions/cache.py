"""The region cache: every pool image's region map computed once, stored memory-mapped, read by every run.

A cache directory holds

* ``maps.npy`` — ``N×H×W`` local region ids at the spec's resolution, ``uint16`` when every image has
  fewer than 65,536 regions, else ``int32`` (360×480 CamVid maps: 338 KiB per image);
* ``offsets.npy`` — ``int64`` ``N+1``: image ``i`` owns the global region ids
  ``offsets[i] .. offsets[i+1]-1``, global id = ``offsets[i]`` + local id;
* ``area.npy`` — ``int32`` pixel count of each global region at the stored resolution;
* ``bbox.npy`` — ``int32`` ``y0, x0, y1, x1`` of each region (end-exclusive);
* ``manifest.json`` — the key (spec, pool ids, a digest of the image files), dtype, shape, region
  count and SHA-256 digests of the three small arrays.  It is written **last**, atomically: a
  directory without a valid manifest is an unfinished build.

Building goes chunk by chunk (:data:`CHUNK` images): a chunk's maps are written into ``maps.npy``
and flushed, then its areas and boxes are written atomically to ``partial/chunk-K.npz`` and
``crash_point("regions.chunk")`` is reached.  A build killed at any moment resumes at the first
chunk without a record and ends with the same bytes as an uninterrupted one (maps are a pure
function of image and spec).  A cache built for another spec or other data is rebuilt; one whose
files were damaged or edited is a :class:`~segal.errors.UserError` naming the file.

Only the small per-region arrays are held in memory (20 bytes per region: 26 MB for 1.28 million
regions); maps stay on disk and :meth:`RegionCache.region_map` returns a view of the memory map.
Build on one process (rank 0 of a distributed run): only rank 0 writes the records and the manifest.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage  # a dependency of scikit-image: find_objects gives every region's box in one pass

from segal.crashpoints import crash_point
from segal.data.files import digest_file_stats, sampled_indices
from segal.errors import UserError
from segal.fileio import atomic_write_bytes, atomic_write_json, fingerprint, read_json
from segal.progress import Progress
from segal.regions.maps import RegionSpec, compute_region_map, region_shape

if TYPE_CHECKING:
    from segal.data.base import Dataset

FORMAT = 1  # bump when the layout of the directory changes
CHUNK = 64  # images per committed chunk of a build
MANIFEST, MAPS, OFFSETS, AREA, BBOX = "manifest.json", "maps.npy", "offsets.npy", "area.npy", "bbox.npy"
PARTIAL = "partial"  # the chunk records of an unfinished build
UINT16_LIMIT = 65536  # images with fewer regions than this store their maps as uint16
REBUILD = "delete the region cache folder to compute the regions again"


def region_stats(region_map: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count (``int32``) and ``y0, x0, y1, x1`` box (``int32``, end-exclusive) of regions ``0..count-1``."""
    area = np.bincount(region_map.ravel(), minlength=count).astype(np.int32)
    boxes = ndimage.find_objects(region_map.astype(np.int32, copy=False) + 1, max_label=count)
    bbox = np.array([(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in boxes], dtype=np.int32)
    return area, bbox.reshape(count, 4)


def pool_key(dataset: Dataset, spec: RegionSpec) -> dict[str, Any]:
    """What the maps depend on: spec, the pool's ids in order, its image size and a digest of its images.

    The digest covers the sizes and modification times of up to 64 evenly spaced image files (where
    the dataset has files: stat-ing a whole pool would cost more than it saves) and the first image's
    pixels, as in :mod:`segal.data.train_cache`.
    """
    n = len(dataset)
    if n == 0:
        raise UserError("the pool has no images to cut into regions", fix="check data.root and the split")
    first = dataset.load_image(0)
    digest = hashlib.sha256(np.ascontiguousarray(first).tobytes())
    digest_file_stats(digest, (dataset.image_path(i) for i in sampled_indices(n)))
    h, w = region_shape(spec, first.shape)
    return {"format": FORMAT, "spec": spec.to_dict(), "spec_fingerprint": spec.fingerprint(), "count": n,
            "ids": fingerprint(dataset.ids), "data": digest.hexdigest()[:32], "shape": [h, w]}


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _map_npy(path: Path) -> np.ndarray:
    """The array in ``path``, memory-mapped read-only; unreadable or truncated is a UserError naming it."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"region cache file unreadable or truncated ({exc})", path=path, fix=REBUILD) from None


def _read_npy(path: Path) -> tuple[np.ndarray, bytes]:
    """The array in ``path`` and the file's bytes (for its digest); unreadable is a UserError naming it."""
    try:
        data = path.read_bytes()
        return np.load(io.BytesIO(data), allow_pickle=False), data
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"region cache file unreadable or truncated ({exc})", path=path, fix=REBUILD) from None


class _Widen(Exception):
    """An image has too many regions for ``uint16``: the build restarts with ``int32`` maps."""


class RegionCache:
    """The region maps of one pool, opened read-only from a complete cache directory."""

    def __init__(self, directory: Path, manifest: dict, maps: np.ndarray, offsets: np.ndarray,
                 area: np.ndarray, bbox: np.ndarray):
        self.directory = directory
        self.manifest = manifest
        self.spec = RegionSpec.from_dict(manifest["spec"])
        self.maps = maps
        self.offsets = offsets
        self.area = area
        self.bbox = bbox

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, dataset: Dataset, spec: RegionSpec, directory: Path | str,
              progress: Progress | None = None, chunk: int = CHUNK) -> RegionCache:
        """The cache of ``dataset`` under ``spec`` in ``directory``: opened when it is complete and
        current, resumed when a build was interrupted, (re)built otherwise."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise UserError("the region cache folder is a file", path=directory, fix="remove the file or move it away")
        key = pool_key(dataset, spec)
        manifest = directory / MANIFEST
        if manifest.exists():
            if _key_of(read_json(manifest, fix=REBUILD)) == key:
                shutil.rmtree(directory / PARTIAL, ignore_errors=True)  # a build killed after its manifest
                return cls.open(directory)
            manifest.unlink()  # stale: from here on the old files are an unfinished build
        while True:
            try:
                _build_chunks(dataset, spec, directory, key, progress or Progress(), chunk)
                break
            except _Widen:
                continue
        return cls.open(directory)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, directory: Path | str) -> RegionCache:
        """A complete cache; damaged or hand-edited files are a UserError naming the file."""
        directory = Path(directory)
        path = directory / MANIFEST
        if not path.exists():
            raise UserError("no complete region cache here (manifest.json missing: an unfinished build?)",
                            path=directory, fix="build the region cache (it resumes an unfinished build)")
        manifest = read_json(path, fix=REBUILD)
        try:
            n, (h, w), dtype, total = (int(manifest["count"]), [int(v) for v in manifest["shape"]],
                                       np.dtype(manifest["dtype"]), int(manifest["regions"]))
            digests = {name: str(manifest["sha256"][name]) for name in (OFFSETS, AREA, BBOX)}
            RegionSpec.from_dict(manifest["spec"])
        except (KeyError, TypeError, ValueError, UserError) as exc:
            raise UserError(f"region cache manifest is malformed ({exc})", path=path, fix=REBUILD) from None
        if dtype not in (np.uint16, np.int32) or manifest.get("format") != FORMAT:
            raise UserError("region cache manifest of another format or dtype", path=path, fix=REBUILD)

        maps = _map_npy(directory / MAPS)
        if maps.shape != (n, h, w) or maps.dtype != dtype:
            raise UserError(f"maps.npy holds {maps.dtype} {maps.shape}, the manifest says {dtype} {(n, h, w)}",
                            path=directory / MAPS, fix=REBUILD)
        arrays = {}
        for name in (OFFSETS, AREA, BBOX):
            arrays[name], data = _read_npy(directory / name)
            if hashlib.sha256(data).hexdigest() != digests[name]:
                raise UserError(f"{name} changed since the region cache was built", path=directory / name,
                                fix=REBUILD)
        offsets, area, bbox = arrays[OFFSETS], arrays[AREA], arrays[BBOX]
        _check_arrays(directory, n, h, w, total, offsets, area, bbox)
        return cls(directory, manifest, maps, offsets, area, bbox)

    def matches(self, dataset: Dataset, spec: RegionSpec) -> bool:
        """Whether this cache was built for ``dataset`` under ``spec``."""
        return _key_of(self.manifest) == pool_key(dataset, spec)

    # ------------------------------------------------------------------ reading

    @property
    def num_images(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_regions(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the stored maps."""
        return int(self.maps.shape[1]), int(self.maps.shape[2])

    @property
    def counts(self) -> np.ndarray:
        """Regions per image (``int64``)."""
        return np.diff(self.offsets)

    def region_map(self, index: int) -> np.ndarray:
        """Image ``index``'s local region ids (a read-only view of the memory map, no copy)."""
        return self.maps[index]

    def regions_of(self, index: int) -> np.ndarray:
        """The global ids of image ``index``'s regions."""
        return np.arange(self.offsets[index], self.offsets[index + 1], dtype=np.int64)

    def image_of(self, global_ids: np.ndarray | int) -> np.ndarray:
        """The image of each global region id; an id out of range is an IndexError."""
        ids = np.asarray(global_ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_regions):
            bad = int(ids[(ids < 0) | (ids >= self.num_regions)].ravel()[0])
            raise IndexError(f"region id {bad} out of range 0..{self.num_regions - 1}")
        return np.searchsorted(self.offsets, ids, side="right") - 1

    def local_ids(self, global_ids: np.ndarray | int) -> np.ndarray:
        """Each global id as an id in its image's map."""
        ids = np.asarray(global_ids, dtype=np.int64)
        return ids - self.offsets[self.image_of(ids)]


def _key_of(manifest: Any) -> dict | None:
    if not isinstance(manifest, dict):
        return None
    return {k: manifest.get(k) for k in ("format", "spec", "spec_fingerprint", "count", "ids", "data", "shape")}


def _check_arrays(directory: Path, n: int, h: int, w: int, total: int, offsets: np.ndarray,
                  area: np.ndarray, bbox: np.ndarray) -> None:
    """Consistency of the small arrays with each other and the maps' shape (a manifest edited with them)."""
    if offsets.dtype != np.int64 or offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != total \
            or (np.diff(offsets) < 1).any():
        raise UserError(f"offsets.npy is not {n + 1} increasing int64 offsets from 0 to {total}",
                        path=directory / OFFSETS, fix=REBUILD)
    if area.dtype != np.int32 or area.shape != (total,) or (area < 1).any():
        raise UserError(f"area.npy is not {total} positive int32 pixel counts", path=directory / AREA, fix=REBUILD)
    per_image = np.add.reduceat(area.astype(np.int64), offsets[:-1])
    if (per_image != h * w).any():
        first = int(np.flatnonzero(per_image != h * w)[0])
        raise UserError(f"offsets.npy does not match area.npy: image {first}'s regions cover "
                        f"{int(per_image[first])} pixels, not {h * w}", path=directory / OFFSETS, fix=REBUILD)
    if (bbox.dtype != np.int32 or bbox.shape != (total, 4) or (bbox[:, :2] < 0).any()
            or (bbox[:, 2] > h).any() or (bbox[:, 3] > w).any() or (bbox[:, 2:] <= bbox[:, :2]).any()):
        raise UserError(f"bbox.npy is not {total} int32 boxes inside {h}×{w}", path=directory / BBOX, fix=REBUILD)


def _build_chunks(dataset: Dataset, spec: RegionSpec, directory: Path, key: dict, progress: Progress,
                  chunk: int) -> None:
    """Compute the chunks that have no record yet, then write the small arrays and the manifest."""
    n, (h, w) = key["count"], key["shape"]
    partial = directory / PARTIAL
    key_path = partial / "key.json"
    build_key = {**key, "chunk": chunk}  # records of another chunk size describe other images
    try:
        resume = read_json(key_path) == build_key
    except (OSError, UserError):
        resume = False
    if not resume:
        key_path.unlink(missing_ok=True)  # first, so that a crash below never leaves old records under a key
        shutil.rmtree(partial, ignore_errors=True)
        for name in (MAPS, OFFSETS, AREA, BBOX):
            (directory / name).unlink(missing_ok=True)
        atomic_write_json(key_path, build_key)
    maps = _open_maps(directory / MAPS, partial, (n, h, w))
    starts = list(range(0, n, chunk))
    records = {k: _read_record(partial, k, min(chunk, n - start)) for k, start in enumerate(starts)}
    todo = [i for k, start in enumerate(starts) if records[k] is None for i in range(start, min(start + chunk, n))]
    counts: list[int] = []
    areas: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    for i in progress.track(todo, total=len(todo), description="computing regions"):
        image = dataset.load_image(i)
        if spec.resolution is None and image.shape[:2] != (h, w):
            raise UserError(f"image {dataset.image_id(i)} is {image.shape[1]}×{image.shape[0]}, the pool's first "
                            f"{w}×{h}", path=dataset.image_path(i),
                            fix="set regions.resolution: [H, W] to compute regions of all images at one size")
        region_map = compute_region_map(image, spec)
        count = int(region_map.max()) + 1
        if count >= UINT16_LIMIT and maps.dtype == np.uint16:
            _recreate_maps(directory / MAPS, partial, (n, h, w), np.int32)
            raise _Widen
        maps[i] = region_map
        area, bbox = region_stats(region_map, count)
        counts.append(count)
        areas.append(area)
        boxes.append(bbox)
        k = i // chunk
        if i == min(starts[k] + chunk, n) - 1:  # the chunk's last image: commit it
            maps.flush()
            record = {"counts": np.array(counts, np.int64), "area": np.concatenate(areas),
                      "bbox": np.concatenate(boxes)}
            buffer = io.BytesIO()
            np.savez(buffer, counts=record["counts"], area=record["area"], bbox=record["bbox"])
            atomic_write_bytes(partial / f"chunk-{k:06d}.npz", buffer.getvalue())
            records[k] = record
            counts, areas, boxes = [], [], []
            crash_point("regions.chunk")
    del maps  # closes the memory map
    ordered = [r for r in records.values() if r is not None]  # every chunk has its record by now
    assert len(ordered) == len(starts)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate([r["counts"] for r in ordered]))]).astype(np.int64)
    small = {OFFSETS: offsets, AREA: np.concatenate([r["area"] for r in ordered]),
             BBOX: np.concatenate([r["bbox"] for r in ordered])}
    digests = {}
    for name, array in small.items():
        data = _npy_bytes(array)
        atomic_write_bytes(directory / name, data)
        digests[name] = hashlib.sha256(data).hexdigest()
    dtype = np.load(directory / MAPS, mmap_mode="r").dtype
    atomic_write_json(directory / MANIFEST, {**key, "dtype": dtype.name, "regions": int(offsets[-1]),
                                             "sha256": digests})
    shutil.rmtree(partial, ignore_errors=True)
    for name in (MANIFEST, OFFSETS, AREA, BBOX):  # temporary files of writes killed before their rename
        for leftover in directory.glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def _open_maps(path: Path, partial: Path, shape: tuple[int, int, int]) -> np.memmap:
    """``maps.npy`` of an unfinished build for writing; missing, torn or of another shape: created anew."""
    try:
        maps = np.lib.format.open_memmap(path, mode="r+")
        if maps.shape == shape and maps.dtype in (np.uint16, np.int32):
            return maps
    except (OSError, ValueError, EOFError):
        pass
    return _recreate_maps(path, partial, shape, np.uint16)


def _recreate_maps(path: Path, partial: Path, shape: tuple[int, int, int], dtype: type) -> np.memmap:
    for record in partial.glob("chunk-*.npz"):  # they describe the old file's maps
        record.unlink()
    path.unlink(missing_ok=True)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _read_record(partial: Path, k: int, images: int) -> dict[str, np.ndarray] | None:
    """Chunk ``k``'s record, or None where it is missing or does not hold ``images`` images."""
    path = partial / f"chunk-{k:06d}.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            record = {name: data[name] for name in ("counts", "area", "bbox")}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    total = int(record["counts"].sum()) if record["counts"].shape == (images,) else -1
    if total < 0 or record["area"].shape != (total,) or record["bbox"].shape != (total, 4):
        return None
    return record


__all__ = ["CHUNK", "RegionCache", "pool_key", "region_stats"]
