"""BDD100K's 10K semantic-segmentation split in the official layout:
``images/10k/SPLIT/*.jpg`` and ``labels/sem_seg/masks/SPLIT/*.png`` (values 0..18 are the Cityscapes
train ids, 255 is ignore)."""

from __future__ import annotations

from segal.data.base import (
    DATASETS,
    FileSegmentationDataset,
    identity_lut,
    nonempty,
    pair_files,
    require_dir,
    require_root,
    warn_links_outside,
)
from segal.data.cityscapes import CLASSES
from segal.errors import UserError


@DATASETS.register("bdd100k")
def build(root: str | None, split: str) -> FileSegmentationDataset:
    if root is None:
        raise UserError("the bdd100k dataset needs data.root", fix="pass --data-root PATH/TO/bdd100k")
    fix = "point data.root at the folder holding images/10k/ and labels/sem_seg/ (see datasets/bdd100k.md)"
    base = require_root(root, "bdd100k", fix=fix)
    image_dir = require_dir(base / "images" / "10k" / split, f"bdd100k images/10k/{split}/", fix=fix)
    mask_dir = require_dir(base / "labels" / "sem_seg" / "masks" / split,
                           f"bdd100k labels/sem_seg/masks/{split}/", fix=fix)
    images = nonempty(sorted(image_dir.glob("*.jpg")), image_dir, "*.jpg images",
                      fix="unpack bdd100k_images_10k.zip here")
    masks = pair_files(images, lambda p: mask_dir / (p.stem + ".png"), what=f"bdd100k {split}")
    warn_links_outside(base, images + masks)
    return FileSegmentationDataset(images, masks, [p.stem for p in images], CLASSES,
                                   identity_lut(len(CLASSES)), name="bdd100k")
