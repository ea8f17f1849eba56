"""Build an :class:`AcquisitionContext` from a dataset and a few settings.

The loop uses this, and so can anyone who wants acquisition alone (e.g. VAAL on a folder of
unlabeled images with no task network at all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from torch import nn
from torch.utils.data import DataLoader

from segal.data.base import Dataset
from segal.data.cache import ResizedImageCache
from segal.data.loaders import make_loader
from segal.device import Compute
from segal.progress import Progress
from segal.strategies.base import AcquisitionContext


def build_context(
    pool: Dataset,
    labeled: Sequence[int] | np.ndarray,
    budget: int,
    *,
    num_classes: int,
    compute: Compute | None = None,
    cycle: int = 0,
    seed: int = 0,
    model: nn.Module | None = None,
    build_model: Callable[[], nn.Module] | None = None,
    train_model: Callable[[nn.Module, np.ndarray, int], nn.Module] | None = None,
    unlabeled: Sequence[int] | np.ndarray | None = None,
    progress: Progress | None = None,
    workdir: Path | None = None,
    cache_dir: Path | None = None,
) -> AcquisitionContext:
    """The context of one acquisition over ``pool``; ``compute`` defaults to CPU, native image size, batch 16."""
    compute = compute or Compute()
    image_size, batch_size, num_workers = compute.image_size, compute.batch_size, compute.num_workers
    labeled_arr = np.sort(np.asarray(labeled, dtype=np.int64))
    if unlabeled is None:
        mask = np.ones(len(pool), dtype=bool)
        mask[labeled_arr] = False
        unlabeled_arr = np.flatnonzero(mask)
    else:
        unlabeled_arr = np.sort(np.asarray(unlabeled, dtype=np.int64))

    caches: dict[tuple[int, int], ResizedImageCache] = {}

    def source(size_override):
        """Small override sizes (VAAL's VAE input) read from the persistent resized-image cache."""
        if size_override is None or cache_dir is None:
            return pool, size_override or image_size
        key = (int(size_override[0]), int(size_override[1]))
        if key not in caches:
            caches[key] = ResizedImageCache(pool, key, cache_dir)
        return caches[key], None

    def eval_loader(indices, image_size_override=None, batch_size_override=None) -> DataLoader:
        data, size = source(image_size_override)
        return make_loader(
            data, indices, size=size, batch_size=batch_size_override or batch_size,
            train=False, with_targets=False, num_workers=num_workers,
        )

    def train_loader(indices, image_size_override=None, with_targets=False, batch_size_override=None,
                     salt=0) -> DataLoader:
        data, size = source(image_size_override)
        return make_loader(
            data, indices, size=size, batch_size=batch_size_override or batch_size,
            train=True, with_targets=with_targets, seed=int(np.random.default_rng([seed, cycle, salt]).integers(2**31)),
            num_workers=num_workers, drop_last=True,
        )

    return AcquisitionContext(
        pool=pool,
        labeled=labeled_arr,
        unlabeled=unlabeled_arr,
        budget=budget,
        cycle=cycle,
        seed=seed,
        compute=compute,
        task=pool.task,
        num_classes=num_classes,
        ignore_index=pool.classes.ignore_index,
        eval_loader=eval_loader,
        train_loader=train_loader,
        model=model,
        build_model=build_model,
        train_model=train_model,
        workdir=workdir,
        progress=progress or Progress(),
    )
