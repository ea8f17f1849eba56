"""Each adapter on a small fixture in its official layout, generated here; CamVid on the real data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segal.data import DATASETS
from segal.data.base import IGNORE_INDEX, read_rgb
from segal.errors import UserError


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), arr)
    return path


def _rgb(seed: int, h: int = 12, w: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- cityscapes
def make_cityscapes(root: Path, split: str = "train", cities=("aachen", "bochum"), per_city: int = 2,
                    h: int = 12, w: int = 16) -> list[str]:
    ids = []
    rng = np.random.default_rng(0)
    for city in cities:
        for k in range(per_city):
            stem = f"{city}_{k:06d}_000019"
            _png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _rgb(k, h, w))
            # label ids 0..33 (7 = road, 26 = car, 0 = unlabeled)
            _png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
                 rng.choice([0, 7, 8, 26, 24, 33], size=(h, w)).astype(np.uint8))
            ids.append(stem)
    return ids


def test_cityscapes_maps_label_ids_to_train_ids_with_cityscapesscripts(tmp_path):
    from cityscapesscripts.helpers.labels import id2label

    ids = make_cityscapes(tmp_path)
    ds = DATASETS.get("cityscapes")(str(tmp_path), "train")
    assert len(ds) == 4 and ds.ids == sorted(ids)
    assert len(ds.classes) == 19 and ds.classes.names[0] == "road" and ds.classes.names[18] == "bicycle"
    image, mask, image_id = ds[0]
    stored = cv2.imread(str(tmp_path / "gtFine/train/aachen" / f"{image_id}_gtFine_labelIds.png"), cv2.IMREAD_UNCHANGED)
    expected = np.vectorize(lambda v: id2label[v].trainId if id2label[v].trainId not in (-1, 255) else 255)(stored)
    np.testing.assert_array_equal(mask, expected)
    assert set(np.unique(mask)) <= {0, 1, 11, 13, 18, IGNORE_INDEX}
    assert image.shape == (12, 16, 3)
    # train id -> label id round trip for the evaluator's encoding
    assert ds.train_to_label_id[0] == 7 and ds.train_to_label_id[13] == 26


def test_cityscapes_reports_missing_masks_with_count_and_first(tmp_path):
    make_cityscapes(tmp_path)
    missing = tmp_path / "gtFine/train/bochum/bochum_000001_000019_gtFine_labelIds.png"
    missing.unlink()
    with pytest.raises(UserError, match=r"1 cityscapes train images have no mask: first is .*bochum_000001"):
        DATASETS.get("cityscapes")(str(tmp_path), "train")


def test_cityscapes_unknown_label_id_is_an_error(tmp_path):
    make_cityscapes(tmp_path)
    path = tmp_path / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    _png(path, np.full((12, 16), 200, np.uint8))
    ds = DATASETS.get("cityscapes")(str(tmp_path), "train")
    with pytest.raises(UserError, match=r"aachen_000000.*ids \[200\]"):
        ds[0]


def test_cityscapes_missing_split_folder(tmp_path):
    make_cityscapes(tmp_path)
    with pytest.raises(UserError, match="leftImg8bit/val/"):
        DATASETS.get("cityscapes")(str(tmp_path), "val")


# ---------------------------------------------------------------- bdd100k
def make_bdd(root: Path, split: str = "train", n: int = 3, h: int = 12, w: int = 16) -> None:
    rng = np.random.default_rng(1)
    for k in range(n):
        stem = f"{k:04x}a1b2-c3d4e5f6"
        path = root / "images" / "10k" / split / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), _rgb(k, h, w))
        mask = rng.integers(0, 19, (h, w)).astype(np.uint8)
        mask[0, :] = 255
        _png(root / "labels" / "sem_seg" / "masks" / split / f"{stem}.png", mask)


def test_bdd100k_layout_and_values(tmp_path):
    make_bdd(tmp_path)
    ds = DATASETS.get("bdd100k")(str(tmp_path), "train")
    assert len(ds) == 3 and len(ds.classes) == 19
    image, mask, image_id = ds[1]
    stored = cv2.imread(str(tmp_path / "labels/sem_seg/masks/train" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask, stored)
    assert image.dtype == np.uint8 and image.shape == (12, 16, 3)


def test_bdd100k_value_19_is_refused(tmp_path):
    make_bdd(tmp_path)
    first = sorted((tmp_path / "labels/sem_seg/masks/train").glob("*.png"))[0]
    _png(first, np.full((12, 16), 19, np.uint8))
    with pytest.raises(UserError, match=r"ids \[19\]"):
        DATASETS.get("bdd100k")(str(tmp_path), "train")[0]


def _palette_png(path: Path, ids: np.ndarray, palette: list[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.frombytes("P", (ids.shape[1], ids.shape[0]), np.ascontiguousarray(ids, np.uint8).tobytes())
    image.putpalette(palette)
    image.save(path)
    return path


def test_bdd100k_palette_masks_load_as_their_indices(tmp_path):
    """BDD100K's own sem_seg masks are "P" PNGs with an identity grey palette (values 0–14 in its
    test masks); OpenCV expands them to 3-channel colour, which segal used to refuse."""
    make_bdd(tmp_path)
    grey = [v for i in range(256) for v in (i, i, i)]
    rng = np.random.default_rng(7)
    stored = {}
    for path in sorted((tmp_path / "labels/sem_seg/masks/train").glob("*.png")):
        ids = rng.integers(0, 15, (12, 16)).astype(np.uint8)
        ids[-1, :] = 255
        stored[path.stem] = ids
        _palette_png(path, ids, grey)
        assert Image.open(path).mode == "P" and cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ndim == 3
    ds = DATASETS.get("bdd100k")(str(tmp_path), "train")
    for i in range(len(ds)):
        np.testing.assert_array_equal(ds[i][1], stored[ds.image_id(i)])


def test_voc_style_palette_masks_through_the_folder_adapter(tmp_path):
    """PASCAL VOC's masks: "P" PNGs in VOC's colour palette, 255 (cream) on object borders."""
    from segal.data.folder import _palette

    make_folder(tmp_path, n=2)
    voc = [v for i in range(256) for v in _palette(i)]
    ids = np.zeros((12, 16), np.uint8)
    ids[2:9, 3:12] = 2
    ids[2, 3:12] = ids[8, 3:12] = 255  # the border VOC draws around objects
    ids[10:, :] = 1
    _palette_png(tmp_path / "masks/train/img1.png", ids, voc)
    assert Image.open(tmp_path / "masks/train/img1.png").getpalette()[3 * 255:] == [224, 224, 192]
    ds = DATASETS.get("folder")(str(tmp_path), "train")
    np.testing.assert_array_equal(ds[1][1], ids)
    assert set(np.unique(ds[1][1]).tolist()) == {0, 1, 2, IGNORE_INDEX}


def test_masks_stored_as_grey_rgb_or_16_bit_keep_their_ids(tmp_path):
    make_folder(tmp_path, n=3)
    ids = np.random.default_rng(3).integers(0, 3, (12, 16)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "masks/train/img0.png"), np.dstack([ids] * 3))  # grey saved as RGB
    cv2.imwrite(str(tmp_path / "masks/train/img1.png"), ids.astype(np.uint16))
    Image.fromarray(np.dstack([ids, np.full_like(ids, 255)])).save(tmp_path / "masks/train/img2.png")
    ds = DATASETS.get("folder")(str(tmp_path), "train")
    for i in range(3):
        np.testing.assert_array_equal(ds[i][1], ids)


@pytest.mark.parametrize(("make", "message"), [
    (lambda ids: np.dstack([ids * 100, ids, ids]), "colour-coded label map"),
    (lambda ids: np.dstack([ids, ids, ids, np.where(ids == 1, 0, 255).astype(np.uint8)]), "transparent"),
    (lambda ids: ids.astype(np.uint16) + 300, "above 255"),
], ids=["colour", "transparent", "16-bit-ids"])
def test_masks_that_are_not_id_maps_are_refused(tmp_path, make, message):
    make_folder(tmp_path, n=2)
    ids = np.random.default_rng(4).integers(0, 3, (12, 16)).astype(np.uint8)
    victim = tmp_path / "masks/train/img1.png"
    array = make(ids)
    cv2.imwrite(str(victim), array if array.ndim == 2 else array[..., [2, 1, 0, *range(3, array.shape[2])]])
    with pytest.raises(UserError, match=message) as exc:
        DATASETS.get("folder")(str(tmp_path), "train")[1]
    assert str(victim) in str(exc.value) and "fix:" in str(exc.value)


def _expected_rgb(rgb: np.ndarray, kind: str) -> tuple[np.ndarray, int]:
    """What an image of ``kind`` re-saved from ``rgb`` should read back as, and the JPEG tolerance."""
    if kind == "grey-jpeg":
        return np.repeat(np.asarray(Image.fromarray(rgb).convert("L"))[..., None], 3, axis=2), 8
    if kind == "cmyk-jpeg":
        return rgb, 24
    return rgb, 0


@pytest.mark.parametrize("kind", ["rgba-png", "rgb16-png", "grey16-png", "grey-jpeg", "cmyk-jpeg", "palette-png"])
def test_images_of_every_mode_read_as_8_bit_rgb(tmp_path, kind):
    rgb = np.kron(np.random.default_rng(5).integers(0, 256, (3, 4, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    path = tmp_path / "image.img"
    if kind == "rgba-png":
        Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])).save(path, format="PNG")
    elif kind == "rgb16-png":
        assert cv2.imwrite(str(path.with_suffix(".png")), rgb[..., ::-1].astype(np.uint16) * 257)
        path = path.with_suffix(".png")
    elif kind == "grey16-png":
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
        assert cv2.imwrite(str(path.with_suffix(".png")), rgb[..., 0].astype(np.uint16) * 256 + 100)  # high byte kept
        path = path.with_suffix(".png")
    elif kind == "grey-jpeg":
        Image.fromarray(rgb).convert("L").save(path, format="JPEG", quality=95)
    elif kind == "cmyk-jpeg":
        Image.fromarray(rgb).convert("CMYK").save(path, format="JPEG", quality=95)
    else:
        Image.fromarray(rgb).quantize(64).save(path, format="PNG")
        rgb = np.asarray(Image.open(path).convert("RGB"))
    expected, tolerance = _expected_rgb(rgb, kind)
    image = read_rgb(path)
    assert image.dtype == np.uint8 and image.shape == (12, 16, 3)
    assert np.abs(image.astype(int) - expected).max() <= tolerance


# ---------------------------------------------------------------- camvid
def make_camvid(root: Path, split: str = "train", n: int = 3) -> None:
    rng = np.random.default_rng(2)
    for k in range(n):
        _png(root / split / f"0001TP_{k:06d}.png", _rgb(k))
        _png(root / f"{split}annot" / f"0001TP_{k:06d}.png", rng.integers(0, 12, (12, 16)).astype(np.uint8))


def test_camvid_fixture_void_is_ignored(tmp_path):
    make_camvid(tmp_path)
    ds = DATASETS.get("camvid")(str(tmp_path), "train")
    _, mask, image_id = ds[0]
    stored = cv2.imread(str(tmp_path / "trainannot" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask, np.where(stored == 11, 255, stored))
    assert len(ds.classes) == 11


def test_camvid_mask_of_wrong_size_is_an_error(tmp_path):
    make_camvid(tmp_path)
    _png(tmp_path / "trainannot" / "0001TP_000002.png", np.zeros((10, 16), np.uint8))
    with pytest.raises(UserError, match=r"0001TP_000002.*mask is 16×10 but its image is 16×12"):
        DATASETS.get("camvid")(str(tmp_path), "train")[2]


def test_camvid_corrupt_image_is_an_error(tmp_path):
    make_camvid(tmp_path)
    (tmp_path / "train" / "0001TP_000001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(UserError, match=r"0001TP_000001.*cannot decode image"):
        DATASETS.get("camvid")(str(tmp_path), "train")[1]


def test_camvid_real_data(camvid_root):
    train = DATASETS.get("camvid")(str(camvid_root), "train")
    val = DATASETS.get("camvid")(str(camvid_root), "val")
    assert (len(train), len(val)) == (367, 101)
    image, mask, _ = train[0]
    assert image.shape == (360, 480, 3) and mask.shape == (360, 480)
    values = set(np.unique(mask).tolist())
    assert values <= set(range(11)) | {255} and len(values) > 5


# ---------------------------------------------------------------- folder
def make_folder(root: Path, split: str = "train", n: int = 2) -> None:
    (root / "classes.txt").write_text("background 0 0 0\nleaf 0 200 0\n# comment\nstem\n")
    for k in range(n):
        _png(root / "images" / split / f"img{k}.jpg", _rgb(k))
        _png(root / "masks" / split / f"img{k}.png", np.full((12, 16), k % 3, np.uint8))


def test_folder_reads_class_file_and_masks(tmp_path):
    make_folder(tmp_path, n=3)
    ds = DATASETS.get("folder")(str(tmp_path), "train")
    assert ds.classes.names == ("background", "leaf", "stem")
    assert ds.classes.colors[1] == (0, 200, 0)
    assert int(ds[2][1][0, 0]) == 2


def test_folder_ignore_ids_and_unknown_ids(tmp_path):
    make_folder(tmp_path, n=3)
    _png(tmp_path / "masks/train/img1.png", np.full((12, 16), 7, np.uint8))
    ds = DATASETS.get("folder")(str(tmp_path), "train")
    with pytest.raises(UserError, match=r"ids \[7\]"):
        ds[1]
    ds = DATASETS.get("folder")(str(tmp_path), "train", ignore_ids=[7])
    assert (ds[1][1] == 255).all()


def test_folder_without_class_list(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(UserError, match="no class list"):
        DATASETS.get("folder")(str(tmp_path), "train")
    assert len(DATASETS.get("folder")(str(tmp_path), "train", classes=["a", "b"]).classes) == 2


def test_demo_is_deterministic_and_has_all_classes():
    build = DATASETS.get("demo")
    a, b = build(None, "train", n_train=20), build(None, "train", n_train=20)
    for i in (0, 7):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1], b[i][1])
    present = set()
    for i in range(20):
        present |= set(np.unique(a[i][1]).tolist())
    assert present == set(range(8))
    assert not np.array_equal(build(None, "test")[0][0], a[0][0])
