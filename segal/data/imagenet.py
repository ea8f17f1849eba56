"""ImageNet-1k (ILSVRC 2012) as ``ROOT/train/WNID/*.JPEG`` and ``ROOT/val/WNID/*.JPEG``.

The validation images must already be sorted into class folders (the official archive has them
flat, with the labels in a separate file; datasets/imagenet.md shows how to sort them).  Class
names come from ``ROOT/LOC_synset_mapping.txt`` (Kaggle's copy of the synset list) when present,
else the WNIDs.  The 1.28M-file list is indexed once (see :mod:`segal.data.imagefolder`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from segal.data.base import DATASETS, require_root
from segal.data.imagefolder import build_class_folders
from segal.errors import UserError

SPLITS = ("train", "val")
SUFFIXES = (".jpeg", ".jpg", ".png")
MAPPING = "LOC_synset_mapping.txt"
LAYOUT_FIX = "point data.root at the folder holding train/ and val/, each with one folder per WNID " \
             "(see datasets/imagenet.md)"
FLAT_FIX = "sort val/ into one folder per WNID first, e.g. with LOC_val_solution.csv or valprep.sh " \
           "(see datasets/imagenet.md)"


def read_synsets(path: Path) -> dict[str, str]:
    """WNID → first name (``n01440764 tench, Tinca tinca`` → ``tench``)."""
    names = {}
    for line in path.read_text().splitlines():
        wnid, _, rest = line.strip().partition(" ")
        if wnid:
            names[wnid] = rest.split(",")[0].strip() or wnid
    return names


def class_names(root: Path, wnids: list[str]) -> list[str]:
    """The first synset names; a name two classes share (``crane``, ``maillot``) gets its WNID added."""
    mapping = read_synsets(root / MAPPING) if (root / MAPPING).is_file() else {}
    names = [mapping.get(w, w) for w in wnids]
    counts = Counter(names)
    return [f"{n} ({w})" if counts[n] > 1 else n for n, w in zip(names, wnids, strict=True)]


@DATASETS.register("imagenet")
def build(root: str | None, split: str):
    if root is None:
        raise UserError("the imagenet dataset needs data.root", fix="pass --data-root PATH/TO/imagenet")
    if split not in SPLITS:
        raise UserError(f"imagenet has no split {split!r}", fix=f"use one of {', '.join(SPLITS)}")
    base = require_root(root, "imagenet", fix=LAYOUT_FIX)
    return build_class_folders(base, split, name="imagenet", suffixes=SUFFIXES, flat_fix=FLAT_FIX,
                               layout_fix=LAYOUT_FIX, class_names=lambda wnids: class_names(base, wnids))

