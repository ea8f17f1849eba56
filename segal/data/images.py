"""A folder of unlabeled images (searched recursively), for task-agnostic selection with no masks,
no classes and no task network: ``segal select FOLDER --budget N``.  Ids are paths relative to the
folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segal.data.base import DATASETS, ClassSet, Dataset, nonempty, read_rgb, require_dir
from segal.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageFolder(Dataset):
    task = "images"
    classes = ClassSet((), ())

    def __init__(self, root: Path, paths: list[Path]):
        self.root = root
        self.paths = paths
        self._ids = [p.relative_to(root).as_posix() for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def image_id(self, index: int) -> str:
        return self._ids[index]

    def image_path(self, index: int) -> Path:
        return self.paths[index]

    def load_image(self, index: int) -> np.ndarray:
        return read_rgb(self.paths[index])

    def load_target(self, index: int):
        raise UserError("this folder holds unlabeled images only", path=self.paths[index],
                        fix="use a labeled dataset adapter (see `segal datasets`) to train a task network")


@DATASETS.register("images")
def build(root: str | None, split: str = "all") -> ImageFolder:
    if root is None:
        raise UserError("the images dataset needs a folder", fix="pass the folder of images")
    base = require_dir(Path(root), "image folder", fix="pass an existing folder of images")
    paths = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(base).parts))
    return ImageFolder(base, nonempty(paths, base, "images (png, jpg, bmp, tif, webp)",
                                      fix="put the images to choose from in this folder"))
