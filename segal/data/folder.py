"""Your own data: ``images/SPLIT/*.{png,jpg}`` with ``masks/SPLIT/NAME.png`` of class ids, and a class
list, either ``classes.txt`` in the root (one ``name`` or ``name R G B`` per line, line ``i`` is id
``i``) or ``data.options.classes`` in the recipe.  255 is ignore; ``ignore_ids`` adds more void ids."""

from __future__ import annotations

from pathlib import Path

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

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _palette(i: int) -> tuple[int, int, int]:
    """The PASCAL VOC colour map, so that unnamed colours are distinct and familiar."""
    r = g = b = 0
    c = i
    for j in range(8):
        r |= ((c >> 0) & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return r, g, b


def read_class_file(path: Path) -> ClassSet:
    names: list[str] = []
    colors: list[tuple[int, int, int]] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"is not UTF-8 text (offset {exc.start})", path=path, fix="save the class list as UTF-8") from None
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) not in (1, 4):
            raise UserError(f"line {number} is not 'name' or 'name R G B'", path=path, fix="one class per line")
        try:
            color = (int(parts[1]), int(parts[2]), int(parts[3])) if len(parts) == 4 else _palette(len(names))
        except ValueError:
            raise UserError(f"line {number}: colour must be three integers", path=path, fix="e.g. 'road 128 64 128'") from None
        names.append(parts[0])
        colors.append(color)
    if not names:
        raise UserError("class list is empty", path=path, fix="write one class name per line")
    return ClassSet(tuple(names), tuple(colors))


@DATASETS.register("folder")
def build(root: str | None, split: str, classes: list[str] | None = None,
          ignore_ids: list[int] | None = None) -> FileSegmentationDataset:
    if root is None:
        raise UserError("the folder dataset needs data.root", fix="pass --data-root PATH")
    fix = "lay out images/SPLIT/*.png and masks/SPLIT/*.png under data.root (see datasets/folder.md)"
    base = require_root(root, "folder", fix=fix)
    if classes:
        class_set = ClassSet(tuple(classes), tuple(_palette(i) for i in range(len(classes))))
    elif (base / "classes.txt").is_file():
        class_set = read_class_file(base / "classes.txt")
    else:
        raise UserError("no class list", path=base / "classes.txt",
                        fix="write classes.txt (one name per line) or set data.options.classes")
    if len(class_set) > 255:
        raise UserError(f"{len(class_set)} classes do not fit uint8 masks", fix="use at most 255 classes")
    image_dir = require_dir(base / "images" / split, f"images/{split}/", fix=fix)
    mask_dir = require_dir(base / "masks" / split, f"masks/{split}/", fix=fix)
    images = nonempty(sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                             and not p.is_dir()),
                      image_dir, "images", fix=fix)
    masks = pair_files(images, lambda p: mask_dir / (p.stem + ".png"), what=split)
    warn_links_outside(base, images + masks)
    lut = identity_lut(len(class_set), extra_ignore=tuple(ignore_ids or ()))
    return FileSegmentationDataset(images, masks, [p.stem for p in images], class_set, lut, name="folder")
