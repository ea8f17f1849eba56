"""Dataset adapters: one module per on-disk layout, all registered in :data:`DATASETS`."""

from segal.data import (  # noqa: F401  (registration)
    bdd100k,
    caltech256,
    camvid,
    cifar,
    cityscapes,
    classfolder,
    demo,
    folder,
    imagenet,
    images,
)
from segal.data.base import DATASETS, ClassSet, Dataset

__all__ = ["DATASETS", "ClassSet", "Dataset"]
