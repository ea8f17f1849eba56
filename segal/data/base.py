"""The dataset contract every adapter fulfils.

An adapter turns one on-disk layout into a :class:`Dataset`: an indexable split whose items are
``(image, target, id)`` — an RGB ``uint8`` array of shape ``H×W×3``, a target (an ``H×W`` ``uint8``
mask of train ids with ``ignore_index`` for void, or an ``int`` class for classification) and a
stable string id.  Adapters check their layout up front so that a missing mask is reported before
an hour of training, not during it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from segal.errors import UserError
from segal.registry import Registry

IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassSet:
    """Class names and display colours (RGB) in train-id order; ``ignore_index`` marks void."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if len(self.names) != len(self.colors):
            raise ValueError("ClassSet needs one colour per class name")

    def __len__(self) -> int:
        return len(self.names)


class Dataset(abc.ABC):
    """One split of a dataset; items are ``(image, target, id)``."""

    task: ClassVar[str] = "segmentation"
    classes: ClassSet

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def image_id(self, index: int) -> str: ...

    @abc.abstractmethod
    def load_image(self, index: int) -> np.ndarray: ...

    @abc.abstractmethod
    def load_target(self, index: int) -> np.ndarray | int: ...

    def image_path(self, index: int) -> Path | None:
        """Where the image lives on disk, for exports; ``None`` for generated data."""
        return None

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | int, str]:
        return self.load_image(index), self.load_target(index), self.image_id(index)

    @property
    def ids(self) -> list[str]:
        return [self.image_id(i) for i in range(len(self))]


DatasetBuilder = Callable[..., Dataset]
DATASETS: Registry[DatasetBuilder] = Registry("dataset")


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB ``uint8``; a corrupt file is a user error naming it."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.exists() else None
    if data is None:
        raise UserError("image file is missing", path=path, fix="restore the file or remove it from the split")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise UserError("cannot decode image (corrupt or truncated)", path=path, fix="replace or remove the file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label_png(path: Path) -> np.ndarray:
    """Read a single-channel label PNG exactly as stored (no colour conversion)."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.exists() else None
    if data is None:
        raise UserError("mask file is missing", path=path, fix="restore the file or remove the image from the split")
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if mask is None:
        raise UserError("cannot decode mask (corrupt or truncated)", path=path, fix="replace or remove the file")
    if mask.ndim != 2:
        raise UserError(
            f"mask has {mask.shape[2]} channels, expected a single-channel id map",
            path=path,
            fix="save masks as 8-bit single-channel PNGs of class ids",
        )
    if mask.dtype != np.uint8:
        if mask.max(initial=0) > 255:
            raise UserError("mask holds ids above 255", path=path, fix="store class ids as uint8")
        mask = mask.astype(np.uint8)
    return mask


def identity_lut(num_classes: int, extra_ignore: Sequence[int] = ()) -> np.ndarray:
    """A 256-entry lookup table mapping stored ids to train ids; ``-1`` marks unknown ids."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for value in extra_ignore:
        lut[value] = IGNORE_INDEX
    return lut


class FileSegmentationDataset(Dataset):
    """Image/mask file pairs with a lookup table from stored ids to train ids."""

    task = "segmentation"

    def __init__(
        self,
        image_paths: Sequence[Path],
        mask_paths: Sequence[Path],
        ids: Sequence[str],
        classes: ClassSet,
        lut: np.ndarray,
        *,
        name: str,
    ):
        if not (len(image_paths) == len(mask_paths) == len(ids)):
            raise ValueError("image, mask and id lists differ in length")
        self.image_paths = list(image_paths)
        self.mask_paths = list(mask_paths)
        self._ids = list(ids)
        self.classes = classes
        self.lut = lut
        self.name = name

    def __len__(self) -> int:
        return len(self._ids)

    def image_id(self, index: int) -> str:
        return self._ids[index]

    def image_path(self, index: int) -> Path:
        return self.image_paths[index]

    def load_image(self, index: int) -> np.ndarray:
        return read_rgb(self.image_paths[index])

    def load_target(self, index: int) -> np.ndarray:
        path = self.mask_paths[index]
        return decode_mask(read_label_png(path), self.lut, path)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        image = self.load_image(index)
        mask = self.load_target(index)
        if mask.shape != image.shape[:2]:
            raise UserError(
                f"mask is {mask.shape[1]}×{mask.shape[0]} but its image is {image.shape[1]}×{image.shape[0]}",
                path=self.mask_paths[index],
                fix="masks must have the size of their image",
            )
        return image, mask, self._ids[index]


def decode_mask(stored: np.ndarray, lut: np.ndarray, path: Path | str) -> np.ndarray:
    """Map stored ids to train ids; unknown ids are a user error naming the file and the values."""
    mapped = lut[stored]
    if (mapped < 0).any():
        bad = sorted(int(v) for v in np.unique(stored[mapped < 0]))[:8]
        raise UserError(
            f"mask holds ids {bad} that are not in the class table",
            path=path,
            fix="fix the mask or declare the ids (as classes or as ignore) in the recipe",
        )
    return mapped.astype(np.uint8)


def pair_files(
    images: Sequence[Path],
    mask_for: Callable[[Path], Path],
    *,
    what: str,
) -> list[Path]:
    """Return the mask path of each image, failing up front with a count and the first gap."""
    masks = [mask_for(p) for p in images]
    missing = [(img, m) for img, m in zip(images, masks, strict=True) if not m.exists()]
    if missing:
        img, mask = missing[0]
        raise UserError(
            f"{len(missing)} {what} images have no mask: first is {img} (expected {mask})",
            fix="restore the masks or remove the unlabelled images",
        )
    return masks


def require_dir(path: Path, what: str, fix: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{what} not found", path=path, fix=fix)
    return path


def nonempty(items: list, path: Path, what: str, fix: str) -> list:
    if not items:
        raise UserError(f"no {what} found", path=path, fix=fix)
    return items
