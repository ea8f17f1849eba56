"""Cityscapes in its official layout, mapped to the 19 train ids with the label table of the
``cityscapesscripts`` package (not a hand-copied one).

``leftImg8bit/SPLIT/CITY/*_leftImg8bit.png`` and ``gtFine/SPLIT/CITY/*_gtFine_labelIds.png``.
"""

from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import labels as CS_LABELS

from segal.data.base import (
    DATASETS,
    IGNORE_INDEX,
    ClassSet,
    FileSegmentationDataset,
    nonempty,
    pair_files,
    require_dir,
    require_root,
    warn_links_outside,
)
from segal.errors import UserError

_TRAIN = sorted((lb for lb in CS_LABELS if 0 <= lb.trainId < IGNORE_INDEX), key=lambda lb: lb.trainId)
CLASSES = ClassSet(names=tuple(lb.name for lb in _TRAIN), colors=tuple(tuple(lb.color) for lb in _TRAIN))

# stored label id -> train id; ids that cityscapesscripts does not know stay -1 (a user error)
LABEL_TO_TRAIN = np.full(256, -1, dtype=np.int16)
for _lb in CS_LABELS:
    if 0 <= _lb.id < 256:
        LABEL_TO_TRAIN[_lb.id] = _lb.trainId if 0 <= _lb.trainId < IGNORE_INDEX else IGNORE_INDEX
# train id -> label id, for predictions handed to the official evaluator
TRAIN_TO_LABEL_ID = np.array([lb.id for lb in _TRAIN], dtype=np.uint8)

IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"


def city_of(image_id: str) -> str:
    """The city in a Cityscapes image id: ``aachen_000000_000019`` → ``aachen`` (its folder name)."""
    return image_id.split("_", 1)[0]


class CityscapesDataset(FileSegmentationDataset):
    train_to_label_id = TRAIN_TO_LABEL_ID
    prediction_suffix = "_pred_labelIds.png"


@DATASETS.register("cityscapes")
def build(root: str | None, split: str) -> CityscapesDataset:
    if root is None:
        raise UserError("the cityscapes dataset needs data.root", fix="pass --data-root PATH/TO/cityscapes")
    fix = "point data.root at the folder holding leftImg8bit/ and gtFine/ (see datasets/cityscapes.md)"
    base = require_root(root, "cityscapes", fix=fix)
    image_dir = require_dir(base / "leftImg8bit" / split, f"cityscapes leftImg8bit/{split}/", fix=fix)
    mask_dir = require_dir(base / "gtFine" / split, f"cityscapes gtFine/{split}/", fix=fix)
    images = nonempty(sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}")), image_dir, f"*/*{IMAGE_SUFFIX} images",
                      fix="unpack leftImg8bit_trainvaltest.zip here")
    masks = pair_files(
        images,
        lambda p: mask_dir / p.parent.name / (p.name[: -len(IMAGE_SUFFIX)] + MASK_SUFFIX),
        what=f"cityscapes {split}",
    )
    warn_links_outside(base, images + masks)
    ids = [p.name[: -len(IMAGE_SUFFIX)] for p in images]
    return CityscapesDataset(images, masks, ids, CLASSES, LABEL_TO_TRAIN, name="cityscapes",
                             groups=[p.parent.name for p in images])
