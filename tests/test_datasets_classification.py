"""Classification adapters on fixtures in their official layouts, generated here; CIFAR-10 and the
class-folder adapter on the real CIFAR-10 JPEGs.  Pixels are checked against PIL (not cv2, which the
adapters use), splits against an independent recomputation."""

from __future__ import annotations

import os
import pickle
import stat
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segal.data import DATASETS
from segal.data.loaders import make_loader
from segal.errors import UserError

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _rgb(seed: int, h: int = 8, w: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix if path.suffix.lower() != ".jpeg" else ".jpg",
                            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(data.tobytes())
    return path


def _pil(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _assert_close_jpeg(actual: np.ndarray, path: Path) -> None:
    """cv2 and PIL decode the same JPEG; allow for IDCT rounding differences between builds."""
    expected = _pil(path)
    assert actual.shape == expected.shape and actual.dtype == np.uint8
    assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 2


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- CIFAR
def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _rows(images: list[np.ndarray]) -> np.ndarray:
    """H×W×3 images → the official N×3072 rows (R plane, then G, then B)."""
    return np.stack([im.transpose(2, 0, 1).reshape(-1) for im in images]).astype(np.uint8)


def make_cifar10_from_jpgs(jpg_root: Path, root: Path, per_class: int = 5):
    """The real ``cifar-10-batches-py`` layout, batches shuffled like the originals."""
    folder = root / "cifar-10-batches-py"
    classes = sorted(p.name for p in (jpg_root / "train").iterdir())
    rng = np.random.default_rng(7)
    expected = {"train": ([], []), "test": ([], [])}
    batches = [(f"data_batch_{b + 1}", "train", b) for b in range(5)] + [("test_batch", "test", 0)]
    for name, split, b in batches:
        items = []
        for label, cls in enumerate(classes):
            files = sorted((jpg_root / split / cls).iterdir())[b * per_class:(b + 1) * per_class]
            items += [(_pil(f), label, f.name) for f in files]
        items = [items[i] for i in rng.permutation(len(items))]
        _pickle(folder / name, {b"batch_label": f"batch {name}".encode(), b"labels": [i[1] for i in items],
                                b"data": _rows([i[0] for i in items]),
                                b"filenames": [i[2].encode() for i in items]})
        expected[split][0].extend(i[0] for i in items)
        expected[split][1].extend(i[1] for i in items)
    _pickle(folder / "batches.meta", {b"num_cases_per_batch": 10 * per_class,
                                      b"label_names": [c.encode() for c in classes], b"num_vis": 3072})
    return classes, expected


def make_cifar100(root: Path, n_train: int = 6, n_test: int = 3):
    folder = root / "cifar-100-python"
    out = {}
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 50)):
        images = [np.stack([np.full((32, 32), 10 + k, np.uint8), np.full((32, 32), 100 + k, np.uint8),
                            np.full((32, 32), 200 + k, np.uint8)], axis=2) for k in range(n)]
        images = [im + _rgb(offset + k, 32, 32) % 3 for k, im in enumerate(images)]
        fine = [(7 * k + offset) % 100 for k in range(n)]
        _pickle(folder / split, {b"filenames": [b"x.png"] * n, b"batch_label": b"b", b"fine_labels": fine,
                                 b"coarse_labels": [k % 20 for k in fine], b"data": _rows(images)})
        out[split] = (images, fine)
    _pickle(folder / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                              b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    return out


def test_cifar10_on_real_pixels(cifar_jpg_root, tmp_path):
    classes, expected = make_cifar10_from_jpgs(cifar_jpg_root, tmp_path)
    assert tuple(classes) == CIFAR10_NAMES
    for split, count in (("train", 250), ("test", 50)):
        ds = DATASETS.get("cifar10")(str(tmp_path), split)
        assert ds.task == "classification" and len(ds) == count
        assert ds.classes.names == CIFAR10_NAMES and len(set(ds.classes.colors)) == 10
        images, labels = expected[split]
        for i in range(count):
            image, target, image_id = ds[i]
            assert image.shape == (32, 32, 3) and image.dtype == np.uint8
            np.testing.assert_array_equal(image, images[i])
            assert isinstance(target, int) and target == labels[i]
        assert len(set(ds.ids)) == count and ds.image_path(0) is None
    # the loader batches the int targets
    _, targets, index = next(iter(make_loader(ds, [0, 1, 2, 3], size=None, batch_size=4, train=False,
                                              with_targets=True)))
    assert targets.tolist() == labels[:4] and index.tolist() == [0, 1, 2, 3]
    # a caller writing into an image does not change the dataset
    ds.load_image(0)[:] = 0
    np.testing.assert_array_equal(ds.load_image(0), images[0])


def test_cifar100_planes_and_fine_labels(tmp_path):
    expected = make_cifar100(tmp_path)
    for split in ("train", "test"):
        ds = DATASETS.get("cifar100")(str(tmp_path), split)
        images, fine = expected[split]
        assert len(ds) == len(fine) and len(ds.classes) == 100 and ds.classes.names[:2] == ("fine0", "fine1")
        assert [ds.load_target(i) for i in range(len(ds))] == fine
        for i, image in enumerate(images):
            np.testing.assert_array_equal(ds.load_image(i), image)
            assert ds.load_image(i)[0, 0, 0] in (10 + i, 11 + i, 12 + i)  # R plane first
            assert ds.load_image(i)[0, 0, 2] >= 200


def test_cifar_missing_files_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(UserError) as exc:
        DATASETS.get("cifar10")(str(tmp_path), "train")
    message = _one_line(exc)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in message
    assert "download: true" in message and "cifar-10-python.tar.gz" in message
    with pytest.raises(UserError, match="no split"):
        DATASETS.get("cifar10")(str(tmp_path), "val")
    with pytest.raises(UserError, match="needs data.root"):
        DATASETS.get("cifar100")(None, "train")
    with pytest.raises(UserError, match="root not found"):
        DATASETS.get("cifar10")(str(tmp_path / "nowhere"), "train")


def test_cifar_offline_download_is_a_user_error(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def offline(root, train=True, download=False, **kwargs):
        calls.append((root, download))
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(UserError) as exc:
        DATASETS.get("cifar10")(str(tmp_path), "train", download=True)
    message = _one_line(exc)
    assert calls == [(str(tmp_path), True)]
    assert "offline" in message and "name resolution" in message
    assert "cifar-10-python.tar.gz" in message and str(tmp_path / "cifar-10-batches-py") in message


def test_cifar_download_writes_then_loads_and_is_skipped_when_present(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_download(root, train=True, download=False, **kwargs):
        calls.append(root)
        make_cifar100(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", fake_download)
    ds = DATASETS.get("cifar100")(str(tmp_path), "train", download=True)
    assert len(ds) == 6 and calls == [str(tmp_path)]
    DATASETS.get("cifar100")(str(tmp_path), "test", download=True)
    assert calls == [str(tmp_path)]  # files present: no second download


def test_cifar_corrupt_pickle_names_the_file(tmp_path):
    make_cifar100(tmp_path)
    bad = tmp_path / "cifar-100-python" / "train"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(UserError) as exc:
        DATASETS.get("cifar100")(str(tmp_path), "train")
    assert str(bad) in _one_line(exc)


# ---------------------------------------------------------------- Caltech-256
CALTECH = {"001.ak47": 23, "002.american-flag": 25, "003.backpack": 21, "257.clutter": 22}


def make_caltech(root: Path, counts=None) -> dict[str, list[str]]:
    files = {}
    for c, (folder, n) in enumerate(sorted((counts or CALTECH).items())):
        names = [f"{folder[:3]}_{k:04d}.jpg" for k in range(1, n + 1)]
        for k, name in enumerate(names):
            _write(root / "256_ObjectCategories" / folder / name, _rgb(100 * c + k, 6 + k % 3, 9))
        files[folder] = names
    (root / "256_ObjectCategories" / "003.backpack" / "RENAME2").write_text("not an image")
    (root / "256_ObjectCategories" / "001.ak47" / ".DS_Store").write_bytes(b"\0")
    return files


def _expected_caltech_split(files: dict[str, list[str]], k: int, seed: int) -> set[str]:
    rng = np.random.default_rng(seed=seed)
    test = set()
    for folder in sorted(files):
        names = sorted(files[folder])
        perm = rng.permutation(len(names))
        test |= {f"{folder}/{names[i]}" for i in perm[:k]}
    return test


def test_caltech256_seeded_split_skips_clutter_and_non_images(tmp_path):
    files = make_caltech(tmp_path)
    train = DATASETS.get("caltech256")(str(tmp_path), "train")
    test = DATASETS.get("caltech256")(str(tmp_path), "test")
    assert train.classes.names == test.classes.names == ("ak47", "american-flag", "backpack")
    assert len(test) == 60 and len(train) == 23 + 25 + 21 - 60
    without_clutter = {k: v for k, v in files.items() if k != "257.clutter"}
    assert set(test.ids) == _expected_caltech_split(without_clutter, 20, 0)
    everything = {f"{folder}/{n}" for folder, names in without_clutter.items() for n in names}
    assert set(train.ids) | set(test.ids) == everything and not set(train.ids) & set(test.ids)
    for ds in (train, test):
        for i in range(len(ds)):
            assert ds.classes.names[ds.load_target(i)] == ds.image_id(i).split("/")[0][4:]
    i = test.ids.index(sorted(test.ids)[5])
    _assert_close_jpeg(test.load_image(i), test.image_path(i))
    assert test.image_path(i) == tmp_path / "256_ObjectCategories" / test.ids[i]


def test_caltech256_leaves_out_both_caltech_background_classes(tmp_path):
    """Caltech-101's BACKGROUND_Google and Caltech-256's 257.clutter are both background images."""
    make_caltech(tmp_path, {**CALTECH, "BACKGROUND_Google": 21})
    build = DATASETS.get("caltech256")
    assert build(str(tmp_path), "test").classes.names == ("ak47", "american-flag", "backpack")
    kept = build(str(tmp_path), "test", include_clutter=True).classes.names
    assert set(kept) == {"ak47", "american-flag", "backpack", "clutter", "BACKGROUND_Google"}

def test_caltech256_options(tmp_path):
    files = make_caltech(tmp_path)
    build = DATASETS.get("caltech256")
    base = set(build(str(tmp_path), "test").ids)
    with_clutter = build(str(tmp_path), "test", include_clutter=True)
    assert with_clutter.classes.names[-1] == "clutter" and len(with_clutter) == 80
    assert set(with_clutter.ids) == _expected_caltech_split(files, 20, 0)
    assert base < set(with_clutter.ids)  # clutter is last: the other classes keep their split
    reseeded = build(str(tmp_path), "test", split_seed=1)
    assert set(reseeded.ids) == _expected_caltech_split({k: v for k, v in files.items() if k != "257.clutter"}, 20, 1)
    assert set(reseeded.ids) != base
    assert len(build(str(tmp_path), "test", test_per_class=3)) == 9
    with pytest.raises(UserError, match="003.backpack"):
        build(str(tmp_path), "train", test_per_class=21)
    with pytest.raises(UserError, match="test_per_class"):
        build(str(tmp_path), "train", test_per_class="20")
    with pytest.raises(UserError, match="256_ObjectCategories"):
        build(str(tmp_path / "missing"), "train")


# ---------------------------------------------------------------- ImageNet
WNIDS = ("n01440764", "n02012849", "n03126707")
SYNSETS = "n01440764 tench, Tinca tinca\nn02012849 crane\nn03126707 crane\n"


def make_imagenet(root: Path, train: int = 3, val: int = 2, mapping: bool = True) -> None:
    for c, wnid in enumerate(WNIDS):
        for k in range(train):
            _write(root / "train" / wnid / f"{wnid}_{k}.JPEG", _rgb(10 * c + k))
        for k in range(val):
            _write(root / "val" / wnid / f"ILSVRC2012_val_{c * val + k + 1:08d}.JPEG", _rgb(100 + 10 * c + k))
    if mapping:
        (root / "LOC_synset_mapping.txt").write_text(SYNSETS)


def test_imagenet_layout_names_and_labels(tmp_path):
    make_imagenet(tmp_path)
    train = DATASETS.get("imagenet")(str(tmp_path), "train")
    val = DATASETS.get("imagenet")(str(tmp_path), "val")
    assert train.task == "classification"
    assert train.classes.names == val.classes.names == ("tench", "crane (n02012849)", "crane (n03126707)")
    assert len(train) == 9 and len(val) == 6
    assert [train.load_target(i) for i in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert train.ids[3] == "n02012849/n02012849_0.JPEG"
    assert val.image_path(5) == tmp_path / "val" / "n03126707" / "ILSVRC2012_val_00000006.JPEG"
    _assert_close_jpeg(val.load_image(5), val.image_path(5))
    (tmp_path / "LOC_synset_mapping.txt").unlink()
    assert DATASETS.get("imagenet")(str(tmp_path), "val").classes.names == WNIDS


def test_imagenet_flat_val_and_other_bad_inputs(tmp_path):
    make_imagenet(tmp_path)
    # val as distributed: the images directly in val/
    for f in list((tmp_path / "val").rglob("*.JPEG")):
        f.rename(tmp_path / "val" / f.name)
    with pytest.raises(UserError) as exc:
        DATASETS.get("imagenet")(str(tmp_path), "val")
    message = _one_line(exc)
    assert str(tmp_path / "val") in message and "class folders" in message and "datasets/imagenet.md" in message
    with pytest.raises(UserError, match="root not found"):
        DATASETS.get("imagenet")(str(tmp_path / "nope"), "train")
    with pytest.raises(UserError, match="no split"):
        DATASETS.get("imagenet")(str(tmp_path), "test")
    (tmp_path / "val" / "n09999999").mkdir()
    _write(tmp_path / "val" / "n09999999" / "x.JPEG", _rgb(1))
    for f in (tmp_path / "val").glob("*.JPEG"):
        f.unlink()
    with pytest.raises(UserError) as exc:
        DATASETS.get("imagenet")(str(tmp_path), "val")
    assert str(tmp_path / "val" / "n09999999") in _one_line(exc)


class _ScandirSpy:
    def __init__(self, monkeypatch):
        self.paths: list[str] = []
        real = os.scandir

        def spy(path="."):
            self.paths.append(str(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", spy)


def test_index_is_written_reused_and_invalidated(tmp_path, monkeypatch):
    make_imagenet(tmp_path)
    monkeypatch.delenv("SEGAL_INDEX_DIR", raising=False)
    first = DATASETS.get("imagenet")(str(tmp_path), "train")
    assert (tmp_path / ".segal_index_train.json").is_file()

    spy = _ScandirSpy(monkeypatch)
    again = DATASETS.get("imagenet")(str(tmp_path), "train")
    assert again.ids == first.ids and spy.paths == [str(tmp_path / "train")]  # no class folder listed
    spy.paths.clear()
    DATASETS.get("imagenet")(str(tmp_path), "val")
    assert len(spy.paths) == 2 + 3  # val, train's class list, and val's three class folders, once
    spy.paths.clear()
    DATASETS.get("imagenet")(str(tmp_path), "val")
    assert sorted(spy.paths) == [str(tmp_path / "train"), str(tmp_path / "val")]

    # a new image changes its folder's mtime (pushed forward here for coarse-mtime filesystems)
    folder = tmp_path / "train" / WNIDS[1]
    _write(folder / "new.JPEG", _rgb(5))
    t = folder.stat().st_mtime + 5
    os.utime(folder, (t, t))
    spy.paths.clear()
    changed = DATASETS.get("imagenet")(str(tmp_path), "train")
    assert len(changed) == 10 and f"{WNIDS[1]}/new.JPEG" in changed.ids
    assert str(folder) in spy.paths


def test_index_goes_to_the_user_cache_when_root_is_read_only(tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_imagenet(root)
    monkeypatch.delenv("SEGAL_INDEX_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        first = DATASETS.get("imagenet")(str(root), "train")
        assert not (root / ".segal_index_train.json").exists()
        assert len(list((tmp_path / "cache" / "segal").glob("index-*-train.json"))) == 1
        spy = _ScandirSpy(monkeypatch)
        assert DATASETS.get("imagenet")(str(root), "train").ids == first.ids
        assert spy.paths == [str(root / "train")]
    finally:
        root.chmod(0o755)


# ---------------------------------------------------------------- class folders
def test_classfolder_on_real_cifar_jpgs(cifar_jpg_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGAL_INDEX_DIR", str(tmp_path / "index"))
    before = sorted(os.listdir(cifar_jpg_root))
    train = DATASETS.get("classfolder")(str(cifar_jpg_root), "train")
    test = DATASETS.get("classfolder")(str(cifar_jpg_root), "test")
    assert sorted(os.listdir(cifar_jpg_root)) == before  # nothing written into the data
    assert len(list((tmp_path / "index").iterdir())) == 2
    assert train.classes.names == test.classes.names == CIFAR10_NAMES
    assert len(train) == 10000 and len(test) == 2000
    assert np.bincount(train.labels).tolist() == [1000] * 10 and np.bincount(test.labels).tolist() == [200] * 10
    image, target, image_id = train[0]
    assert image.shape == (32, 32, 3) and target == 0 and image_id == "airplane/0000.jpg"
    _assert_close_jpeg(image, cifar_jpg_root / "train" / "airplane" / "0000.jpg")
    assert test.load_target(1999) == 9 and test.image_path(1999).parent.name == "truck"


def test_classfolder_suffixes_and_bad_inputs(tmp_path):
    for split, n in (("train", 2), ("test", 1)):
        for cls in ("cat", "dog"):
            for k in range(n):
                _write(tmp_path / split / cls / f"{k}.png", _rgb(k))
    _write(tmp_path / "train" / "cat" / "x.JPG", _rgb(9))
    _write(tmp_path / "train" / "dog" / "y.bmp", _rgb(8))
    (tmp_path / "train" / "dog" / "notes.txt").write_text("skip me")
    build = DATASETS.get("classfolder")
    train = build(str(tmp_path), "train")
    assert train.ids == ["cat/0.png", "cat/1.png", "cat/x.JPG", "dog/0.png", "dog/1.png", "dog/y.bmp"]
    np.testing.assert_array_equal(train.load_image(3), _pil(tmp_path / "train" / "dog" / "0.png"))
    np.testing.assert_array_equal(train.load_image(5), _rgb(8))
    assert len(build(str(tmp_path), "test")) == 2

    # corrupt image: named when loaded
    (tmp_path / "train" / "cat" / "1.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError) as exc:
        train.load_image(1)
    assert str(tmp_path / "train" / "cat" / "1.png") in _one_line(exc)
    # a test class that is not a train class
    _write(tmp_path / "test" / "emu" / "0.png", _rgb(0))
    with pytest.raises(UserError) as exc:
        build(str(tmp_path), "test")
    assert str(tmp_path / "test" / "emu") in _one_line(exc)
    with pytest.raises(UserError, match="root not found"):
        build(str(tmp_path / "missing"), "train")
    with pytest.raises(UserError, match="val/ not found"):
        build(str(tmp_path), "val")
    with pytest.raises(UserError, match="needs data.root"):
        build(None, "train")


def test_classfolder_background_folders_do_not_become_classes(tmp_path):
    for split in ("train", "test"):
        for folder in ("airplanes", "BACKGROUND_Google", "Faces", "257.clutter"):
            (tmp_path / split / folder).mkdir(parents=True)
            for k in range(2):
                cv2.imwrite(str(tmp_path / split / folder / f"image_{k:04d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    build = DATASETS.get("classfolder")
    assert build(str(tmp_path), "test").classes.names == ("Faces", "airplanes")
    assert len(build(str(tmp_path), "train")) == 4
    kept = build(str(tmp_path), "train", include_background=True)
    assert kept.classes.names == ("257.clutter", "BACKGROUND_Google", "Faces", "airplanes")
