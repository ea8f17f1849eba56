"""A persistent cache of pool images resized once, in a memory-mapped ``uint8`` array.

VAAL trains its VAE on every pool image at a small size (32–128 px) in every cycle.  Decoding a
2048×1024 PNG costs far more than the VAE's forward pass, so the resized images are kept in
``cache/<H>x<W>/images.npy`` (``N×H×W×3``) with a ``filled`` flag per image: the first cycle fills it
as images are first touched, later cycles (and resumed runs) read from the page cache.  The file
is keyed by the pool's fingerprint, so a changed dataset never reads stale pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from segal.data.base import Dataset
from segal.fileio import atomic_write_json, fingerprint


class ResizedImageCache(Dataset):
    """The pool's images at ``size`` (targets are not cached: strategies that use them are rare)."""

    def __init__(self, dataset: Dataset, size: tuple[int, int] | list[int], root: Path):
        self.dataset = dataset
        self.task = dataset.task
        self.classes = dataset.classes
        self.size = (int(size[0]), int(size[1]))
        h, w = self.size
        self.dir = Path(root) / f"{h}x{w}"
        self.dir.mkdir(parents=True, exist_ok=True)
        n = len(dataset)
        key = {"fingerprint": fingerprint(dataset.ids), "size": [h, w], "count": n}
        meta = self.dir / "meta.json"
        fresh = not meta.exists() or json.loads(meta.read_text()) != key
        mode = "w+" if fresh else "r+"
        self.images = np.lib.format.open_memmap(self.dir / "images.npy", mode=mode, dtype=np.uint8, shape=(n, h, w, 3))
        self.filled = np.lib.format.open_memmap(self.dir / "filled.npy", mode=mode, dtype=np.uint8, shape=(n,))
        if fresh:
            self.filled[:] = 0
            self.filled.flush()
            atomic_write_json(meta, key)

    def __len__(self) -> int:
        return len(self.dataset)

    def image_id(self, index: int) -> str:
        return self.dataset.image_id(index)

    def image_path(self, index: int):
        return self.dataset.image_path(index)

    def load_image(self, index: int) -> np.ndarray:
        if not self.filled[index]:
            h, w = self.size
            image = self.dataset.load_image(index)
            self.images[index] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            self.filled[index] = 1  # written after the pixels: a crash leaves the flag unset
        return np.array(self.images[index])

    def load_target(self, index: int):
        return self.dataset.load_target(index)

    def fill_ratio(self) -> float:
        return float(self.filled.mean()) if len(self.filled) else 1.0
