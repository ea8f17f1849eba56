"""A tiny in-memory segmentation dataset registered as ``tiny-seg`` for fast loop tests."""

from __future__ import annotations

import numpy as np

from segal.data.base import DATASETS, ClassSet, Dataset


class TinySeg(Dataset):
    task = "segmentation"
    classes = ClassSet(("bg", "square", "bar"), ((0, 0, 0), (255, 0, 0), (0, 255, 0)))

    def __init__(self, n: int, salt: int, size: int = 32):
        self.n, self.salt, self.size = n, salt, size

    def __len__(self):
        return self.n

    def image_id(self, i):
        return f"tiny_{self.salt}_{i:04d}"

    def _make(self, i):
        rng = np.random.default_rng([self.salt, i])
        s = self.size
        mask = np.zeros((s, s), np.uint8)
        y, x = rng.integers(0, s // 2, 2)
        mask[y : y + s // 3, x : x + s // 3] = 1
        if i % 3 == 0:
            mask[:, s - 4 :] = 2
        image = (rng.normal(40, 10, (s, s, 3))).clip(0, 255)
        image[mask == 1] = (200, 40, 40)
        image[mask == 2] = (40, 200, 40)
        return image.astype(np.uint8), mask

    def load_image(self, i):
        return self._make(i)[0]

    def load_target(self, i):
        return self._make(i)[1]


@DATASETS.register("tiny-seg")
def build(root, split, n_train: int = 40, n_test: int = 12):
    return TinySeg(n_train if split == "train" else n_test, salt=0 if split == "train" else 1)


def tiny_recipe(tmp_path, **active):
    return {
        "name": "tiny",
        "seed": 0,
        "device": "cpu",
        "output_dir": str(tmp_path / "run"),
        "data": {"dataset": "tiny-seg", "image_size": [32, 32]},
        "model": {"name": "deeplabv3plus", "encoder": "resnet18"},
        "train": {"steps": 4, "batch_size": 4, "eval_batch_size": 8, "amp": "off"},
        "active": {"initial": 8, "budget": 4, "cycles": 2, "strategy": "entropy", **active},
    }
