"""Bad data files, one test each, through the CLI where a user meets them (see test_bad_input.py):
exit code 2 and one line naming the file and the fix, nothing written or lost, no traceback.

Files of unusual but valid kinds (palette masks, RGBA / 16-bit / CMYK images, odd names, symlinks)
must load; the dataset-level checks of their values live in test_datasets.py.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from segal.cli import main
from tests.test_bad_input import (  # noqa: F401  (setup, finished, finished_copy: the shared run fixtures)
    fails,
    fails_unchanged,
    finished,
    finished_copy,
    make_folder_dataset,
    recipe_dict,
    setup,
    trained_cycles,
)


@pytest.fixture
def fresh(setup):  # noqa: F811  (pytest injects the imported fixture)
    """A folder dataset and a recipe whose run does not exist yet."""
    return setup


@pytest.fixture
def done(finished_copy):  # noqa: F811  (pytest injects the imported fixture)
    """A copy of a finished run (cycles 0 and 1) and its data, free to damage."""
    data, _, run_dir = finished_copy
    return data, run_dir


def _acquire_fails_writing_nothing(capsys, recipe: Path, run_dir: Path, *needles: str) -> str:
    err = fails(capsys, ["acquire", str(recipe), "--quiet"], *needles)
    assert not run_dir.exists(), "a refused run left a run directory"
    return err


def save_palette_png(path: Path, ids: np.ndarray, palette: list[int]) -> Path:
    """A "P" (palette) PNG storing ``ids`` as its indices, as BDD100K and PASCAL VOC ship masks."""
    image = Image.frombytes("P", (ids.shape[1], ids.shape[0]), np.ascontiguousarray(ids, np.uint8).tobytes())
    image.putpalette(palette)
    image.save(path)
    return path


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG header announcing ``width``×``height`` with no pixel data: tiny on disk, and a
    reader that allocated before checking the size would need width·height·3 bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------------------------------- masks
def test_colour_map_given_as_masks_is_refused_before_the_run_starts(fresh, capsys):
    data, recipe, run_dir = fresh
    palette = np.array([(0, 0, 0), (128, 64, 128), (220, 20, 60)], np.uint8)
    for mask in (data / "masks" / "train").iterdir():
        ids = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(mask), palette[ids][..., ::-1])  # what Cityscapes' *_color.png holds
    first = sorted((data / "masks" / "train").iterdir())[0]
    err = _acquire_fails_writing_nothing(capsys, recipe, run_dir, str(first), "colour-coded label map", "labelIds")
    assert "3 channels" not in err


def test_rgba_colour_mask_met_during_evaluation(done, capsys):
    data, run_dir = done
    victim = data / "masks" / "test" / "test003.png"
    ids = cv2.imread(str(victim), cv2.IMREAD_UNCHANGED)
    rgba = np.zeros((*ids.shape, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[ids == 1, 0] = 255
    rgba[ids == 2, 1] = 255
    Image.fromarray(rgba).save(victim)
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(victim), "colour-coded label map")


def test_palette_masks_train_through_the_cli(fresh, capsys):
    """BDD100K / VOC masks are "P" PNGs; OpenCV reads them as 3-channel colour, segal as their indices."""
    data, recipe, run_dir = fresh
    grey = [v for i in range(256) for v in (i, i, i)]
    for mask in (data / "masks").rglob("*.png"):
        save_palette_png(mask, cv2.imread(str(mask), cv2.IMREAD_UNCHANGED), grey)
    assert Image.open(mask).mode == "P" and cv2.imread(str(mask), cv2.IMREAD_UNCHANGED).ndim == 3
    assert main(["acquire", str(recipe), "--quiet"]) == 0, capsys.readouterr().err
    assert trained_cycles(run_dir) == [0, 1]


def test_all_void_labeled_set_is_refused_before_training_then_resumes(fresh, capsys):
    data, recipe, run_dir = fresh
    masks = sorted((data / "masks" / "train").iterdir())
    originals = {m: m.read_bytes() for m in masks}
    for m in masks:
        cv2.imwrite(str(m), np.full((32, 32), 255, np.uint8))
    fails(capsys, ["acquire", str(recipe), "--quiet"], "void", "nothing to train on", str(data / "masks" / "train"))
    assert not (run_dir / "cycles" / "0" / "train.json").exists(), "it trained on void masks"
    for m, content in originals.items():
        m.write_bytes(content)
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    assert trained_cycles(run_dir) == [0, 1]
    train = yaml.safe_load((run_dir / "cycles" / "0" / "train.json").read_text())
    assert np.isfinite(train["final_loss"])


def test_all_void_test_split_is_refused_before_training(fresh, capsys):
    data, recipe, run_dir = fresh
    for m in (data / "masks" / "test").iterdir():
        cv2.imwrite(str(m), np.full((32, 32), 255, np.uint8))
    fails(capsys, ["acquire", str(recipe), "--quiet"], "'test' split", "NaN", str(data / "masks" / "test"))
    assert not (run_dir / "state.json").exists() and not (run_dir / "cycles").exists()


def test_mask_names_that_do_not_pair_with_the_images(fresh, capsys):
    data, recipe, run_dir = fresh
    for mask in (data / "masks" / "train").iterdir():
        mask.rename(mask.with_name(mask.stem + "_mask.png"))
    _acquire_fails_writing_nothing(capsys, recipe, run_dir, "have no mask", "train000.png",
                                   "pair with no image, e.g. train000_mask.png", "give each mask the name shown as expected")


# ---------------------------------------------------------------------------------------- image files
def test_zero_byte_image(done, capsys):
    data, run_dir = done
    victim = data / "images" / "test" / "test002.png"
    victim.write_bytes(b"")
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(victim), "empty (0 bytes)")


def test_zero_byte_mask(done, capsys):
    data, run_dir = done
    victim = data / "masks" / "test" / "test004.png"
    victim.write_bytes(b"")
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(victim), "mask file is empty")


def test_truncated_jpeg(done, capsys):
    data, run_dir = done
    victim = data / "images" / "test" / "test001.png"
    rgb = cv2.imread(str(victim))
    jpeg = cv2.imencode(".jpg", cv2.resize(rgb, (32, 32)))[1].tobytes()
    victim.write_bytes(jpeg[: len(jpeg) - 40])  # the suffix lies; the bytes decide
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(victim), "corrupt or truncated")


def test_unreadable_image(done, capsys, monkeypatch):
    data, run_dir = done
    victim = data / "images" / "test" / "test005.png"
    if os.geteuid() != 0:
        victim.chmod(0)
    else:  # root reads a mode-000 file, so the kernel's refusal is simulated at the open() call
        real_open = builtins.open

        def refusing_open(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file) == str(victim):
                raise PermissionError(13, "Permission denied", str(victim))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refusing_open)
    try:
        fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(victim), "permission denied", "chmod")
    finally:
        victim.chmod(0o644)


def test_dangling_symlink_image(done, capsys):
    data, run_dir = done
    victim = data / "images" / "test" / "test000.png"
    victim.unlink()
    victim.symlink_to(data / "gone.png")
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(victim), "symlink", "gone.png")


@pytest.mark.parametrize(("width", "height", "needle"), [(30000, 30000, "900 megapixels"),
                                                         (12000, 9000, "12000×9000")])
def test_huge_image_is_refused_from_its_header(done, capsys, width, height, needle):
    data, run_dir = done
    victim = _png_header_only(data / "images" / "test" / "test003.png", width, height)
    # the file holds no pixels: only a size check made from the header can name the size
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(victim), needle, "downscale or tile")


# ---------------------------------------------------------------------------------------- data roots
@pytest.mark.parametrize("name", ["data.zip", "dataset"])
def test_data_root_that_is_a_file(fresh, capsys, tmp_path, name):
    _, recipe, run_dir = fresh
    root = tmp_path / name
    root.write_bytes(b"PK\x03\x04 not a folder")
    needles = ("is a file, not a folder", str(root)) + (("unpack",) if name.endswith(".zip") else ())
    fails(capsys, ["acquire", str(recipe), "--quiet", "--data-root", str(root)], *needles)
    assert not run_dir.exists()


def test_select_on_a_file_instead_of_a_folder(tmp_path, capsys):
    target = tmp_path / "photo.jpg"
    target.write_bytes(b"\xff\xd8")
    fails(capsys, ["select", str(target), "--budget", "1", "--strategy", "random", "--out", str(tmp_path / "o.txt")],
          str(target), "is a file, not a folder")
    assert not (tmp_path / "o.txt").exists()


# ---------------------------------------------------------------------------------------- valid but unusual
def _rewrite_images_in_every_mode(image_dir: Path) -> None:
    """Re-save the images as RGBA PNG, 16-bit PNG, grey JPEG, CMYK JPEG and palette PNG, in turn."""
    for k, path in enumerate(sorted(image_dir.iterdir())):
        rgb = cv2.imread(str(path))[..., ::-1]
        kind = k % 5
        if kind == 0:
            Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(path)
        elif kind == 1:
            cv2.imwrite(str(path), rgb[..., ::-1].astype(np.uint16) * 257)
        elif kind == 2:
            Image.fromarray(rgb).convert("L").save(path, format="JPEG")
        elif kind == 3:
            Image.fromarray(rgb).convert("CMYK").save(path, format="JPEG")
        else:
            Image.fromarray(rgb).convert("P").save(path)


def test_images_of_every_mode_train_through_the_cli(fresh, capsys):
    data, recipe, run_dir = fresh
    for split in ("train", "test"):
        _rewrite_images_in_every_mode(data / "images" / split)
    assert main(["acquire", str(recipe), "--quiet"]) == 0, capsys.readouterr().err
    assert trained_cycles(run_dir) == [0, 1]


def test_file_names_with_spaces_and_non_ascii(fresh, capsys):
    data, recipe, run_dir = fresh
    for split in ("train", "test"):
        for k, image in enumerate(sorted((data / "images" / split).iterdir())):
            new = f"Straße {k} – ünïcødé ✓" if k % 2 else f"scene {k}"
            image.rename(image.with_name(new + ".png"))
            (data / "masks" / split / image.name).rename(data / "masks" / split / (new + ".png"))
    assert main(["acquire", str(recipe), "--quiet"]) == 0, capsys.readouterr().err
    assert main(["evaluate", str(run_dir)]) == 0
    queries = json.loads((run_dir / "cycles" / "0" / "queries.json").read_text())
    assert len(queries["indices"]) == 4


def test_symlinks_inside_the_root_are_followed_silently(fresh, capsys, caplog):
    data, recipe, run_dir = fresh
    store = data / "store"
    store.mkdir()
    for image in sorted((data / "images" / "train").iterdir())[:6]:
        image.rename(store / image.name)
        image.symlink_to(Path("..") / ".." / "store" / image.name)
    with caplog.at_level(logging.WARNING):
        assert main(["acquire", str(recipe), "--quiet"]) == 0, capsys.readouterr().err
    assert "symlinks" not in caplog.text


def test_symlinks_that_escape_the_root_are_followed_with_one_warning(fresh, capsys, caplog, tmp_path):
    data, recipe, run_dir = fresh
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    moved = sorted((data / "images" / "train").iterdir())[:5]
    for image in moved:
        image.rename(outside / image.name)
        image.symlink_to(outside / image.name)
    with caplog.at_level(logging.WARNING):
        assert main(["acquire", str(recipe), "--quiet"]) == 0, capsys.readouterr().err
    warned = [r.getMessage() for r in caplog.records if "symlinks that lead outside" in r.getMessage()]
    assert warned and all(m.startswith(f"5 files under {data}") for m in warned), caplog.text
    assert str(moved[0]) in warned[0] and str(outside) in warned[0]



def test_annotators_palette_pngs_import_as_their_indices(tmp_path):
    """Annotation tools save VOC-style palette masks too; `segal import` must read their indices."""
    import tests.tiny  # noqa: F401  (registers tiny-seg)
    from segal.data.folder import _palette
    from segal.pool import PoolState
    from tests.tiny import TinySeg, tiny_recipe

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tmp_path, oracle="human", cycles=1)))
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    run_dir, out = tmp_path / "run", tmp_path / "export"
    pending = PoolState.load(run_dir / "state.json").pending
    assert main(["export", str(run_dir), "--format", "png", "--out", str(out)]) == 0
    pool, voc = TinySeg(40, salt=0), [v for i in range(256) for v in _palette(i)]
    for index in pending:
        save_palette_png(out / "masks" / f"{pool.image_id(index)}.png", pool.load_target(index), voc)
    assert main(["import", str(run_dir), str(out / "masks")]) == 0
    for index in pending:
        stored = cv2.imread(str(run_dir / "labels" / f"{pool.image_id(index)}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(stored, pool.load_target(index))
