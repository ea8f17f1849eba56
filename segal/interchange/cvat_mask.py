"""CVAT "Segmentation mask 1.1": a VOC-style zip of colour-coded class masks.

Layout: ``labelmap.txt`` (``# label:color_rgb:parts:actions`` then ``name:r,g,b::``), the image list
``ImageSets/Segmentation/default.txt``, ``SegmentationClass/<id>.png`` and ``JPEGImages/<id>.<ext>``.
Void is black: CVAT paints unannotated pixels with the ``background`` colour (0,0,0), so ignore
(255) is exported as black and black comes back as 255.  Region exports add the label ``segal to
label`` (a free loud colour) painted as an outline just outside the area to label; its colour comes
back as 255.  A class whose palette colour is black or
repeated gets a free colour; the labelmap records the colours used and import reads them from it.
datumaro's own ``voc_segmentation`` export is read too: where its labelmap lines carry no colour
(``name:::``), the masks are painted with the PASCAL VOC palette in label order.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import cv2
import numpy as np

from segal.data.base import ClassSet
from segal.errors import UserError
from segal.interchange.base import (
    TO_LABEL_NAME,
    ExportItem,
    ExportOptions,
    MaskCollector,
    check_items,
    class_index,
    export_colors,
    has_regions,
    image_bytes,
    image_name,
    marker_color,
    pre_annotation,
    register,
    to_label_outline,
    write_images,
)

MAIN_FILE = "cvat-mask.zip"
VOID_NAME = "background"
BLACK = (0, 0, 0)
_LINE = re.compile(r"^([^:]+):\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(?::.*)?$")
_NO_COLOR = re.compile(r"^([^:]+):\s*(?::.*)?$")  # datumaro's `name:::` when its labels carry no colours


def voc_color(index: int) -> tuple[int, int, int]:
    """The PASCAL VOC palette colour of label ``index`` (bits of the index spread over R, G, B), which
    datumaro paints with when its labelmap.txt gives no colour."""
    rgb = [0, 0, 0]
    for bit in range(8):
        for channel in range(3):
            rgb[channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return rgb[0], rgb[1], rgb[2]


def void_name(classes: ClassSet) -> str:
    return VOID_NAME if VOID_NAME not in classes.names else "void"


def labelmap_text(classes: ClassSet, colors: list[tuple[int, int, int]],
                  marker: tuple[int, int, int] | None = None) -> str:
    for name in classes.names:
        if ":" in name or "\n" in name:
            raise UserError(f"class name {name!r} cannot be written to a CVAT labelmap (it holds ':')",
                            fix="rename the class without ':'")
    lines = ["# label:color_rgb:parts:actions", f"{void_name(classes)}:0,0,0::"]
    lines += [f"{name}:{r},{g},{b}::" for name, (r, g, b) in zip(classes.names, colors, strict=True)]
    if marker is not None:
        lines.append("{}:{},{},{}::".format(TO_LABEL_NAME, *marker))
    return "\n".join(lines) + "\n"


def color_mask(pred: np.ndarray, colors: list[tuple[int, int, int]]) -> np.ndarray:
    table = np.zeros((256, 3), dtype=np.uint8)  # every non-class id (ignore) is black
    table[: len(colors)] = colors
    return table[pred]


def export(out: Path, items: list[ExportItem], classes: ClassSet, options: ExportOptions) -> Path:
    check_items(items, classes)
    colors = export_colors(classes)
    marker = marker_color(colors) if has_regions(items) else None
    write_images(out, items)
    main = out / MAIN_FILE
    tmp = main.with_name(f".{main.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("labelmap.txt", labelmap_text(classes, colors, marker))
        zf.writestr("ImageSets/Segmentation/default.txt", "".join(f"{item.id}\n" for item in items))
        for item in items:
            rgb = color_mask(pre_annotation(item, classes.ignore_index), colors)
            outline = to_label_outline(item)
            if outline is not None and marker is not None:
                rgb[outline] = marker
            ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError(f"cannot encode mask of {item.id}")
            zf.writestr(f"SegmentationClass/{item.id}.png", png.tobytes(), compress_type=zipfile.ZIP_STORED)
            zf.writestr(f"JPEGImages/{image_name(item)}", image_bytes(item), compress_type=zipfile.ZIP_STORED)
    tmp.replace(main)
    return main


def parse_labelmap(path: Path, classes: ClassSet) -> dict[tuple[int, int, int], int]:
    """Colour → train id (255 for black/void); unknown names and clashing colours are refused."""
    table: dict[tuple[int, int, int], int] = {BLACK: classes.ignore_index}
    fix = "export from a CVAT task whose labels are the run's classes"
    label_index = -1  # the line's position among label lines: its VOC palette index if it has no colour
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        label_index += 1
        match, bare = _LINE.match(line), _NO_COLOR.match(line)
        if match:
            r, g, b = (int(v) for v in match.group(2, 3, 4))
            name, rgb = match.group(1).strip(), (r, g, b)
        elif bare:
            name, rgb = bare.group(1).strip(), voc_color(label_index)
        else:
            raise UserError(f"line {number} is not 'name:r,g,b::'", path=path, fix=fix)
        if max(rgb) > 255:
            raise UserError(f"line {number}: colour {rgb} is not RGB", path=path, fix=fix)
        if rgb == BLACK:
            if name in classes.names:
                raise UserError(f"class {name!r} is black, the colour of unannotated pixels", path=path,
                                fix=f"give {name!r} another colour in CVAT (black means ignore)")
            continue
        if name in (VOID_NAME, "void", "ignore", TO_LABEL_NAME):  # the marker outline is not a label
            train_id = classes.ignore_index
        else:
            train_id = class_index(classes, name, path)
        if table.get(rgb, train_id) != train_id:
            raise UserError(f"line {number}: colour {rgb} is used by two labels", path=path, fix=fix)
        table[rgb] = train_id
    return table


def decode_color_mask(path: Path, table: dict[tuple[int, int, int], int]) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise UserError("cannot decode mask (corrupt or truncated)", path=path, fix="export the masks again")
    packed = (bgr[:, :, 2].astype(np.uint32) << 16) | (bgr[:, :, 1].astype(np.uint32) << 8) | bgr[:, :, 0].astype(np.uint32)
    uniq, inverse = np.unique(packed, return_inverse=True)
    lut = np.empty(uniq.size, dtype=np.uint8)
    for k, value in enumerate(uniq.tolist()):
        rgb = (value >> 16, (value >> 8) & 255, value & 255)
        if rgb not in table:
            raise UserError(f"mask holds colour {rgb}, which is not in labelmap.txt", path=path,
                            fix="paint only with the task's labels (or add the label to labelmap.txt)")
        lut[k] = table[rgb]
    return lut[inverse.reshape(packed.shape)]


def is_cvat_mask(root: Path) -> bool:
    return (root / "SegmentationClass").is_dir() or (root / "labelmap.txt").is_file()


def load(root: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    labelmap = root / "labelmap.txt"
    if not labelmap.is_file():
        raise UserError("labelmap.txt is missing", path=root,
                        fix="export with CVAT's 'Segmentation mask 1.1' format (it writes labelmap.txt)")
    table = parse_labelmap(labelmap, classes)
    mask_dir = root / "SegmentationClass"
    files = sorted(mask_dir.rglob("*.png")) if mask_dir.is_dir() else []
    if not files:
        raise UserError("no SegmentationClass/*.png masks found", path=root,
                        fix="export with CVAT's 'Segmentation mask 1.1' format")
    collector = MaskCollector(root, classes, expected)
    for file in files:
        collector.check_id(file.stem, file)
        collector.add(file.stem, decode_color_mask(file, table), file)
    return collector.result()


register("cvat-mask", export, load)
