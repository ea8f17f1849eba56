"""Annotation export/import: exact round trips, third-party decoders agree, hostile inputs are refused."""

from __future__ import annotations

import json
import shutil
import stat
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segal.data.base import ClassSet
from segal.errors import UserError
from segal.interchange import FORMATS, ExportItem, brush_rle, export_batch, import_masks, safezip
from segal.interchange.cvat_xml import box_rle, decode_box_rle

# "bg" is black (the CVAT void colour) and "car" repeats "road": the colour-mask export must remap both.
CLASSES = ClassSet(("bg", "road", "car", "person"), ((0, 0, 0), (128, 64, 128), (128, 64, 128), (220, 20, 60)))
FORMAT_NAMES = ["cvat-mask", "cvat-xml", "labelstudio", "coco", "png"]


def random_mask(rng: np.random.Generator, h: int, w: int, block: int = 3) -> np.ndarray:
    """Blocky random train ids with every class and ignore, plus single-pixel specks at the edges."""
    coarse = rng.integers(0, len(CLASSES) + 1, (h // block + 1, w // block + 1))
    mask = np.repeat(np.repeat(coarse, block, 0), block, 1)[:h, :w].astype(np.uint8)
    mask[mask == len(CLASSES)] = 255
    mask[0, 0], mask[-1, -1], mask[0, -1] = 1, 2, 255
    flat = mask.ravel()
    flat[: len(CLASSES) + 1] = [*range(len(CLASSES)), 255]  # every value is present
    return mask


@pytest.fixture
def items(tmp_path: Path) -> list[ExportItem]:
    rng = np.random.default_rng(7)
    out = []
    for k, (h, w) in enumerate([(37, 53), (48, 64), (21, 20)]):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = None
        if k == 1:  # one image comes from a file: it must be copied byte for byte
            path = tmp_path / "src" / "frame.jpg"
            path.parent.mkdir()
            cv2.imwrite(str(path), image)
        out.append(ExportItem(id=f"img_{k:02d}", image=image, image_path=path, prediction=random_mask(rng, h, w)))
    return out


def expected_sizes(items: list[ExportItem]) -> dict[str, tuple[int, int]]:
    return {item.id: item.prediction.shape for item in items}


def as_annotated(tasks_json: Path) -> Path:
    """Turn the exported predictions into what Label Studio exports after an annotator accepts them."""
    tasks = json.loads(tasks_json.read_text())
    for number, task in enumerate(tasks):
        task["id"] = number + 1
        task["annotations"] = [{"id": 10 + number, "was_cancelled": False, "result": task.pop("predictions")[0]["result"]}]
    out = tasks_json.with_name("export.json")
    out.write_text(json.dumps(tasks))
    return out


def assert_same(got: dict[str, np.ndarray], items: list[ExportItem]) -> None:
    assert sorted(got) == sorted(item.id for item in items)
    for item in items:
        assert got[item.id].dtype == np.uint8
        np.testing.assert_array_equal(got[item.id], item.prediction, err_msg=item.id)


def export(fmt: str, tmp_path: Path, items: list[ExportItem], **kw) -> Path:
    return export_batch(fmt, tmp_path / fmt, items, kw.pop("classes", CLASSES), task_name="unit-cycle-1", **kw)


# ---------------------------------------------------------------- round trips


def test_registry_names(tmp_path: Path):
    assert FORMATS.names() == sorted(FORMAT_NAMES)
    with pytest.raises(UserError, match="choose one of: coco, cvat-mask"):
        export_batch("yolo", tmp_path, [], CLASSES, task_name="t")


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_round_trip(fmt: str, tmp_path: Path, items: list[ExportItem]):
    main = export(fmt, tmp_path, items)
    assert main.exists()
    if fmt == "labelstudio":
        main = as_annotated(main)
    assert_same(import_masks(main, CLASSES, expected_sizes(items)), items)
    images = tmp_path / fmt / ("images/default" if fmt == "coco" else "images")
    assert (images / "img_01.jpg").read_bytes() == items[1].image_path.read_bytes()
    decoded = cv2.cvtColor(cv2.imread(str(images / "img_00.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decoded, items[0].image)


@pytest.mark.parametrize("fmt", ["cvat-mask", "cvat-xml", "coco", "png"])
def test_round_trip_from_folder_and_zip(fmt: str, tmp_path: Path, items: list[ExportItem]):
    """Tools hand back zips of the folder (CVAT) or the folder itself: both are detected."""
    export(fmt, tmp_path, items)
    folder = tmp_path / fmt
    if fmt == "cvat-mask":
        with zipfile.ZipFile(folder / "cvat-mask.zip") as zf:
            zf.extractall(tmp_path / "unzipped")  # our own, trusted archive
        folder = tmp_path / "unzipped"
    assert_same(import_masks(folder, CLASSES, expected_sizes(items)), items)
    archive = Path(shutil.make_archive(str(tmp_path / f"{fmt}-again"), "zip", folder))
    assert_same(import_masks(archive, CLASSES, expected_sizes(items)), items)


def test_png_cityscapes_label_ids(tmp_path: Path):
    from segal.data.cityscapes import CLASSES as CS
    from segal.data.cityscapes import TRAIN_TO_LABEL_ID

    rng = np.random.default_rng(3)
    mask = rng.integers(0, len(CS) + 1, (24, 30)).astype(np.uint8)
    mask[mask == len(CS)] = 255
    mask.ravel()[: len(CS) + 1] = [*range(len(CS)), 255]
    item = ExportItem("frankfurt_000000_000294", np.zeros((24, 30, 3), np.uint8), None, mask)
    folder = export("png", tmp_path, [item], classes=CS, cityscapes_label_ids=TRAIN_TO_LABEL_ID)
    stored = cv2.imread(str(folder / "frankfurt_000000_000294_gtFine_labelIds.png"), cv2.IMREAD_UNCHANGED)
    # label ids by hand from cityscapesscripts' table: road (train 0) = 7, car (train 13) = 26, ignore = 0
    assert stored[mask == 0].tolist() == [7] * int((mask == 0).sum())
    assert set(stored[mask == 13].tolist()) == {26}
    assert set(stored[mask == 255].tolist()) == {0}
    got = import_masks(folder, CS, {item.id: mask.shape})
    np.testing.assert_array_equal(got[item.id], mask)


def test_empty_prediction_is_all_ignore(tmp_path: Path):
    item = ExportItem("blank", np.zeros((5, 7, 3), np.uint8), None, np.full((5, 7), 255, np.uint8))
    for fmt in FORMAT_NAMES:
        main = export(fmt, tmp_path, [item])
        if fmt == "labelstudio":  # an annotation without a region is a slip there, not an all-void label
            refused(as_annotated(main), {"blank": (5, 7)}, "task 1", "'blank'", "empty")
            continue
        got = import_masks(main, CLASSES, {"blank": (5, 7)})
        assert (got["blank"] == 255).all(), fmt


# ---------------------------------------------------------------- independent decoders


def test_coco_rle_decodes_with_pycocotools(tmp_path: Path, items: list[ExportItem]):
    doc = json.loads(export("coco", tmp_path, items).read_text())
    assert [c["id"] for c in doc["categories"]] == [1, 2, 3, 4]
    by_image = {im["id"]: items[[i.id for i in items].index(Path(im["file_name"]).stem)] for im in doc["images"]}
    seen = set()
    for ann in doc["annotations"]:
        item = by_image[ann["image_id"]]
        rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        binary = mask_utils.decode(rle).astype(bool)
        truth = item.prediction == ann["category_id"] - 1
        np.testing.assert_array_equal(binary, truth)
        assert ann["area"] == truth.sum() and ann["iscrowd"] == 0
        ys, xs = np.nonzero(truth)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        seen.add((item.id, ann["category_id"]))
    assert len(seen) == len(doc["annotations"]) == len(items) * len(CLASSES)  # ignore gets no annotation


def test_cvat_box_rle_by_hand():
    """Row-major runs over the tight box, alternating and starting with a (maybe empty) background run."""
    binary = np.zeros((10, 90), bool)
    binary[4:7, 80:83] = [[0, 1, 1], [1, 1, 1], [0, 0, 1]]
    assert box_rle(binary) == ([1, 5, 2, 1], 80, 4, 3, 3)
    binary = np.zeros((3, 3), bool)
    binary[1:, 1:] = [[1, 0], [1, 1]]
    assert box_rle(binary) == ([0, 1, 1, 2], 1, 1, 2, 2)
    # the example of CVAT's XML docs: rle="1, 2, 2, 3, 2, 2" in a 4×3 box
    expected = np.array([[0, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]], bool)
    np.testing.assert_array_equal(decode_box_rle([1, 2, 2, 3, 2, 2], 4, 3), expected)


def test_brush_rle_matches_label_studio_converter():
    brush = pytest.importorskip("label_studio_converter.brush", reason="label-studio-converter not installed")
    rng = np.random.default_rng(11)
    cases = [
        np.repeat((rng.random(900) > 0.5).astype(np.uint8) * 255, 4),  # a brush mask as mask2rle flattens it
        rng.integers(0, 256, 1000).astype(np.uint8),  # runs of 1
        np.repeat(rng.integers(0, 3, 40), rng.integers(1, 300, 40)).astype(np.uint8),  # all run-size classes
        np.repeat(np.array([0, 255, 0], np.uint8), [70_000, 140_000, 3]),  # runs split at 2^16
    ]
    for arr in cases:
        ours = brush_rle.encode_rle(arr)
        assert ours == list(brush.encode_rle(arr))  # byte-identical to the reference encoder
        np.testing.assert_array_equal(brush.decode_rle(ours), arr)
        np.testing.assert_array_equal(brush_rle.decode_rle(ours), arr)


def test_brush_rle_reads_literal_blocks():
    """Label Studio's frontend (thi.ng rle-pack) writes literal blocks; the converter's decoder is the oracle."""
    values = [5, 9, 9, 9, 200, 1, 2]
    bits = f"{len(values):032b}{7:05b}" + "".join(f"{s - 1:04b}" for s in (3, 4, 8, 16))
    bits += "0" + "00" + "000" + f"{values[0]:08b}"  # one literal
    bits += "1" + "00" + "010" + f"{9:08b}"  # repeat of 3
    bits += "0" + "00" + "010" + "".join(f"{v:08b}" for v in values[4:])  # literal block of 3
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    assert brush_rle.decode_rle(rle).tolist() == values
    brush = pytest.importorskip("label_studio_converter.brush", reason="label-studio-converter not installed")
    assert brush.decode_rle(rle).tolist() == values


def test_label_studio_export_decodes_with_converter(tmp_path: Path, items: list[ExportItem]):
    brush = pytest.importorskip("label_studio_converter.brush", reason="label-studio-converter not installed")
    tasks = json.loads(export("labelstudio", tmp_path, items).read_text())
    config = (tmp_path / "labelstudio" / "labeling_config.xml").read_text()
    assert '<BrushLabels name="tag" toName="image">' in config and 'value="person"' in config
    for item, task in zip(items, tasks, strict=True):
        assert task["data"]["segal_id"] == item.id
        results = [{**r, **r["value"]} for r in task["predictions"][0]["result"]]
        layers = brush.decode_from_annotation("tag", results)
        assert len(layers) == len(CLASSES)
        for name, layer in layers.items():
            class_id = CLASSES.names.index(name.split("-")[1])
            np.testing.assert_array_equal(layer == 255, item.prediction == class_id)
            assert set(np.unique(layer).tolist()) <= {0, 255}


def _datumaro():
    return pytest.importorskip("datumaro", reason="datumaro not installed")


def test_datumaro_reads_cvat_mask_zip(tmp_path: Path, items: list[ExportItem]):
    dm = _datumaro()
    with zipfile.ZipFile(export("cvat-mask", tmp_path, items)) as zf:
        zf.extractall(tmp_path / "voc")
    dataset = dm.Dataset.import_from(str(tmp_path / "voc"), "voc_segmentation")
    names = [c.name for c in dataset.categories()[dm.AnnotationType.label].items]
    by_id = {item.id: item for item in items}
    for dm_item in dataset:
        mask = np.full(by_id[dm_item.id].prediction.shape, 255, np.uint8)
        for ann in dm_item.annotations:
            name = names[ann.label]
            if name != "background":
                mask[ann.image.astype(bool)] = CLASSES.names.index(name)
        np.testing.assert_array_equal(mask, by_id.pop(dm_item.id).prediction)
    assert not by_id


@pytest.mark.parametrize(("fmt", "dm_format"), [("coco", "coco_instances"), ("cvat-xml", "cvat")])
def test_datumaro_reads_coco_and_cvat_xml(fmt: str, dm_format: str, tmp_path: Path, items: list[ExportItem]):
    dm = _datumaro()
    main = export(fmt, tmp_path, items)
    dataset = dm.Dataset.import_from(str(main.parent.parent if fmt == "coco" else main.parent), dm_format)
    names = [c.name for c in dataset.categories()[dm.AnnotationType.label].items]
    by_id = {item.id: item for item in items}
    for dm_item in dataset:
        mask = np.full(by_id[dm_item.id].prediction.shape, 255, np.uint8)
        for ann in dm_item.annotations:
            if ann.type == dm.AnnotationType.mask:
                mask[ann.image.astype(bool)] = CLASSES.names.index(names[ann.label])
        np.testing.assert_array_equal(mask, by_id.pop(dm_item.id).prediction)
    assert not by_id


def test_datumaro_voc_segmentation_without_colours_imports(tmp_path: Path, items: list[ExportItem]):
    """datumaro writes `name:::` labelmap lines (no colours) for labels that came without any, e.g. from
    COCO, and paints the masks with the VOC palette in label order; segal reads that zip back."""
    dm = _datumaro()
    main = export("coco", tmp_path, items)
    dataset = dm.Dataset.import_from(str(main.parent.parent), "coco_instances")
    dataset.export(str(tmp_path / "dm-voc"), "voc_segmentation", save_media=True)
    labelmap = (tmp_path / "dm-voc" / "labelmap.txt").read_text()
    assert f"{CLASSES.names[0]}:::" in labelmap  # the case under test: no colours
    archive = shutil.make_archive(str(tmp_path / "dm-voc"), "zip", tmp_path / "dm-voc")
    assert_same(import_masks(Path(archive), CLASSES, expected_sizes(items)), items)


# ---------------------------------------------------------------- refusals


def refused(path: Path, expected: dict, *words: str, classes: ClassSet = CLASSES) -> str:
    with pytest.raises(UserError) as info:
        import_masks(path, classes, expected)
    message = str(info.value)
    assert "\n" not in message and "fix:" in message
    assert path.name in message
    for word in words:
        assert word in message, message
    return message


def make_zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def test_refuses_zip_slip(tmp_path: Path):
    for name in ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt", "C:/evil.txt"]:
        archive = make_zip(tmp_path / "slip.zip", [("labelmap.txt", b"road:1,2,3::\n"), (name, b"x")])
        refused(archive, {}, "member")
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_refuses_symlink_member(tmp_path: Path):
    link = zipfile.ZipInfo("SegmentationClass/img_00.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = make_zip(tmp_path / "link.zip", [("labelmap.txt", b"road:1,2,3::\n"), (link, b"/etc/passwd")])
    refused(archive, {}, "symbolic link")


def test_refuses_zip_bomb_and_too_many_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    bomb = make_zip(tmp_path / "bomb.zip", [("annotations.xml", bytes(20 << 20))])
    assert bomb.stat().st_size < 100_000
    refused(bomb, {}, "compression ratio")
    monkeypatch.setattr(safezip, "MAX_MEMBERS", 10)
    many = make_zip(tmp_path / "many.zip", [(f"masks/{i}.png", b"x") for i in range(11)])
    refused(many, {}, "members")


def test_refuses_member_larger_than_its_header(tmp_path: Path):
    archive = make_zip(tmp_path / "liar.zip", [("annotations.xml", b"<annotations/>" * 1000)])
    data = bytearray(archive.read_bytes())
    # shrink the declared size in the central directory only: streaming must not trust it
    with zipfile.ZipFile(archive) as zf:
        info = zf.infolist()[0]
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    assert info.file_size == 14_000
    refused(archive, {}, "zip")


def test_refuses_truncated_files(tmp_path: Path, items: list[ExportItem]):
    expected = expected_sizes(items)
    archive = export("cvat-mask", tmp_path, items)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    refused(archive, expected, "corrupt or truncated zip")
    tasks = as_annotated(export("labelstudio", tmp_path, items))
    tasks.write_bytes(tasks.read_bytes()[:-40])
    refused(tasks, expected, "truncated JSON")
    coco = export("coco", tmp_path, items)
    coco.write_bytes(coco.read_bytes()[:500])
    refused(coco, expected, "truncated JSON")
    xml = export("cvat-xml", tmp_path, items)
    xml.write_bytes(xml.read_bytes()[:-30])
    refused(xml, expected, "truncated XML")
    folder = export("png", tmp_path, items)
    png = folder / "img_00.png"
    png.write_bytes(png.read_bytes()[:60])
    refused(folder, expected, "img_00.png", "corrupt or truncated")


def test_refuses_corrupt_encodings(tmp_path: Path, items: list[ExportItem]):
    expected = expected_sizes(items)
    tasks_path = as_annotated(export("labelstudio", tmp_path, items))
    tasks = json.loads(tasks_path.read_text())
    tasks[0]["annotations"][0]["result"][0]["value"]["rle"] = tasks[0]["annotations"][0]["result"][0]["value"]["rle"][:9]
    tasks_path.write_text(json.dumps(tasks))
    refused(tasks_path, expected, "brush RLE")
    coco = export("coco", tmp_path, items)
    doc = json.loads(coco.read_text())
    doc["annotations"][0]["segmentation"]["counts"] += "7"
    coco.write_text(json.dumps(doc))
    refused(coco, expected, "corrupt counts")
    xml = export("cvat-xml", tmp_path, items)
    text = xml.read_text()
    xml.write_text(text.replace('left="', 'left="9999', 1))
    refused(xml, expected, "outside")


def test_refuses_wrong_size(tmp_path: Path, items: list[ExportItem]):
    expected = expected_sizes(items)
    expected["img_01"] = (48, 65)
    for fmt in FORMAT_NAMES:
        main = export(fmt, tmp_path, items)
        main = as_annotated(main) if fmt == "labelstudio" else main
        refused(main, expected, "img_01", "64×48", "65×48")


def test_refuses_unknown_colour(tmp_path: Path, items: list[ExportItem]):
    with zipfile.ZipFile(export("cvat-mask", tmp_path, items)) as zf:
        zf.extractall(tmp_path / "voc")
    file = tmp_path / "voc" / "SegmentationClass" / "img_02.png"
    bgr = cv2.imread(str(file))
    bgr[3, 4] = (3, 2, 1)
    cv2.imwrite(str(file), bgr)
    refused(tmp_path / "voc", expected_sizes(items), "img_02.png", "(1, 2, 3)", "labelmap")


def test_refuses_unknown_label_name(tmp_path: Path, items: list[ExportItem]):
    expected = expected_sizes(items)
    tasks_path = as_annotated(export("labelstudio", tmp_path, items))
    tasks = json.loads(tasks_path.read_text())
    tasks[1]["annotations"][0]["result"][0]["value"]["brushlabels"] = ["unicorn"]
    tasks_path.write_text(json.dumps(tasks))
    refused(tasks_path, expected, "'unicorn'")
    coco = export("coco", tmp_path, items)
    doc = json.loads(coco.read_text())
    doc["categories"][2]["name"] = "unicorn"
    coco.write_text(json.dumps(doc))
    refused(coco, expected, "'unicorn'")
    xml = export("cvat-xml", tmp_path, items)
    xml.write_text(xml.read_text().replace('label="road"', 'label="unicorn"'))
    refused(xml, expected, "'unicorn'")
    with zipfile.ZipFile(export("cvat-mask", tmp_path, items)) as zf:
        zf.extractall(tmp_path / "voc")
    labelmap = tmp_path / "voc" / "labelmap.txt"
    labelmap.write_text(labelmap.read_text().replace("person:", "unicorn:"))
    refused(tmp_path / "voc", expected, "labelmap.txt", "'unicorn'")


def test_refuses_never_queried_id(tmp_path: Path, items: list[ExportItem]):
    expected = expected_sizes(items)
    del expected["img_02"]
    for fmt in FORMAT_NAMES:
        main = export(fmt, tmp_path, items)
        main = as_annotated(main) if fmt == "labelstudio" else main
        refused(main, expected, "'img_02'", "not queried")


def test_refuses_duplicate_id(tmp_path: Path, items: list[ExportItem]):
    expected = expected_sizes(items)
    tasks_path = as_annotated(export("labelstudio", tmp_path, items))
    tasks = json.loads(tasks_path.read_text())
    tasks_path.write_text(json.dumps([*tasks, tasks[0]]))
    refused(tasks_path, expected, "'img_00'", "twice")
    coco = export("coco", tmp_path, items)
    doc = json.loads(coco.read_text())
    doc["images"].append({**doc["images"][0], "id": 99})
    coco.write_text(json.dumps(doc))
    refused(coco, expected, "'img_00'", "twice")
    folder = export("png", tmp_path, items)
    (folder / "again").mkdir()
    shutil.copy(folder / "img_00.png", folder / "again" / "img_00.png")
    refused(folder, expected, "'img_00'", "twice")
    xml = export("cvat-xml", tmp_path, items)
    text = xml.read_text()
    first = text[text.index("<image ") : text.index("</image>") + len("</image>")]
    xml.write_text(text.replace("</annotations>", first + "</annotations>"))
    refused(xml, expected, "'img_00'", "twice")


def test_refuses_xml_entities_and_bad_values(tmp_path: Path, items: list[ExportItem]):
    bomb = tmp_path / "annotations.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx">]><annotations>&x;</annotations>')
    refused(bomb, {}, "DOCTYPE")
    folder = export("png", tmp_path, items)
    mask = cv2.imread(str(folder / "img_00.png"), cv2.IMREAD_UNCHANGED)
    mask[0, 0] = 7  # not a class (4 classes) and not 255
    cv2.imwrite(str(folder / "img_00.png"), mask)
    refused(folder, expected_sizes(items), "img_00.png", "[7]")


def test_unannotated_label_studio_tasks_are_left_out(tmp_path: Path, items: list[ExportItem]):
    """A task with only predictions (nobody reviewed it) must not count as labelled."""
    tasks_path = as_annotated(export("labelstudio", tmp_path, items))
    tasks = json.loads(tasks_path.read_text())
    tasks[2]["annotations"] = [{"was_cancelled": True, "result": []}]
    del tasks[1]["annotations"]
    del tasks[0]["data"]["segal_id"]  # falls back to the image file name
    tasks[0]["data"]["image"] = "/data/upload/3/1a2b3c4d-img_00.png"
    tasks_path.write_text(json.dumps(tasks))
    got = import_masks(tasks_path, CLASSES, expected_sizes(items))
    assert list(got) == ["img_00"]
    np.testing.assert_array_equal(got["img_00"], items[0].prediction)


def test_label_studio_local_files_url(tmp_path: Path, items: list[ExportItem], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(tmp_path))
    tasks_path = export("labelstudio", tmp_path, items)
    tasks = json.loads(tasks_path.read_text())
    assert tasks[1]["data"]["image"] == "/data/local-files/?d=labelstudio/images/img_01.jpg"
    for task in tasks:
        del task["data"]["segal_id"]  # ids come back from the local-files path alone
    tasks_path.write_text(json.dumps(tasks))
    assert_same(import_masks(as_annotated(tasks_path), CLASSES, expected_sizes(items)), items)


# ---------------------------------------------------------------- region exports (issue 16): what to label

REGION_FILE_NAMES = {"cvat-mask": "cvat-mask.zip", "cvat-xml": "annotations.xml", "labelstudio": "tasks.json",
                     "coco": "annotations/instances_default.json", "png": "masks"}


@pytest.fixture
def region_items(items: list[ExportItem]) -> list[ExportItem]:
    """The same images with part of each to label: two blocks (one on the border), a hole, or (last) all of it."""
    out = []
    for k, item in enumerate(items):
        h, w = item.prediction.shape
        area = None
        if k < 2:
            area = np.zeros((h, w), bool)
            area[: h // 2, : w // 3] = True  # touches the top and left border
            area[h // 2 + 3:, w // 2:] = True
            area[-2, -3] = False  # a one-pixel hole
        out.append(ExportItem(item.id, item.image, item.image_path, item.prediction, to_label=area))
    return out


def region_expected(item: ExportItem) -> np.ndarray:
    return item.prediction if item.to_label is None else np.where(item.to_label, item.prediction, 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_region_round_trip(fmt: str, tmp_path: Path, region_items: list[ExportItem]):
    """Unchanged, a region export comes back as the prediction inside the area and 255 outside: the marker
    outline the tool shows is dropped (Label Studio: the annotator's copy of the read-only region too)."""
    main = export(fmt, tmp_path, region_items)
    if fmt == "labelstudio":
        main = as_annotated(main)
    got = import_masks(main, CLASSES, expected_sizes(region_items))
    assert sorted(got) == sorted(item.id for item in region_items)
    for item in region_items:
        np.testing.assert_array_equal(got[item.id], region_expected(item), err_msg=item.id)
    assert (got["img_00"] == 255).sum() > (region_items[0].prediction == 255).sum()  # the outside is ignored


def small_region_item() -> ExportItem:
    """6×8, a 2×2 area to label at rows 2-3, columns 3-4: the 1-pixel outline is its 4×4 frame."""
    prediction = np.full((6, 8), 1, np.uint8)
    prediction[2, 3] = 3
    area = np.zeros((6, 8), bool)
    area[2:4, 3:5] = True
    return ExportItem("small", np.zeros((6, 8, 3), np.uint8), None, prediction, to_label=area)


RING = np.zeros((6, 8), bool)  # by hand: rows 1-4, columns 2-5, minus the area itself
RING[1:5, 2:6] = True
RING[2:4, 3:5] = False


def test_region_marker_cvat_mask(tmp_path: Path):
    export("cvat-mask", tmp_path, [small_region_item()])
    with zipfile.ZipFile(tmp_path / "cvat-mask" / "cvat-mask.zip") as zf:
        labelmap = zf.read("labelmap.txt").decode()
        png = cv2.imdecode(np.frombuffer(zf.read("SegmentationClass/small.png"), np.uint8), cv2.IMREAD_COLOR)
    assert labelmap.splitlines()[-1] == "segal to label:255,0,255::"
    rgb = cv2.cvtColor(png, cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal((rgb == (255, 0, 255)).all(axis=2), RING)
    outside = ~RING
    outside[2:4, 3:5] = False
    assert (rgb[outside] == 0).all()  # no prediction outside the area: void (black)
    assert len({tuple(c) for c in rgb[2:4, 3:5].reshape(-1, 3)}) == 2  # classes 1 and 3 inside


def test_region_marker_cvat_xml(tmp_path: Path):
    main = export("cvat-xml", tmp_path, [small_region_item()])
    root = ET.parse(main).getroot()
    assert [lab.findtext("name") for lab in root.iter("label")][-1] == "segal to label"
    masks = {m.attrib["label"]: m for m in root.iter("mask")}
    assert sorted(masks) == ["person", "road", "segal to label"]
    marker = masks["segal to label"]
    left, top, w, h = (int(marker.attrib[k]) for k in ("left", "top", "width", "height"))
    painted = np.zeros((6, 8), bool)
    painted[top:top + h, left:left + w] = decode_box_rle([int(v) for v in marker.attrib["rle"].split(",")], w, h)
    np.testing.assert_array_equal(painted, RING)
    assert (masks["road"].attrib["left"], masks["road"].attrib["width"]) == ("3", "2")  # road only inside


def test_region_marker_label_studio(tmp_path: Path):
    main = export("labelstudio", tmp_path, [small_region_item()])
    config = ET.fromstring((main.parent / "labeling_config.xml").read_text())
    assert "segal to label" in config.find("Header").attrib["value"]
    controls = {c.attrib["name"]: [lab.attrib["value"] for lab in c] for c in config.iter("BrushLabels")}
    assert controls == {"tag": list(CLASSES.names), "segal_to_label": ["segal to label"]}
    (task,) = json.loads(main.read_text())
    result = task["predictions"][0]["result"]
    (marker,) = [r for r in result if r["from_name"] == "segal_to_label"]
    assert marker["readonly"] is True and marker["value"]["brushlabels"] == ["segal to label"]
    np.testing.assert_array_equal(brush_rle.rle_to_mask(marker["value"]["rle"], 6, 8), RING)
    assert all("readonly" not in r for r in result if r is not marker)
    road = next(r for r in result if r["value"]["brushlabels"] == ["road"])
    assert brush_rle.rle_to_mask(road["value"]["rle"], 6, 8).sum() == 3  # 4 area pixels, one is "person"


def test_region_marker_coco(tmp_path: Path):
    doc = json.loads(export("coco", tmp_path, [small_region_item()]).read_text())
    assert doc["categories"][-1] == {"id": 5, "name": "segal to label", "supercategory": ""}
    (marker,) = [a for a in doc["annotations"] if a["category_id"] == 5]
    rle = {"size": marker["segmentation"]["size"], "counts": marker["segmentation"]["counts"].encode()}
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), RING)
    assert marker["area"] == 12


def test_region_marker_png(tmp_path: Path):
    export("png", tmp_path, [small_region_item()])
    area = cv2.imread(str(tmp_path / "png" / "to_label" / "small.png"), cv2.IMREAD_UNCHANGED)
    assert area.dtype == np.uint8 and sorted(np.unique(area).tolist()) == [0, 255]
    np.testing.assert_array_equal(area == 255, small_region_item().to_label)
    mask = cv2.imread(str(tmp_path / "png" / "masks" / "small.png"), cv2.IMREAD_UNCHANGED)
    assert (mask == 255).sum() == 6 * 8 - 4
    # imported from the export's root folder, to_label/ is not mistaken for masks
    got = import_masks(tmp_path / "png", CLASSES, {"small": (6, 8)})
    np.testing.assert_array_equal(got["small"], region_expected(small_region_item()))


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_image_exports_carry_no_marker(fmt: str, tmp_path: Path, items: list[ExportItem]):
    """Image-level runs: no marker label, control, category or folder anywhere in the export."""
    export(fmt, tmp_path, items)
    contents = []
    for path in (tmp_path / fmt).rglob("*"):
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                contents += [zf.read(n) for n in zf.namelist()]
        elif path.is_file():
            contents.append(path.read_bytes())
    assert not any(b"segal to label" in c or b"segal_to_label" in c for c in contents)
    assert not (tmp_path / fmt / "to_label").exists()


def test_marker_shapes_are_dropped_whatever_their_order(tmp_path: Path):
    """CVAT XML: a marker mask drawn above a class (higher z_order) leaves that class; it never paints 255."""
    main = export("cvat-xml", tmp_path, [small_region_item()])
    root = ET.parse(main).getroot()
    marker = next(m for m in root.iter("mask") if m.attrib["label"] == "segal to label")
    marker.attrib.update(left="3", top="2", width="2", height="2", rle="0, 4", z_order="9")  # over the area
    ET.ElementTree(root).write(main)
    got = import_masks(main, CLASSES, {"small": (6, 8)})
    np.testing.assert_array_equal(got["small"], region_expected(small_region_item()))


def test_label_studio_annotation_of_only_the_marker_is_empty(tmp_path: Path):
    tasks_path = as_annotated(export("labelstudio", tmp_path, [small_region_item()]))
    tasks = json.loads(tasks_path.read_text())
    result = tasks[0]["annotations"][0]["result"]
    tasks[0]["annotations"][0]["result"] = [r for r in result if r["from_name"] == "segal_to_label"]
    tasks_path.write_text(json.dumps(tasks))
    refused(tasks_path, {"small": (6, 8)}, "'small'", "empty")


def test_region_items_are_checked(tmp_path: Path):
    base = small_region_item()
    for bad in [base.to_label.astype(np.uint8), base.to_label[:, :7], np.zeros((6, 8), bool)]:
        item = ExportItem("small", base.image, None, base.prediction, to_label=bad)
        with pytest.raises(ValueError, match="to_label of small"):
            export("png", tmp_path, [item])
    named = ClassSet(("road", "segal to label"), ((1, 2, 3), (4, 5, 6)))
    with pytest.raises(UserError, match="rename that class"):
        export("coco", tmp_path, [ExportItem("small", base.image, None, base.prediction // 3, to_label=base.to_label)],
               classes=named)
    assert not (tmp_path / "png").exists() and not (tmp_path / "coco").exists()


# ---------------------------------------------------------------- extra files beside the export


def test_extra_files_are_written_with_the_export(tmp_path: Path, items: list[ExportItem]):
    extra = {"regions.json": b'{"cycle": 3}\n', "meta/notes.txt": b"hello"}
    for fmt in FORMAT_NAMES:
        export(fmt, tmp_path, items, extra_files=extra)
        assert (tmp_path / fmt / "regions.json").read_bytes() == b'{"cycle": 3}\n'
        assert (tmp_path / fmt / "meta" / "notes.txt").read_bytes() == b"hello"
        if fmt in ("png", "coco", "cvat-xml"):  # their export folder still imports: regions.json is no annotation
            assert_same(import_masks(tmp_path / fmt, CLASSES, expected_sizes(items)), items)
    assert not list(tmp_path.glob(".*staging*"))


@pytest.mark.parametrize("name", ["/tmp/regions.json", "../regions.json", "a/../../b", "a//b", "./a", "", "a\\b"])
def test_extra_files_refuse_paths_outside_the_export(name: str, tmp_path: Path, items: list[ExportItem]):
    with pytest.raises(ValueError, match="relative path inside the export"):
        export("png", tmp_path, items, extra_files={name: b"x"})
    assert not (tmp_path / "png").exists() and not (tmp_path / "regions.json").exists()


@pytest.mark.parametrize(("fmt", "name"), [("labelstudio", "tasks.json"), ("labelstudio", "images"),
                                           ("png", "images/img_00.png"), ("cvat-mask", "cvat-mask.zip/x"),
                                           ("coco", ".segal-export.json"), ("png", "masks")])
def test_extra_files_never_overwrite_the_formats_own(fmt: str, name: str, tmp_path: Path, items: list[ExportItem]):
    first = export(fmt, tmp_path, items[:1])  # an earlier export in place must survive the refusal
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="collides with the"):
        export(fmt, tmp_path, items, extra_files={name: b"x"})
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before
    assert first.exists()


@pytest.mark.parametrize(("fmt", "dm_format"), [("cvat-mask", "voc_segmentation"), ("coco", "coco_instances"),
                                                ("cvat-xml", "cvat")])
def test_datumaro_sees_the_marker_label(fmt: str, dm_format: str, tmp_path: Path):
    """An independent reader finds the marker as an ordinary label holding exactly the outline."""
    dm = _datumaro()
    main = export(fmt, tmp_path, [small_region_item()])
    root = {"cvat-mask": tmp_path / "voc", "coco": main.parent.parent, "cvat-xml": main.parent}[fmt]
    if fmt == "cvat-mask":
        with zipfile.ZipFile(main) as zf:
            zf.extractall(root)
    dataset = dm.Dataset.import_from(str(root), dm_format)
    (dm_item,) = dataset
    names = [c.name for c in dataset.categories()[dm.AnnotationType.label].items]
    masks = {names[a.label]: a.image.astype(bool) for a in dm_item.annotations if a.type == dm.AnnotationType.mask}
    np.testing.assert_array_equal(masks["segal to label"], RING)
