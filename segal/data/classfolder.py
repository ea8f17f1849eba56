"""Your own classification data: ``ROOT/SPLIT/CLASS/*.{jpg,jpeg,png,bmp}``.

The classes are the sorted folder names of ``train/``, in every split, so that class ``i`` means
the same in the pool and in the test set; a test folder that is not a train class is an error,
not a silently added class.  Background folders (Caltech-101's ``BACKGROUND_Google``, Caltech-256's
``257.clutter``) are left out unless ``include_background``.  Files in nested folders are not read.  The file list is indexed once
(see :mod:`segal.data.imagefolder`).
"""

from __future__ import annotations

from segal.data.base import DATASETS, require_root
from segal.data.imagefolder import BACKGROUND_FOLDERS, IMAGE_SUFFIXES, build_class_folders
from segal.errors import UserError

LAYOUT_FIX = "lay out ROOT/SPLIT/CLASS/*.jpg with one folder per class (see datasets/classfolder.md)"
FLAT_FIX = "move each image into the folder of its class: ROOT/SPLIT/CLASS/NAME.jpg"


@DATASETS.register("classfolder")
def build(root: str | None, split: str, include_background: bool = False):
    if root is None:
        raise UserError("the classfolder dataset needs data.root", fix="pass --data-root PATH")
    if not isinstance(include_background, bool):
        raise UserError(f"classfolder option include_background must be true or false, got {include_background!r}",
                        fix="set data.options.include_background in the recipe")
    base = require_root(root, "classfolder", fix=LAYOUT_FIX)
    return build_class_folders(base, split, name="classfolder", suffixes=IMAGE_SUFFIXES, flat_fix=FLAT_FIX,
                               layout_fix=LAYOUT_FIX, skip=() if include_background else BACKGROUND_FOLDERS)
