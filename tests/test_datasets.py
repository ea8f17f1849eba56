"""Each adapter on a small fixture in its official layout, generated here; CamVid on the real data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segal.data import DATASETS
from segal.data.base import IGNORE_INDEX
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
