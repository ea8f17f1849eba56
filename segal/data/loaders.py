"""Torch data loaders over a subset of a :class:`~segal.data.base.Dataset`.

Every loader yields the pool index of each sample with it, so strategies can score in any
order and still know which image a number belongs to.  Evaluation transforms are deterministic
(resize + normalise); training transforms add albumentations scale/crop/flip.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from segal.data.base import IGNORE_INDEX, Dataset

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 H×W×3 RGB → normalised float 3×H×W (ImageNet statistics)."""
    x = (image.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def eval_transform(size: Sequence[int] | None) -> A.Compose:
    ops = [] if size is None else [A.Resize(int(size[0]), int(size[1]), interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)]
    return A.Compose(ops)


def train_transform(size: Sequence[int] | None, task: str, seed: int | None = None) -> A.Compose:
    """Scale/crop/flip for segmentation; pad-crop/flip for classification."""
    if size is None:
        return A.Compose([A.HorizontalFlip(p=0.5)], seed=seed)
    h, w = int(size[0]), int(size[1])
    if task == "classification":
        pad = max(h, w) // 8
        return A.Compose([
            A.Resize(h, w),
            A.PadIfNeeded(h + 2 * pad, w + 2 * pad, border_mode=cv2.BORDER_REFLECT_101),
            A.RandomCrop(h, w),
            A.HorizontalFlip(p=0.5),
        ], seed=seed)
    return A.Compose([
        A.RandomResizedCrop(
            size=(h, w), scale=(0.5, 1.0), ratio=(0.75 * w / h, 1.33 * w / h),
            interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
        ),
        A.HorizontalFlip(p=0.5),
    ], seed=seed)


class PoolView(TorchDataset):
    """A transformed view of some pool indices, yielding ``(image, [target,] index)``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int] | np.ndarray, transform: A.Compose, with_targets: bool,
                 full_size_targets: bool = False):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform
        self.with_targets = with_targets
        self.full_size_targets = full_size_targets  # evaluation: resize the image only, score at the mask's size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = int(self.indices[i])
        if not self.with_targets:
            image = self.dataset.load_image(index)
            return to_tensor(self.transform(image=image)["image"]), index
        image, target, _ = self.dataset[index]
        if isinstance(target, np.ndarray) and self.full_size_targets:
            return (to_tensor(self.transform(image=image)["image"]), torch.from_numpy(target.astype(np.int64)),
                    index)
        if isinstance(target, np.ndarray):
            out = self.transform(image=image, mask=target)
            return to_tensor(out["image"]), torch.from_numpy(out["mask"].astype(np.int64)), index
        return to_tensor(self.transform(image=image)["image"]), int(target), index


def _collate_ragged_targets(batch):
    """Images share the network's size; full-size masks may differ between images (kept as a list then)."""
    images, targets, indices = zip(*batch, strict=True)
    same = all(t.shape == targets[0].shape for t in targets)
    return torch.stack(images), (torch.stack(targets) if same else list(targets)), torch.tensor(indices)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)


def make_loader(
    dataset: Dataset,
    indices: Sequence[int] | np.ndarray,
    *,
    size: Sequence[int] | None,
    batch_size: int,
    train: bool,
    with_targets: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    augment: bool | None = None,
    full_size_targets: bool = False,
) -> DataLoader:
    """A loader over ``indices``: shuffled (and augmented unless ``augment=False``) when ``train``."""
    augment = train if augment is None else augment
    transform = train_transform(size, dataset.task, seed) if augment else eval_transform(size)
    view = PoolView(dataset, indices, transform, with_targets, full_size_targets)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        view,
        batch_size=batch_size,
        shuffle=train,
        drop_last=drop_last and len(view) > batch_size,
        num_workers=num_workers,
        worker_init_fn=_seed_worker,
        generator=generator,
        collate_fn=_collate_ragged_targets if full_size_targets else None,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


__all__ = ["IGNORE_INDEX", "MEAN", "STD", "PoolView", "make_loader", "to_tensor"]
