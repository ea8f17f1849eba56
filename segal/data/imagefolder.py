"""One folder per class (ImageNet, Caltech-256, your own data): listing, index caching, the dataset.

An active-learning run rebuilds its datasets in every cycle and on every resume, and walking
ImageNet's 1.28M files takes minutes on a network disk.  So the file list of a folder is indexed
once and stored as JSON: ``ROOT/.segal_index_FOLDER.json`` beside the data, or
``~/.cache/segal/`` (``$XDG_CACHE_HOME/segal``) when ROOT is read-only, or ``$SEGAL_INDEX_DIR``
when that is set.  The index is keyed by the folder's path and the mtimes of the folder and of
each class folder in it: adding, removing or renaming a file changes its folder's mtime, so a
stale index is never used, and checking the key costs one stat per class, not one per file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import numpy as np

from segal.data.base import ClassSet, Dataset, read_rgb
from segal.data.folder import _palette
from segal.errors import UserError
from segal.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

INDEX_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Background images, not a category: Caltech-101's BACKGROUND_Google and Caltech-256's 257.clutter.
# The Caltech and class-folder adapters leave them out unless asked (datasets/classfolder.md).
BACKGROUND_FOLDERS = frozenset({"BACKGROUND_Google", "257.clutter"})


def class_colors(count: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct display colours (the PASCAL VOC colour map, unique for any class count here)."""
    return tuple(_palette(i) for i in range(count))


def _hidden(name: str) -> bool:
    return name.startswith(".")


def class_folders(split_dir: Path, suffixes: Iterable[str], *, flat_fix: str) -> dict[str, int]:
    """Class folder name → mtime (ns), sorted by name, plus ``"."`` for ``split_dir`` itself.

    Image files directly in ``split_dir`` mean the split is not sorted into class folders, which
    would silently drop them; that is a user error (``flat_fix`` says how to sort them).
    """
    suffixes = tuple(s.lower() for s in suffixes)
    mtimes: dict[str, int] = {}
    flat = 0
    with os.scandir(split_dir) as entries:
        for entry in entries:
            if _hidden(entry.name):
                continue
            if entry.is_dir():
                mtimes[entry.name] = entry.stat().st_mtime_ns
            elif os.path.splitext(entry.name)[1].lower() in suffixes:
                flat += 1
    if flat:
        raise UserError(f"{flat} images lie directly in the folder instead of in class folders",
                        path=split_dir, fix=flat_fix)
    return {".": split_dir.stat().st_mtime_ns, **dict(sorted(mtimes.items()))}


def _list_images(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries
                      if not _hidden(e.name) and os.path.splitext(e.name)[1].lower() in suffixes and e.is_file())


def _root_writable(root: Path) -> bool:
    # The mode bits count too: root passes os.access on a folder marked read-only (shared data).
    try:
        return os.access(root, os.W_OK) and bool(root.stat().st_mode & stat.S_IWUSR)
    except OSError:
        return False


def index_path(split_dir: Path) -> Path:
    """Where the index of ``split_dir`` is kept (see the module docstring)."""
    resolved = split_dir.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    override = os.environ.get("SEGAL_INDEX_DIR")
    if override:
        return Path(override).expanduser() / f"index-{digest}-{resolved.name}.json"
    if _root_writable(resolved.parent):
        return resolved.parent / f".segal_index_{resolved.name}.json"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "segal" / f"index-{digest}-{resolved.name}.json"


def _read_index(path: Path, key: dict) -> dict[str, list[str]] | None:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key:
        return None
    files = stored.get("files")
    return files if isinstance(files, dict) else None


