"""CVAT for images 1.1 XML with ``<mask>`` shapes: one mask per class per image.

A ``<mask>`` holds ``rle`` run lengths over its box (``left``, ``top``, ``width``, ``height``),
row-major, alternating background/foreground and starting with a (possibly empty) background run.
Void is the absence of a shape: ignore (255) gets no mask, and pixels no shape covers come back as
255.  Region exports add the label ``segal to label`` and, per image, one ``<mask>`` of it outlining
the area to label from just outside; import skips every shape of that label.  Import also rasterises ``<polygon>``, ``<box>`` and ``<ellipse>`` (annotators draw those in
CVAT); overlaps resolve by ``z_order``, then document order (later on top), as CVAT draws them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from segal.data.base import ClassSet
from segal.errors import UserError
from segal.fileio import read_limited
from segal.interchange.base import (
    TO_LABEL_NAME,
    ExportItem,
    ExportOptions,
    MaskCollector,
    check_items,
    class_index,
    export_colors,
    has_regions,
    hex_color,
    image_name,
    marker_color,
    new_mask,
    pre_annotation,
    register,
    to_label_outline,
    write_images,
)

MAIN_FILE = "annotations.xml"
MAX_XML_BYTES = 1 << 30
_SKIPPED = {"tag"}
_SUPPORTED = {"mask", "polygon", "box", "ellipse"}


def box_rle(binary: np.ndarray) -> tuple[list[int], int, int, int, int]:
    """CVAT's mask RLE over the tight box of ``binary``: (runs, left, top, width, height)."""
    rows = np.flatnonzero(binary.any(axis=1))
    cols = np.flatnonzero(binary.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    crop = binary[top:bottom + 1, left:right + 1].ravel()
    change = np.flatnonzero(crop[1:] != crop[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [crop.size]))).tolist()
    if crop[0]:
        runs.insert(0, 0)
    return runs, left, top, right - left + 1, bottom - top + 1


def decode_box_rle(runs: list[int], width: int, height: int) -> np.ndarray:
    counts = np.asarray(runs, dtype=np.int64)
    if counts.size and counts.min() < 0:
        raise ValueError("negative run length")
    if counts.sum() > width * height:
        raise ValueError(f"runs cover {int(counts.sum())} pixels, the box only {width * height}")
    flat = np.zeros(width * height, dtype=bool)
    flat[: counts.sum()] = np.repeat(np.arange(counts.size) % 2 == 1, counts)
    return flat.reshape(height, width)


def export(out: Path, items: list[ExportItem], classes: ClassSet, options: ExportOptions) -> Path:
    check_items(items, classes)
    write_images(out, items)
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = options.task_name
    ET.SubElement(task, "size").text = str(len(items))
    ET.SubElement(task, "mode").text = "annotation"
    labels = ET.SubElement(task, "labels")
    colors = export_colors(classes)
    label_colors = list(zip(classes.names, colors, strict=True))
    if has_regions(items):
        label_colors.append((TO_LABEL_NAME, marker_color(colors)))
    for name, color in label_colors:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "color").text = hex_color(color)
        ET.SubElement(label, "type").text = "mask"
        ET.SubElement(label, "attributes")
    for index, item in enumerate(items):
        pred = pre_annotation(item, classes.ignore_index)
        h, w = pred.shape
        image = ET.SubElement(root, "image", id=str(index), name=image_name(item), width=str(w), height=str(h))
        shapes = [(classes.names[c], pred == c) for c in np.unique(pred).tolist() if c != classes.ignore_index]
        outline = to_label_outline(item)
        if outline is not None:
            shapes.append((TO_LABEL_NAME, outline))
        for name, binary in shapes:
            runs, left, top, bw, bh = box_rle(binary)
            ET.SubElement(image, "mask", label=name, source="auto", occluded="0",
                          rle=", ".join(map(str, runs)), left=str(left), top=str(top), width=str(bw),
                          height=str(bh), z_order="0")
    ET.indent(root)
    main = out / MAIN_FILE
    tmp = main.with_name(f".{main.name}.tmp")
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(main)
    return main


def _ints(elem: ET.Element, *names: str) -> list[int]:
    return [int(float(elem.attrib[n])) for n in names]


def _floats(elem: ET.Element, *names: str) -> list[float]:
    return [float(elem.attrib[n]) for n in names]


