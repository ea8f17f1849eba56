"""Which regions of the pool are labeled, in which cycle, and which wait for an annotator.

A region-level run labels superpixels or patches, not whole images.  One int16 per region holds its
status (:data:`UNLABELED`, :data:`PENDING`, or the cycle ``k ≥ 0`` it was labeled in), so 1.28 million
regions take 2.5 MB.  Region ``j`` of image ``i`` is the global region ``offsets[i] + j``: the numbering
of the region cache (``offsets`` int64, one more entry than images).  A whole image is one region
(:meth:`RegionLabels.whole_images`), so image-level runs can take the same code paths.

Persistence keeps the guarantees of ``state.json``.  The labels go to a content-addressed file next to
it (``regions-labels-<hash>.npy``) that ``state.json`` names, with its sha256 and counts.  The new file
is written first, then ``state.json`` (atomically), then the older files are deleted: a SIGKILL at any
moment leaves a ``state.json`` whose file exists and matches it.  A file that does not match (edited,
swapped, truncated) is refused on load, never trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

import numpy as np

from segal.errors import UserError
from segal.fileio import atomic_write_bytes
from segal.pool import PoolState

UNLABELED = -1
PENDING = -2
MAX_CYCLE = int(np.iinfo(np.int16).max)
FILE_PREFIX = "regions-labels-"
_FIX = "restore the file and state.json from a backup; do not edit region labels by hand"


def _distinct(ascending: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (``np.unique`` hashes, which is slower on millions)."""
    keep = np.ones(len(ascending), dtype=bool)
    keep[1:] = ascending[1:] != ascending[:-1]
    return ascending[keep]


def _ids(values: np.ndarray | list[int], num_regions: int) -> np.ndarray:
    """Global region ids as int64, refusing ones outside the pool and duplicates (a caller's bug)."""
    ids = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(ids) and (ids.min() < 0 or ids.max() >= num_regions):
        bad = ids[(ids < 0) | (ids >= num_regions)]
        raise ValueError(f"region ids outside the pool of {num_regions}: {bad[:5].tolist()}")
    ascending = np.sort(ids)
    if np.any(ascending[1:] == ascending[:-1]):
        raise ValueError("duplicate region ids in one step")
    return ids


