"""Caltech-256 as ``ROOT/256_ObjectCategories/NNN.name/*.jpg`` (Griffin, Holub, Perona 2007).

Caltech-256 has no official train/test split, and papers using it in active learning (e.g. VAAL)
do not state theirs.  segal fixes one: ``numpy.random.default_rng(split_seed)`` draws one
permutation per class, in folder order, of the class's sorted file list, and the first
``test_per_class`` files of it (20 by default) are the test split; the rest is train.  The same
options always give the same split.  ``257.clutter`` (background images, not a class) is left out
unless ``include_clutter``; being the last folder, it does not change the other classes' split.
A ``BACKGROUND_Google`` folder (Caltech-101's background class) is treated the same way.
Non-image files (the archive holds a few) and nested folders are skipped.
"""

from __future__ import annotations

import re

import numpy as np

from segal.data.base import DATASETS, ClassSet, require_root
from segal.data.imagefolder import (
    BACKGROUND_FOLDERS,
    IMAGE_SUFFIXES,
    ImageFolderDataset,
    class_colors,
    scan_split,
)
from segal.errors import UserError

FOLDER = "256_ObjectCategories"
SPLITS = ("train", "test")
LAYOUT_FIX = f"point data.root at the folder holding {FOLDER}/ (see datasets/caltech256.md)"


def _int_option(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"caltech256 option {name} must be an integer >= {minimum}, got {value!r}",
                        fix=f"set data.options.{name} in the recipe")
    return value


def split_files(files: dict[str, list[str]], test_per_class: int, seed: int) -> dict[str, dict[str, list[str]]]:
    """Split → folder → sorted file names, as the module docstring describes."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for folder, names in files.items():
        names = sorted(names)
        held = set(rng.permutation(len(names))[:test_per_class].tolist())
        out["test"][folder] = [n for i, n in enumerate(names) if i in held]
        out["train"][folder] = [n for i, n in enumerate(names) if i not in held]
    return out


@DATASETS.register("caltech256")
def build(root: str | None, split: str, test_per_class: int = 20, split_seed: int = 0,
          include_clutter: bool = False) -> ImageFolderDataset:
    if root is None:
        raise UserError("the caltech256 dataset needs data.root", fix="pass --data-root PATH/TO/caltech256")
    if split not in SPLITS:
        raise UserError(f"caltech256 has no split {split!r}", fix=f"use one of {', '.join(SPLITS)}")
    test_per_class = _int_option("test_per_class", test_per_class, 1)
    split_seed = _int_option("split_seed", split_seed, 0)
    image_dir = require_root(root, "caltech256", fix=LAYOUT_FIX) / FOLDER
    if not image_dir.is_dir():
        raise UserError(f"caltech256 {FOLDER}/ folder not found", path=image_dir, fix=LAYOUT_FIX)
    files = scan_split(image_dir, IMAGE_SUFFIXES, flat_fix=f"keep the images in their class folders under {FOLDER}/")
    files = {f: names for f, names in files.items() if include_clutter or f not in BACKGROUND_FOLDERS}
    if not files:
        raise UserError("no class folders found", path=image_dir, fix=LAYOUT_FIX)
    small = [f for f, names in files.items() if len(names) <= test_per_class]
    if small:
        raise UserError(f"class folder has {len(files[small[0]])} images, not more than test_per_class="
                        f"{test_per_class}", path=image_dir / small[0],
                        fix="lower data.options.test_per_class or restore the class's images")
    chosen = split_files(files, test_per_class, split_seed)[split]
    folders = list(chosen)
    names = [re.sub(r"^\d+\.", "", f) for f in folders]
    paths, labels = [], []
    for label, folder in enumerate(folders):
        paths.extend(chosen[folder])
        labels.extend([label] * len(chosen[folder]))
    classes = ClassSet(tuple(names), class_colors(len(names)))
    return ImageFolderDataset(image_dir, folders, paths, labels, classes, name="caltech256")
