"""What the annotator says: the dataset's own labels, imported human masks, or a noisy oracle.

The task network always trains through an :class:`OracleView` so that imported masks replace the
dataset's (human oracle) and corrupted labels stay corrupted for the rest of the run (noisy-oracle
study).  Corruption is a pure function of (seed, image id), so a resumed run sees the same noise.

Noise rules (documented in docs/protocol.md):
- classification: the label is replaced by a different class drawn uniformly;
- segmentation: the image's classes are relabelled by a random derangement (every class present
  becomes another class), i.e. an annotator who labels every region with a wrong class.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from segal.data.base import Dataset, DatasetView, read_label_png
from segal.errors import UserError


def _rng(seed: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def corrupt_label(target: np.ndarray | int, num_classes: int, seed: int, image_id: str,
                  ignore_index: int = 255) -> np.ndarray | int:
    rng = _rng(seed, image_id)
    if not isinstance(target, np.ndarray):
        other = int(rng.integers(num_classes - 1))
        return other if other < int(target) else other + 1
    perm = np.arange(256)
    classes = np.arange(num_classes)
    while True:  # a derangement: no class keeps its label
        shuffled = rng.permutation(classes)
        if num_classes < 2 or not (shuffled == classes).any():
            break
    perm[:num_classes] = shuffled
    perm[ignore_index] = ignore_index
    return perm[target].astype(np.uint8)


class OracleView(DatasetView):
    """The pool as the task network sees it: same images, the oracle's labels."""

    def __init__(self, pool: Dataset, overrides: dict[str, Path] | None = None, noisy: set[int] | None = None,
                 noise_seed: int = 0):
        super().__init__(pool)
        self.overrides = overrides or {}
        self.noisy = noisy or set()
        self.noise_seed = noise_seed

    def target_path(self, index: int):
        return self.overrides.get(self.pool.image_id(index)) or self.pool.target_path(index)

    def load_target(self, index: int) -> np.ndarray | int:
        image_id = self.pool.image_id(index)
        path = self.overrides.get(image_id)
        target: np.ndarray | int
        if path is not None:
            mask = target = read_label_png(path)
            bad = (mask >= len(self.classes)) & (mask != self.classes.ignore_index)
            if bad.any():
                raise UserError("imported mask holds unknown class ids", path=path, fix="re-import the labels")
        else:
            target = self.pool.load_target(index)
        if index in self.noisy:
            target = corrupt_label(target, len(self.classes), self.noise_seed, image_id, self.classes.ignore_index)
        return target

    def __getitem__(self, index: int):
        image = self.load_image(index)
        target = self.load_target(index)
        if isinstance(target, np.ndarray) and target.shape != image.shape[:2]:
            raise UserError(f"label of {self.image_id(index)} is {target.shape[::-1]} but the image is "
                            f"{image.shape[1::-1]}", fix="labels must have the size of their image")
        return image, target, self.image_id(index)
