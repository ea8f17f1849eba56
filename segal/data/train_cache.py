"""The training-input cache (``data.cache: true``): images and masks decoded and shrunk once, memory-mapped.

Without it every training step decodes full-resolution PNGs (image and mask) and crops them; with
it the task network's inputs come from ``cache/train-<H>x<W>/`` (``images.npy`` ``N×H×W×3``,
``targets.npy`` ``N×H×W``, a ``filled`` flag per image), filled the first time an image is trained on
and read from the page cache ever after, and the augmentation runs on the small arrays.

What is stored, and how it relates to the uncached pipeline:

* **Segmentation**: each image at :func:`cache_shape` — twice the working size, or the images' own
  size where that is smaller (image ``INTER_AREA``, mask ``INTER_NEAREST``).  The training crop
  (``RandomResizedCrop``, scale ≥ 0.5, so at least 71% of each side) then comes from a copy that
  still has at least the network's resolution.  Images already at that shape are stored as they are,
  so where no shrinking happens (the demo: rendered at its working size) the batches are *bit-identical*
  to the uncached ones.  Where it does (CamVid: 360×480 → 192×256 for 96×128 training) the crops are
  resampled from the shrunk copy rather than from the original: close, not identical, which is why
  the cache is opt-in and the default keeps the old numbers.
* **Classification**: images at the working size with ``INTER_LINEAR``, exactly the ``Resize`` the
  training transform starts with, so cached and uncached batches are identical.

Evaluation never reads this cache: it scores at each mask's own resolution.

The targets are those of the dataset handed in (the oracle's view: imported human masks, the
noisy-label study's corruption).  An image's training target is fixed once it is labeled — imports
fill *pending* images, noise is drawn once per acquired image — so a cached mask never goes stale
within a run.  The key (``meta.json``, written atomically) holds the pool's id fingerprint, the
stored shape and a digest of sampled files' sizes and times (where the dataset has files) and of
the first item's pixels: a changed size, id list or dataset rebuilds the cache from scratch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from segal.data.base import Dataset
from segal.data.files import digest_file_stats, sampled_indices
from segal.fileio import atomic_write_json, fingerprint

VERSION = 1  # bump when what is stored changes (interpolation, layout)
SEGMENTATION_SCALE = 2  # stored side / working side, at most


def cache_shape(task: str, working: Sequence[int], source: Sequence[int]) -> tuple[int, int]:
    """(H, W) the cache stores for ``working`` network input and ``source`` (first image's) size."""
    h, w = int(working[0]), int(working[1])
    if task == "classification":
        return h, w
    return min(SEGMENTATION_SCALE * h, int(source[0])), min(SEGMENTATION_SCALE * w, int(source[1]))


def fit(image: np.ndarray, target, shape: tuple[int, int], task: str):
    """``image`` (and a mask ``target``) at ``shape``: the one resize the cached path does, once."""
    h, w = shape
    if image.shape[:2] != (h, w):
        interpolation = cv2.INTER_LINEAR if task == "classification" else cv2.INTER_AREA
        image = cv2.resize(image, (w, h), interpolation=interpolation)
    if isinstance(target, np.ndarray) and target.shape[:2] != (h, w):
        target = cv2.resize(target, (w, h), interpolation=cv2.INTER_NEAREST)
    return image, target


def _data_digest(pool: Dataset) -> str:
    """Sizes and mtimes of up to 64 evenly spaced files (when the dataset has files: stat-ing all of
    ImageNet would take longer than the cache saves) and the first item's pixels."""
    digest = hashlib.sha256()
    digest_file_stats(digest, (path for i in sampled_indices(len(pool)) for path in (pool.image_path(i),
                                                                                    pool.target_path(i))))
    if len(pool):  # the pool's, not the oracle view's: a later noisy or imported label must not look like new data
        image, target = pool.load_image(0), pool.load_target(0)
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(np.ascontiguousarray(target).tobytes() if isinstance(target, np.ndarray) else str(target).encode())
    return digest.hexdigest()


class TrainingCache(Dataset):
    """``dataset`` with every item at :func:`cache_shape`, read from a memory-mapped cache in ``root``."""

    def __init__(self, dataset: Dataset, working_size: Sequence[int], root: Path, pool: Dataset | None = None):
        self.dataset = dataset
        self.task = dataset.task
        self.classes = dataset.classes
        pool = pool if pool is not None else getattr(dataset, "pool", dataset)  # the files behind an oracle view
        n = len(dataset)
        source = pool.load_image(0).shape[:2] if n else tuple(working_size)
        self.shape = cache_shape(self.task, working_size, source)
        h, w = self.shape
        self.dir = Path(root) / f"train-{h}x{w}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segmentation = self.task != "classification"
        key = {"version": VERSION, "fingerprint": fingerprint(dataset.ids), "shape": [h, w], "count": n,
               "task": self.task, "data": _data_digest(pool)}
        meta = self.dir / "meta.json"
        try:
            fresh = json.loads(meta.read_text()) != key
        except (OSError, ValueError):
            fresh = True
        arrays = self._open(n, fresh)
        if arrays is None:  # torn, deleted or of another shape: start again
            fresh = True
            arrays = self._open(n, True)
        self.images, self.targets, self.filled = arrays
        if fresh:
            self.filled[:] = 0
            self.filled.flush()
            atomic_write_json(meta, key)  # written last: a crash before it leaves the cache marked stale

    def _open(self, n: int, fresh: bool):
        h, w = self.shape
        shapes = {"images": (n, h, w, 3), "filled": (n,)}
        if self.segmentation:
            shapes["targets"] = (n, h, w)
        mode = "w+" if fresh else "r+"
        try:
            opened = {name: np.lib.format.open_memmap(self.dir / f"{name}.npy", mode=mode, dtype=np.uint8,
                                                      shape=shape) for name, shape in shapes.items()}
        except (OSError, ValueError):
            return None
        if any(opened[name].shape != shape for name, shape in shapes.items()):
            return None
        return opened["images"], opened.get("targets"), opened["filled"]

    def __len__(self) -> int:
        return len(self.dataset)

    def image_id(self, index: int) -> str:
        return self.dataset.image_id(index)

    def image_path(self, index: int):
        return self.dataset.image_path(index)

    def target_path(self, index: int):
        return self.dataset.target_path(index)

    def _fill(self, index: int) -> None:
        image, target = fit(self.dataset.load_image(index), self.dataset.load_target(index), self.shape, self.task)
        self.images[index] = image
        if self.segmentation:
            self.targets[index] = target
        self.filled[index] = 1  # written after the pixels: a crash leaves the flag unset

    def load_image(self, index: int) -> np.ndarray:
        if not self.filled[index]:
            self._fill(index)
        return np.array(self.images[index])

    def load_target(self, index: int):
        if not self.segmentation:
            return self.dataset.load_target(index)  # a class id: nothing to decode
        if not self.filled[index]:
            self._fill(index)
        return np.array(self.targets[index])

    def fill_ratio(self) -> float:
        return float(self.filled.mean()) if len(self.filled) else 1.0


__all__ = ["TrainingCache", "cache_shape", "fit"]