def scan_split(split_dir: Path, suffixes: Iterable[str] = IMAGE_SUFFIXES, *,
               flat_fix: str) -> dict[str, list[str]]:
    """Class folder → sorted image file names, from the index when its key still matches."""
    suffixes = tuple(sorted({s.lower() for s in suffixes}))
    mtimes = class_folders(split_dir, suffixes, flat_fix=flat_fix)
    key = {"version": INDEX_VERSION, "dir": str(split_dir.resolve()), "suffixes": list(suffixes),
           "mtimes": mtimes}
    path = index_path(split_dir)
    files = _read_index(path, key)
    if files is not None and list(files) == [c for c in mtimes if c != "."]:
        return files
    files = {name: _list_images(split_dir / name, suffixes) for name in mtimes if name != "."}
    try:
        atomic_write_bytes(path, json.dumps({"key": key, "files": files}, separators=(",", ":")).encode())
    except OSError as exc:  # a cache: a read-only disk costs time, not correctness
        log.warning("cannot write the file index %s (%s); the folders will be listed again next time", path, exc)
    return files


class ImageFolderDataset(Dataset):
    """Images in class folders; the class of an item is the position of its folder in ``folders``."""

    task = "classification"

    def __init__(self, split_dir: Path, folders: Sequence[str], files: Sequence[str], labels: Sequence[int],
                 classes: ClassSet, *, name: str):
        if len(files) != len(labels):
            raise ValueError("file and label lists differ in length")
        if len(folders) != len(classes):
            raise ValueError("one class folder per class is needed")
        self.split_dir = Path(split_dir)
        self.folders = tuple(folders)
        self.files = list(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = classes
        self.name = name

    def __len__(self) -> int:
        return len(self.files)

    def image_id(self, index: int) -> str:
        return f"{self.folders[self.labels[index]]}/{self.files[index]}"

    def image_path(self, index: int) -> Path:
        return self.split_dir / self.folders[self.labels[index]] / self.files[index]

    def load_image(self, index: int) -> np.ndarray:
        return read_rgb(self.image_path(index))

    def load_target(self, index: int) -> int:
        return int(self.labels[index])


def build_class_folders(root: Path, split: str, *, name: str, class_names=None,
                        suffixes: Iterable[str] = IMAGE_SUFFIXES, flat_fix: str, layout_fix: str,
                        class_split: str = "train", skip: Collection[str] = ()) -> ImageFolderDataset:
    """``ROOT/SPLIT/CLASS/*``; the classes are the sorted folders of ``class_split`` in every split.

    ``class_names`` maps the folder names to display names (default: the folder names); folders
    named in ``skip`` (background folders, say) are left out of every split.
    """
    split_dir = root / split
    if not split_dir.is_dir():
        raise UserError(f"{name} split folder {split}/ not found", path=split_dir, fix=layout_fix)
    class_dir = root / class_split
    if not class_dir.is_dir():
        raise UserError(f"{name} takes its class list from {class_split}/, which is missing", path=class_dir,
                        fix=layout_fix)
    files = {f: items for f, items in scan_split(split_dir, suffixes, flat_fix=flat_fix).items() if f not in skip}
    folders = list(files) if split == class_split else [
        c for c in class_folders(class_dir, suffixes, flat_fix=flat_fix) if c != "." and c not in skip]
    if not folders:
        raise UserError("no class folders found", path=class_dir, fix=layout_fix)
    position = {folder: i for i, folder in enumerate(folders)}
    unknown = [f for f in files if f not in position]
    if unknown:
        raise UserError(f"{len(unknown)} class folders of {split}/ are not classes of {class_split}/ "
                        f"(first: {unknown[0]})", path=split_dir / unknown[0],
                        fix=f"every class needs a folder in {class_split}/; rename or remove this folder")
    names, labels = [], []
    for folder, items in files.items():
        names.extend(items)
        labels.extend([position[folder]] * len(items))
    if not names:
        raise UserError("no images found in the class folders", path=split_dir, fix=layout_fix)
    display = list(class_names(folders)) if class_names else folders
    classes = ClassSet(tuple(display), class_colors(len(folders)))
    return ImageFolderDataset(split_dir, folders, names, labels, classes, name=name)
