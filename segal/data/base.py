"""The dataset contract every adapter fulfils.

An adapter turns one on-disk layout into a :class:`Dataset`: an indexable split whose items are
``(image, target, id)`` — an RGB ``uint8`` array of shape ``H×W×3``, a target (an ``H×W`` ``uint8``
mask of train ids with ``ignore_index`` for void, or an ``int`` class for classification) and a
stable string id.  Adapters check their layout up front so that a missing mask is reported before
an hour of training, not during it.
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segal.data.files import read_label_png, read_rgb
from segal.errors import UserError
from segal.registry import Registry

IGNORE_INDEX = 255
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".7z", ".rar")
log = logging.getLogger(__name__)


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

    task: str = "segmentation"  # a class attribute; views and caches copy their pool's
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

    def target_path(self, index: int) -> Path | None:
        """Where the mask lives on disk, for error messages; ``None`` for generated data or classes."""
        return None

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | int, str]:
        return self.load_image(index), self.load_target(index), self.image_id(index)

    def group(self, index: int) -> str | None:
        """The recording sequence or group of the image (a CamVid sequence, a Cityscapes city): the report
        breaks acquisitions down by it, since neighbouring frames of one sequence are near-duplicates.
        ``None`` where the adapter knows no grouping."""
        return None

    @property
    def ids(self) -> list[str]:
        return [self.image_id(i) for i in range(len(self))]


class DatasetView(Dataset):
    """``pool`` seen through a layer that changes some of what it returns (the oracle's labels, a
    region run's partial masks): every method forwards to ``pool`` until the layer overrides it."""

    def __init__(self, pool: Dataset):
        self.pool = pool
        self.classes = pool.classes
        self.task = pool.task

    def __len__(self) -> int:
        return len(self.pool)

    def image_id(self, index: int) -> str:
        return self.pool.image_id(index)

    def image_path(self, index: int) -> Path | None:
        return self.pool.image_path(index)

    def target_path(self, index: int) -> Path | None:
        return self.pool.target_path(index)

    def group(self, index: int) -> str | None:
        return self.pool.group(index)

    def load_image(self, index: int) -> np.ndarray:
        return self.pool.load_image(index)

    def load_target(self, index: int):
        return self.pool.load_target(index)


DatasetBuilder = Callable[..., Dataset]
DATASETS: Registry[DatasetBuilder] = Registry("dataset")


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
        groups: Sequence[str] | None = None,
    ):
        if not (len(image_paths) == len(mask_paths) == len(ids)) or (groups is not None and len(groups) != len(ids)):
            raise ValueError("image, mask, id (and group) lists differ in length")
        self._groups = None if groups is None else list(groups)
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

    def group(self, index: int) -> str | None:
        return None if self._groups is None else self._groups[index]

    def image_path(self, index: int) -> Path:
        return self.image_paths[index]

    def target_path(self, index: int) -> Path:
        return self.mask_paths[index]

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


def require_labeled_pixels(dataset: Dataset, indices: Sequence[int] | np.ndarray, what: str = "labeled set",
                           consequence: str = "there is nothing to train on") -> None:
    """Fail unless some mask of ``indices`` holds a pixel that is not ignore.

    Cross-entropy over no pixels is 0/0: a labeled set whose masks are all void would train to a
    NaN loss and a meaningless score, and an all-void test split gives a NaN mIoU.  The scan stops
    at the first labelled pixel, so it usually reads one mask.
    """
    if dataset.task != "segmentation" or len(indices) == 0:
        return
    ignore = dataset.classes.ignore_index
    for index in indices:
        if (np.asarray(dataset.load_target(int(index))) != ignore).any():
            return
    first = int(indices[0])
    raise UserError(
        f"every pixel of all {len(indices)} masks of the {what} is void (ignore id {ignore}), "
        f"first: {dataset.image_id(first)}; {consequence}",
        path=dataset.target_path(first),
        fix="check that the masks store class ids (and that data.options ignore_ids or the class list "
            "do not declare every id void), or label these images",
    )


def pair_files(
    images: Sequence[Path],
    mask_for: Callable[[Path], Path],
    *,
    what: str,
) -> list[Path]:
    """Return the mask path of each image, failing up front with a count and the first gap.

    The first mask is also read, so that masks of the wrong kind (colour maps, say) are refused
    before a run starts rather than at its first training step.
    """
    masks = [mask_for(p) for p in images]
    missing = [(img, m) for img, m in zip(images, masks, strict=True) if not m.exists()]
    if missing:
        img, mask = missing[0]
        if mask.is_symlink():
            raise UserError(f"the mask of {img.name} is a symlink to a missing file", path=mask,
                            fix="restore the link's target or remove the link")
        raise UserError(
            f"{len(missing)} {what} images have no mask: first is {img} (expected {mask}){_unpaired(mask.parent, masks)}",
            fix="give each mask the name shown as expected (its image's name), restore the missing masks, "
                "or remove the unlabelled images",
        )
    if masks:
        read_label_png(masks[0])
    return masks


def _unpaired(mask_dir: Path, masks: Sequence[Path]) -> str:
    """A hint naming a file of ``mask_dir`` that no image claims (masks named differently, say)."""
    if not mask_dir.is_dir():
        return ""
    claimed = {m.name for m in masks if m.parent == mask_dir}
    strays = sorted(p.name for p in mask_dir.iterdir() if p.is_file() and p.name not in claimed
                    and not p.name.startswith("."))
    return f"; {mask_dir} holds {len(strays)} files that pair with no image, e.g. {strays[0]}" if strays else ""


def warn_links_outside(root: Path, paths: Sequence[Path]) -> None:
    """Log once when files of a dataset are symlinks (or in linked folders) that lead outside its root.

    They are followed, as symlink farms are a common way to assemble a split, but such a root is not
    self-contained: copying or archiving it loses the files.
    """
    base = os.path.realpath(root)
    resolved_dirs: dict[str, str] = {}
    outside = []
    for path in paths:
        parent = str(path.parent)
        if parent not in resolved_dirs:
            resolved_dirs[parent] = os.path.realpath(parent)
        target = os.path.realpath(path) if os.path.islink(path) else os.path.join(resolved_dirs[parent], path.name)
        if os.path.commonpath([base, target]) != base:
            outside.append((path, target))
    if outside:
        path, target = outside[0]
        log.warning("%d files under %s are symlinks that lead outside it (followed; first: %s -> %s)",
                    len(outside), root, path, target)


def require_root(root: str | Path, dataset: str, fix: str) -> Path:
    """``data.root`` as a folder; a missing root or a file (an unpacked archive?) is a user error."""
    base = Path(root).expanduser()
    if base.is_file():
        raise UserError(f"the {dataset} data root is a file, not a folder", path=base,
                        fix=f"{fix}; unpack an archive first" if base.suffix.lower() in ARCHIVE_SUFFIXES else fix)
    if not base.is_dir():
        raise UserError(f"{dataset} root not found", path=base, fix=fix)
    return base


def require_dir(path: Path, what: str, fix: str) -> Path:
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} is a file, not a folder", path=path, fix=fix)
    if not path.is_dir():
        raise UserError(f"{what} not found", path=path, fix=fix)
    return path


def nonempty(items: list, path: Path, what: str, fix: str) -> list:
    if not items:
        raise UserError(f"no {what} found", path=path, fix=fix)
    return items