def _paint(mask: np.ndarray, shape: ET.Element, class_id: int) -> None:
    h, w = mask.shape
    if shape.tag == "mask":
        left, top, bw, bh = _ints(shape, "left", "top", "width", "height")
        if left < 0 or top < 0 or bw < 1 or bh < 1 or left + bw > w or top + bh > h:
            raise ValueError(f"mask box {left},{top} {bw}×{bh} lies outside the {w}×{h} image")
        runs = [int(v) for v in shape.attrib["rle"].replace(" ", "").split(",") if v]
        region = mask[top:top + bh, left:left + bw]
        region[decode_box_rle(runs, bw, bh)] = class_id
    elif shape.tag == "polygon":
        pts = [[float(v) for v in p.split(",")] for p in shape.attrib["points"].split(";") if p]
        cv2.fillPoly(mask, [np.round(np.asarray(pts, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)],
                     int(class_id))
    elif shape.tag == "box":
        xtl, ytl, xbr, ybr = (round(v) for v in _floats(shape, "xtl", "ytl", "xbr", "ybr"))
        mask[max(ytl, 0):max(ybr, 0), max(xtl, 0):max(xbr, 0)] = class_id
    elif shape.tag == "ellipse":
        cx, cy, rx, ry = _floats(shape, "cx", "cy", "rx", "ry")
        angle = float(shape.attrib.get("rotation", 0))
        cv2.ellipse(mask, (round(cx), round(cy)), (round(rx), round(ry)), angle, 0, 360, int(class_id), -1)


def parse(path: Path) -> ET.Element:
    data = read_limited(path, MAX_XML_BYTES, "CVAT XML")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise UserError("XML with a DOCTYPE or entities is refused", path=path,
                        fix="export with CVAT's 'CVAT for images 1.1' format")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise UserError(f"corrupt or truncated XML ({exc})", path=path, fix="export the annotations again") from None
    if root.tag != "annotations":
        raise UserError(f"root element is <{root.tag}>, not <annotations>", path=path,
                        fix="pass the annotations.xml of CVAT's 'CVAT for images 1.1' export")
    if root.find("track") is not None:
        raise UserError("the XML holds tracks (video format)", path=path,
                        fix="export with 'CVAT for images 1.1', not 'CVAT for video'")
    return root


def load(path: Path, classes: ClassSet, expected: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    root = parse(path)
    collector = MaskCollector(path, classes, expected)
    for image in root.iter("image"):
        name = image.attrib.get("name", "")
        image_id = PurePosixPath(name.replace("\\", "/")).stem
        where = f"{path} (image {name!r})"
        try:
            height, width = int(image.attrib["height"]), int(image.attrib["width"])
        except (KeyError, ValueError):
            raise UserError("an <image> lacks a numeric width/height", path=where,
                            fix="export with CVAT's 'CVAT for images 1.1' format") from None
        collector.check_size(image_id, height, width, where)
        mask = new_mask((height, width), classes)
        shapes = [s for s in image if s.tag not in _SKIPPED]
        ordered = sorted(enumerate(shapes), key=lambda p: (int(p[1].attrib.get("z_order", 0) or 0), p[0]))
        for _, shape in ordered:
            label = shape.attrib.get("label")
            if label is None:
                raise UserError(f"a <{shape.tag}> has no label", path=where, fix="label every shape")
            if label == TO_LABEL_NAME:  # segal's outline of the area to label, not an annotation
                continue
            if shape.tag not in _SUPPORTED:
                raise UserError(f"<{shape.tag}> shapes are not supported", path=where,
                                fix="draw masks, polygons, boxes or ellipses")
            class_id = class_index(classes, label, where)
            try:
                _paint(mask, shape, class_id)
            except KeyError as exc:
                raise UserError(f"a <{shape.tag}> lacks attribute {exc}", path=where,
                                fix="export the annotations again") from None
            except ValueError as exc:
                raise UserError(f"bad <{shape.tag}> of label {label!r}: {exc}", path=where,
                                fix="export the annotations again") from None
        collector.add(image_id, mask, where)
    if not collector.masks:
        raise UserError("no <image> elements found", path=path, fix="export the task with its annotations")
    return collector.result()


register("cvat-xml", export, load)
