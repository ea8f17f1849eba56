"""CIFAR-10 and CIFAR-100 in the official "python version" layout (Krizhevsky 2009).

``ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` and
``ROOT/cifar-100-python/{train,test,meta}``: pickled dicts whose ``b"data"`` is ``N×3072`` uint8
(the R, G and B planes of a 32×32 image in turn).  The arrays are read once, into memory (150 MB
for a training split), since reading a pickle per image would be absurd.  CIFAR-100 uses its 100
fine labels.  ``download: true`` fetches the archive through torchvision when the files are missing.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segal.data.base import DATASETS, ClassSet, Dataset
from segal.data.imagefolder import class_colors
from segal.errors import UserError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Variant:
    name: str
    title: str
    folder: str
    files: dict[str, tuple[str, ...]]
    meta: str
    label_key: bytes
    names_key: bytes
    torchvision_class: str
    archive: str
    url: str = "https://www.cs.toronto.edu/~kriz/cifar.html"

    def all_files(self) -> tuple[str, ...]:
        return (*self.files["train"], *self.files["test"], self.meta)


CIFAR10 = Variant("cifar10", "CIFAR-10", "cifar-10-batches-py",
                  {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
                  "batches.meta", b"labels", b"label_names", "CIFAR10", "cifar-10-python.tar.gz")
CIFAR100 = Variant("cifar100", "CIFAR-100", "cifar-100-python", {"train": ("train",), "test": ("test",)},
                   "meta", b"fine_labels", b"fine_label_names", "CIFAR100", "cifar-100-python.tar.gz")


class CifarDataset(Dataset):
    """One CIFAR split held in memory as ``N×32×32×3`` RGB."""

    task = "classification"

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: ClassSet, *, name: str, split: str):
        if len(images) != len(labels):
            raise ValueError("image and label arrays differ in length")
        self.images = images
        self.labels = labels
        self.classes = classes
        self.name = name
        self.split = split

    def __len__(self) -> int:
        return len(self.labels)

    def image_id(self, index: int) -> str:
        return f"{self.split}_{index:05d}"

    def load_image(self, index: int) -> np.ndarray:
        return self.images[index].copy()  # a transform must never write into the shared array

    def load_target(self, index: int) -> int:
        return int(self.labels[index])


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"cannot read the CIFAR pickle ({type(exc).__name__})", path=path,
                        fix="replace the folder with a fresh copy of the extracted archive") from None
    if not isinstance(obj, dict):
        raise UserError("not a CIFAR pickle (no dict inside)", path=path, fix="replace the file")
    return obj


def _field(obj: dict, key: bytes, path: Path):
    value = obj.get(key, obj.get(key.decode()))
    if value is None:
        raise UserError(f"the CIFAR pickle has no {key.decode()!r} entry", path=path,
                        fix="replace the folder with a fresh copy of the extracted archive")
    return value


def read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch → (``N×32×32×3`` uint8 RGB, ``N`` int64 labels)."""
    obj = _unpickle(path)
    data = np.asarray(_field(obj, b"data", path))
    labels = np.asarray(_field(obj, label_key, path), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise UserError(f"data is {data.dtype} {data.shape} for {len(labels)} labels, expected N×3072 uint8",
                        path=path, fix="replace the folder with a fresh copy of the extracted archive")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _ensure_files(base: Path, variant: Variant, download: bool) -> Path:
    """The folder holding the pickles, downloading them first when asked and missing."""
    folder = base if (base / variant.meta).is_file() and not (base / variant.folder).is_dir() else base / variant.folder
    missing = [folder / f for f in variant.all_files() if not (folder / f).is_file()]
    if not missing:
        return folder
    place = (f"download {variant.archive} from {variant.url} and extract it into {base} "
             f"so that {base / variant.folder} exists")
    if not download:
        raise UserError(f"{variant.title} file is missing", path=missing[0],
                        fix=f"set data.options.download: true (needs the network) or {place}")
    try:
        import torchvision.datasets

        getattr(torchvision.datasets, variant.torchvision_class)(str(base), train=True, download=True)
    except (OSError, RuntimeError) as exc:  # URLError, timeouts and refused connections are OSErrors
        reason = " ".join(str(exc).split())[:200]
        raise UserError(f"cannot download {variant.title}: this machine is offline or the server is unreachable "
                        f"({reason})", path=base, fix=f"on a machine with network, {place}") from None
    folder = base / variant.folder
    missing = [folder / f for f in variant.all_files() if not (folder / f).is_file()]
    if missing:
        raise UserError(f"{variant.title} download finished but a file is missing", path=missing[0], fix=place)
    return folder


def build_cifar(variant: Variant, root: str | None, split: str, download: bool = False) -> CifarDataset:
    if root is None:
        raise UserError(f"the {variant.name} dataset needs data.root",
                        fix=f"pass --data-root PATH (the folder holding {variant.folder}/)")
    if split not in SPLITS:
        raise UserError(f"{variant.name} has no split {split!r}", fix=f"use one of {', '.join(SPLITS)}")
    base = Path(root)
    if not base.is_dir() and not download:
        raise UserError(f"{variant.name} root not found", path=base,
                        fix=f"create it and copy {variant.folder}/ into it, or set data.options.download: true")
    folder = _ensure_files(base, variant, bool(download))
    meta_path = folder / variant.meta
    names = tuple(n.decode() if isinstance(n, bytes) else str(n)
                  for n in _field(_unpickle(meta_path), variant.names_key, meta_path))
    batches = [read_batch(folder / f, variant.label_key) for f in variant.files[split]]
    images = np.ascontiguousarray(np.concatenate([b[0] for b in batches]))
    labels = np.concatenate([b[1] for b in batches])
    bad = (labels < 0) | (labels >= len(names))
    if bad.any():
        raise UserError(f"labels {sorted(set(labels[bad].tolist()))[:8]} are outside the {len(names)} classes",
                        path=folder, fix="replace the folder with a fresh copy of the extracted archive")
    classes = ClassSet(names, class_colors(len(names)))
    return CifarDataset(images, labels, classes, name=variant.name, split=split)


@DATASETS.register("cifar10")
def build_cifar10(root: str | None, split: str, download: bool = False) -> CifarDataset:
    return build_cifar(CIFAR10, root, split, download)


@DATASETS.register("cifar100")
def build_cifar100(root: str | None, split: str, download: bool = False) -> CifarDataset:
    return build_cifar(CIFAR100, root, split, download)
