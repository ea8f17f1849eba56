"""Dataset adapters: one module per on-disk layout, all registered in :data:`DATASETS`."""

from segal.data import bdd100k, camvid, cityscapes, demo, folder  # noqa: F401  (registration)
from segal.data.base import DATASETS, ClassSet, Dataset

__all__ = ["DATASETS", "ClassSet", "Dataset"]