@dataclasses.dataclass(eq=False)
class RegionLabels:
    """The label status of every region of the pool (see the module docstring)."""

    offsets: np.ndarray  # int64 (num_images + 1,): image i holds global regions offsets[i] .. offsets[i+1]-1
    status: np.ndarray  # int16 (num_regions,): UNLABELED, PENDING or the cycle the region was labeled in

    def __post_init__(self) -> None:
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 0):
            raise ValueError("offsets must be a non-decreasing int64 vector starting at 0")
        if self.status.dtype != np.int16 or self.status.shape != (int(self.offsets[-1]),):
            raise ValueError(f"status must be int16 of length offsets[-1] = {int(self.offsets[-1])}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, offsets: np.ndarray) -> RegionLabels:
        """Nothing labeled yet, for the regions numbered by ``offsets``."""
        offsets = np.asarray(offsets, dtype=np.int64)
        return cls(offsets, np.full(int(offsets[-1:].sum()), UNLABELED, dtype=np.int16))

    @classmethod
    def whole_images(cls, num_images: int) -> RegionLabels:
        """Each image one region: region ``i`` is image ``i`` (the image-level run, in region terms)."""
        return cls.empty(np.arange(num_images + 1, dtype=np.int64))

    @classmethod
    def from_image_state(cls, state: PoolState) -> RegionLabels:
        """The region view of an image-level :class:`PoolState` (its labeled images by cycle, its pending ones)."""
        labels = cls.whole_images(state.size)
        for cycle, indices in state.labeled.items():
            labels.add_labeled(indices, cycle)
        labels.add_pending(state.pending)
        return labels

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RegionLabels) and np.array_equal(self.offsets, other.offsets)
                and np.array_equal(self.status, other.status))

    # ------------------------------------------------------------------ sizes
    @property
    def num_images(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_regions(self) -> int:
        return len(self.status)

    @property
    def num_labeled(self) -> int:
        return int(np.count_nonzero(self.status >= 0))

    @property
    def num_pending(self) -> int:
        return int(np.count_nonzero(self.status == PENDING))

    # ------------------------------------------------------------------ numbering
    def image_of(self, global_ids: np.ndarray | list[int]) -> np.ndarray:
        """The image each global region belongs to (images without regions are skipped correctly)."""
        return np.searchsorted(self.offsets, np.asarray(global_ids, dtype=np.int64), side="right") - 1

    def regions_of(self, images: np.ndarray | list[int]) -> np.ndarray:
        """Every global region id of ``images``, image by image (to label whole images, e.g. the initial set)."""
        images = np.asarray(images, dtype=np.int64).reshape(-1)
        starts, ends = self.offsets[images], self.offsets[images + 1]
        lengths = ends - starts
        if not lengths.sum():
            return np.empty(0, dtype=np.int64)
        shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return shift + np.arange(int(lengths.sum()), dtype=np.int64)

    # ------------------------------------------------------------------ views
    def labeled_regions(self, image: int) -> np.ndarray:
        """Local ids (into the image's region map) of the image's labeled regions."""
        return np.flatnonzero(self.status[self.offsets[image]:self.offsets[image + 1]] >= 0)

    def all_labeled_regions(self) -> np.ndarray:
        """Global ids of every labeled region, ascending."""
        return np.flatnonzero(self.status >= 0)

    def unlabeled_regions(self) -> np.ndarray:
        """Global ids of the regions a strategy may choose from (neither labeled nor pending), ascending."""
        return np.flatnonzero(self.status == UNLABELED)

    def pending_regions(self) -> np.ndarray:
        """Global ids of the regions waiting for an annotator, ascending."""
        return np.flatnonzero(self.status == PENDING)

    def images_touched(self, through_cycle: int | None = None) -> np.ndarray:
        """Images with at least one labeled region (labeled by ``through_cycle``): they join training."""
        labeled = self.status >= 0 if through_cycle is None else (self.status >= 0) & (self.status <= through_cycle)
        return _distinct(self.image_of(np.flatnonzero(labeled)))  # ascending ids: ascending images

    def images_pending(self) -> np.ndarray:
        """Images with at least one pending region: what ``segal export`` sends to annotators."""
        return _distinct(self.image_of(self.pending_regions()))

    def touched_by_cycle(self) -> dict[int, list[int]]:
        """Each touched image under the cycle of its first labeled region: ``PoolState.labeled`` of a region run."""
        ids = self.all_labeled_regions()
        images, cycles = self.image_of(ids), self.status[ids]
        order = np.lexsort((cycles, images))
        images, cycles = images[order], cycles[order]
        first = np.ones(len(images), dtype=bool)
        first[1:] = images[1:] != images[:-1]
        out: dict[int, list[int]] = {}
        for cycle in np.flatnonzero(np.bincount(cycles[first])).tolist():
            out[cycle] = images[first & (cycles == cycle)].tolist()
        return out

    def labeled_counts(self, cycles: int = 0) -> np.ndarray:
        """Regions labeled in each cycle 0, 1, ... (at least ``cycles`` entries)."""
        return np.bincount(self.status[self.status >= 0], minlength=cycles).astype(np.int64)

    def labeled_pixels(self, area: np.ndarray, through_cycle: int | None = None) -> int:
        """Pixels labeled so far (by ``through_cycle``), from each region's pixel ``area``."""
        labeled = self.status >= 0 if through_cycle is None else (self.status >= 0) & (self.status <= through_cycle)
        return int(np.asarray(area)[labeled].sum(dtype=np.int64))

    def labeled_pixel_mask(self, image: int, region_map: np.ndarray) -> np.ndarray:
        """Which pixels of ``image`` are labeled, given its local region map: the rest are ignored by the loss."""
        return (self.status[self.offsets[image]:self.offsets[image + 1]] >= 0)[region_map]

    def pending_pixel_mask(self, image: int, region_map: np.ndarray) -> np.ndarray:
        """Which pixels of ``image`` an annotator is asked to label (its pending regions)."""
        return (self.status[self.offsets[image]:self.offsets[image + 1]] == PENDING)[region_map]

    # ------------------------------------------------------------------ transitions
    def add_pending(self, global_ids: np.ndarray | list[int]) -> None:
        """Queue regions for an annotator; only unlabeled, not yet pending regions may be queued."""
        ids = _ids(global_ids, self.num_regions)
        taken = ids[self.status[ids] != UNLABELED]
        if len(taken):
            raise ValueError(f"regions are not unlabeled: {taken[:5].tolist()}")
        self.status[ids] = PENDING

    def add_labeled(self, global_ids: np.ndarray | list[int], cycle: int) -> None:
        """Record regions as labeled in ``cycle`` (unlabeled ones, or pending ones whose labels arrived)."""
        if not 0 <= cycle <= MAX_CYCLE:
            raise ValueError(f"cycle {cycle} is outside 0..{MAX_CYCLE}")
        ids = _ids(global_ids, self.num_regions)
        taken = ids[self.status[ids] >= 0]
        if len(taken):
            raise ValueError(f"regions already labeled: {taken[:5].tolist()}")
        self.status[ids] = cycle

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """The status array as a ``.npy`` file (little-endian int16, no pickle): the same labels, the same bytes."""
        buffer = io.BytesIO()
        np.save(buffer, self.status.astype("<i2", copy=False), allow_pickle=False)
        return buffer.getvalue()

    def maps_fingerprint(self) -> str:
        """A short hash of the numbering (``offsets``): labels are meaningless against other region maps."""
        return maps_fingerprint(self.offsets)


def maps_fingerprint(offsets: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(offsets, dtype="<i8").tobytes()).hexdigest()[:16]


def _inconsistency(labels: RegionLabels, state: PoolState, counts: list[int], pending: int) -> str | None:
    """Why ``labels`` cannot be the region labels of ``state`` with the recorded counts (``None``: they can)."""
    status = labels.status
    if len(status) and status.min() < PENDING:
        return f"holds the value {int(status.min())} (only {PENDING} pending, {UNLABELED} unlabeled, or a cycle ≥ 0)"
    if len(status) and status.max() > state.cycle:
        return f"has regions labeled in cycle {int(status.max())}, after the run's cycle {state.cycle}"
    found = labels.labeled_counts(len(counts)).tolist()
    if found != list(counts) or labels.num_pending != pending:
        return (f"holds {found} labeled regions per cycle and {labels.num_pending} pending, "
                f"state.json records {list(counts)} and {pending}")
    touched = labels.touched_by_cycle()
    if {k: sorted(v) for k, v in state.labeled.items() if v} != {k: sorted(v) for k, v in touched.items()}:
        return "disagrees with state.json on which images have labeled regions"
    return None


def save_region_state(state: PoolState, labels: RegionLabels, state_path: Path) -> None:
    """Save ``labels`` and ``state`` together, safe against a SIGKILL at any moment (module docstring).

    ``state.labeled`` becomes the images touched, under the cycle of their first labeled region, so that
    the image-level views of a region run (its training images, ``num_labeled``) cannot disagree with it.
    """
    state_path = Path(state_path)
    counts = labels.labeled_counts().tolist()
    new = dataclasses.replace(state, labeled=labels.touched_by_cycle())
    problem = _inconsistency(labels, new, counts, labels.num_pending)
    if problem:
        raise ValueError(f"region labels {problem}")
    data = labels.to_bytes()
    digest = hashlib.sha256(data).hexdigest()
    name = f"{FILE_PREFIX}{digest[:16]}.npy"
    path = state_path.parent / name
    if not (state.regions and state.regions["sha256"] == digest and path.is_file()):
        atomic_write_bytes(path, data)  # 1: the new labels, under a new name; state.json still names the old
    new.regions = {"file": name, "sha256": digest, "num_regions": labels.num_regions,
                   "maps": labels.maps_fingerprint(), "labeled": counts, "pending": labels.num_pending}
    new.save(state_path)  # 2: state.json names the new file (atomic rename)
    state.labeled, state.regions = new.labeled, new.regions
    from segal.distributed import is_main

    if is_main():
        for old in state_path.parent.glob(f"{FILE_PREFIX}*.npy"):  # 3: older files, and any a kill orphaned
            if old.name != name:
                old.unlink(missing_ok=True)


def load_region_labels(state: PoolState, state_path: Path, offsets: np.ndarray) -> RegionLabels:
    """The region labels ``state`` (just loaded from ``state_path``) names, checked against it.

    ``offsets`` is the region cache's numbering.  A missing, edited or swapped labels file, or one that
    disagrees with ``state.json``, is a :class:`UserError` naming the file.
    """
    pointer = state.regions
    if pointer is None:
        raise ValueError("an image-level state has no region labels: use RegionLabels.from_image_state")
    path = Path(state_path).parent / pointer["file"]

    def bad(why: str) -> UserError:
        return UserError(f"region labels {why}", path=path, fix=_FIX)

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise bad("file named by state.json is missing") from None
    if hashlib.sha256(data).hexdigest() != pointer["sha256"]:
        raise bad("do not match the sha256 that state.json records (the file was changed or replaced)")
    offsets = np.asarray(offsets, dtype=np.int64)
    if maps_fingerprint(offsets) != pointer["maps"]:
        raise UserError(f"the region maps changed since this run started ({int(offsets[-1])} regions in the cache, "
                        f"{pointer['num_regions']} in the run)", path=state_path,
                        fix="restore the recipe's regions: section the run started with, or start a new run "
                            "with --output-dir")
    try:
        status = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise bad(f"are not a .npy array ({exc})") from None
    if status.dtype != np.int16 or status.shape != (pointer["num_regions"],) or len(status) != offsets[-1]:
        raise bad(f"hold {status.dtype} {status.shape}, expected int16 ({pointer['num_regions']},)")
    labels = RegionLabels(offsets, status)
    problem = _inconsistency(labels, state, pointer["labeled"], pointer["pending"])
    if problem:
        raise bad(problem)
    return labels
