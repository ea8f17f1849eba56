"""The region cache: contents, global ids, rebuilds when stale, UserErrors when damaged, SIGKILL-safe builds."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

import segal.crashpoints as crashpoints
import segal.distributed  # noqa: F401  (imported once here, not in every forked build: atomic writes use it)
from segal.data.base import FileSegmentationDataset
from segal.data.camvid import build as build_camvid
from segal.errors import UserError
from segal.regions.cache import RegionCache, region_stats
from segal.regions.maps import RegionSpec, compute_region_map
from tests.tiny import TinySeg

SLIC = RegionSpec(segments=12)
GRID = RegionSpec(method="grid", patch=8)


class Counting(TinySeg):
    """TinySeg counting image decodes, to tell an opened cache from a rebuilt one."""

    def __init__(self, n: int, salt: int = 0, size: int = 32):
        super().__init__(n, salt, size)
        self.loads = 0

    def load_image(self, i):
        self.loads += 1
        return super().load_image(i)


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_the_cache_holds_every_map_with_global_ids_areas_and_boxes(tmp_path):
    pool = Counting(7)
    cache = RegionCache.build(pool, SLIC, tmp_path / "regions", chunk=3)
    assert cache.num_images == 7 and cache.shape == (32, 32) and cache.maps.dtype == np.uint16
    start = 0
    for i in range(7):
        expected = compute_region_map(pool.load_image(i), SLIC)
        view = cache.region_map(i)
        np.testing.assert_array_equal(view, expected)
        assert isinstance(view, np.memmap) and np.shares_memory(view, cache.maps) and not view.flags.writeable
        count = int(expected.max()) + 1
        np.testing.assert_array_equal(cache.regions_of(i), np.arange(start, start + count))
        area, bbox = region_stats(expected, count)
        np.testing.assert_array_equal(cache.area[start:start + count], np.bincount(expected.ravel()))
        np.testing.assert_array_equal(cache.bbox[start:start + count], bbox)
        start += count
    assert cache.num_regions == start == int(cache.offsets[-1]) == len(cache.area)
    assert cache.spec == SLIC
    assert sorted(p.name for p in (tmp_path / "regions").iterdir()) == [
        "area.npy", "bbox.npy", "manifest.json", "maps.npy", "offsets.npy"]  # the build records are gone


def test_global_ids_map_back_to_their_image_and_local_id(tmp_path):
    cache = RegionCache.build(TinySeg(5, 0), GRID, tmp_path / "r", chunk=2)
    assert cache.num_regions == 5 * 16  # a 32×32 image in 8-pixel cells
    np.testing.assert_array_equal(cache.offsets, np.arange(0, 81, 16))
    np.testing.assert_array_equal(cache.image_of([0, 15, 16, 79, 40]), [0, 0, 1, 4, 2])
    np.testing.assert_array_equal(cache.local_ids([0, 15, 16, 79, 40]), [0, 15, 0, 15, 8])
    assert cache.image_of(17) == 1
    np.testing.assert_array_equal(cache.area, np.full(80, 64))
    np.testing.assert_array_equal(cache.bbox[16 + 5], [8, 8, 16, 16])  # cell (1, 1) of image 1
    for bad in (80, -1, [3, 99]):
        with pytest.raises(IndexError, match="out of range"):
            cache.image_of(bad)


def test_a_current_cache_is_opened_not_recomputed_and_a_stale_one_is_rebuilt(tmp_path):
    directory = tmp_path / "r"
    RegionCache.build(Counting(6), SLIC, directory)
    again = Counting(6)
    cache = RegionCache.build(again, SLIC, directory)
    assert again.loads == 1  # the key's first image only
    assert cache.matches(again, SLIC) and not cache.matches(again, GRID)

    other_spec = Counting(6)
    cache = RegionCache.build(other_spec, GRID, directory)
    assert other_spec.loads == 1 + 6 and cache.spec == GRID and cache.num_regions == 6 * 16

    other_data = Counting(6, salt=3)  # same size and count, other images and ids
    cache = RegionCache.build(other_data, GRID, directory)
    assert other_data.loads == 1 + 6
    more = Counting(8, salt=3)
    assert RegionCache.build(more, GRID, directory).num_images == 8 and more.loads == 1 + 8


class Sized(TinySeg):
    def __init__(self, sizes):
        super().__init__(len(sizes), 0)
        self.sizes = sizes

    def load_image(self, i):
        self.size = self.sizes[i]
        return super().load_image(i)


def test_images_of_several_sizes_need_a_stated_resolution(tmp_path):
    with pytest.raises(UserError, match=r"image tiny_0_0002 is 24×24, the pool's first 32×32.*regions.resolution"):
        RegionCache.build(Sized([32, 32, 24]), SLIC, tmp_path / "r")
    cache = RegionCache.build(Sized([32, 32, 24]), RegionSpec(segments=12, resolution=(16, 20)), tmp_path / "r")
    assert cache.shape == (16, 20) and cache.num_images == 3


def test_maps_with_65536_regions_or_more_are_stored_as_int32(tmp_path):
    one_pixel = RegionSpec(method="grid", patch=1, resolution=(256, 256))  # 65,536 regions per image
    cache = RegionCache.build(TinySeg(2, 0), one_pixel, tmp_path / "wide")
    assert cache.maps.dtype == np.int32 and cache.num_regions == 2 * 65536
    np.testing.assert_array_equal(cache.region_map(1), np.arange(65536).reshape(256, 256))
    narrow = RegionSpec(method="grid", patch=1, resolution=(255, 256))
    assert RegionCache.build(TinySeg(1, 0), narrow, tmp_path / "narrow").maps.dtype == np.uint16


# ---------------------------------------------------------------------- damaged caches


@pytest.fixture
def built(tmp_path) -> Path:
    directory = tmp_path / "r"
    RegionCache.build(TinySeg(4, 0), GRID, directory, chunk=2)  # 16 regions of 64 pixels per image
    return directory


def _save(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    path.write_bytes(buffer.getvalue())


def test_a_truncated_map_file_is_a_user_error_naming_it(built):
    data = (built / "maps.npy").read_bytes()
    (built / "maps.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"maps\.npy: region cache file unreadable or truncated.*fix: delete"):
        RegionCache.open(built)
    with pytest.raises(UserError, match=r"maps\.npy"):
        RegionCache.build(TinySeg(4, 0), GRID, built)  # build opens a current cache: the same error


def test_maps_of_another_shape_are_a_user_error(built):
    _save(built / "maps.npy", np.zeros((3, 32, 32), np.uint16))
    with pytest.raises(UserError, match=r"maps\.npy: maps\.npy holds uint16 \(3, 32, 32\), the manifest says uint16 \(4, 32, 32\)"):
        RegionCache.open(built)


def test_edited_offsets_are_a_user_error_naming_the_file(built):
    offsets = np.load(built / "offsets.npy")
    offsets[1] -= 1
    _save(built / "offsets.npy", offsets)
    with pytest.raises(UserError, match=r"offsets\.npy: offsets\.npy changed since the region cache was built"):
        RegionCache.open(built)
    # edited together with the manifest's digest: the offsets no longer match the areas
    manifest = json.loads((built / "manifest.json").read_text())
    manifest["sha256"]["offsets.npy"] = hashlib.sha256((built / "offsets.npy").read_bytes()).hexdigest()
    (built / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"offsets\.npy: offsets\.npy does not match area\.npy: image 0's regions "
                                        r"cover 960 pixels, not 1024"):
        RegionCache.open(built)


def test_a_corrupt_or_missing_manifest_is_a_user_error(built):
    (built / "manifest.json").write_text('{"count": 4,')
    with pytest.raises(UserError, match=r"manifest\.json: corrupt or truncated JSON"):
        RegionCache.open(built)
    (built / "manifest.json").write_text('{"count": "four"}')
    with pytest.raises(UserError, match=r"manifest\.json: region cache manifest is malformed"):
        RegionCache.open(built)
    (built / "manifest.json").unlink()
    with pytest.raises(UserError, match="no complete region cache here"):
        RegionCache.open(built)


# ---------------------------------------------------------------------- SIGKILL during a build


def _build_in_child(directory: Path, pool, spec: RegionSpec, crash: str | None, chunk: int = 3) -> str:
    """Build in a forked child with ``crash`` armed: "killed", "ok" or "failed"."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.environ.pop(crashpoints.ENV, None)
            if crash:
                os.environ[crashpoints.ENV] = crash
            crashpoints._hits.clear()
            RegionCache.build(pool, spec, directory, chunk=chunk)
            code = 0
        except BaseException:  # noqa: BLE001 - reported through the exit code
            traceback.print_exc()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    return "ok" if os.WEXITSTATUS(status) == 0 else "failed"


def test_a_build_killed_again_and_again_resumes_to_the_same_bytes(tmp_path):
    pool = TinySeg(10, 0)  # 4 chunks of 3 images
    reference = tmp_path / "reference"
    RegionCache.build(pool, SLIC, reference, chunk=3)
    expected = files_of(reference)

    directory = tmp_path / "tortured"
    assert _build_in_child(directory, pool, GRID, "regions.chunk:2") == "killed"  # another spec's unfinished build
    points = ["write.before_rename:1", "regions.chunk:1", "write.after_rename:1"]
    outcomes, kills = [], set()
    for attempt in range(60):
        point = points[attempt % len(points)]
        outcomes.append(_build_in_child(directory, pool, SLIC, point))
        assert outcomes[-1] != "failed"
        if outcomes[-1] == "ok":
            break
        kills.add(point)
        try:  # after every kill: either not complete yet, or complete and right
            RegionCache.open(directory)
        except UserError as exc:
            assert "no complete region cache" in str(exc)
        else:
            now = files_of(directory)
            assert {name: now.get(name) for name in expected} == expected
    # 9 atomic writes (key, 4 chunk records, 3 arrays, manifest), each killed before or after its rename,
    # or a chunk killed at its crash point: the run ends when a point is no longer reached
    assert outcomes[-1] == "ok" and outcomes.count("killed") >= 7 and kills == set(points), outcomes
    assert files_of(directory) == expected


def test_a_build_resumed_with_another_chunk_size_starts_again_to_the_same_bytes(tmp_path):
    pool = TinySeg(8, 0)
    RegionCache.build(pool, SLIC, tmp_path / "reference", chunk=4)
    directory = tmp_path / "r"
    # chunk 2 of size 3 (images 6, 7) and chunk 2 of size 2 (images 4, 5) hold as many images: not reused
    assert _build_in_child(directory, pool, SLIC, "regions.chunk:3", chunk=3) == "killed"
    RegionCache.build(pool, SLIC, directory, chunk=2)
    assert files_of(directory) == files_of(tmp_path / "reference")


def test_a_kill_after_the_manifest_leaves_a_complete_cache(tmp_path):
    pool = TinySeg(4, 0)
    directory = tmp_path / "r"
    # writes: key.json, 2 chunk records, offsets, area, bbox, manifest: killed right after the 7th
    assert _build_in_child(directory, pool, SLIC, "write.after_rename:7") == "killed"
    assert (directory / "partial").is_dir()
    RegionCache.open(directory)
    RegionCache.build(pool, SLIC, directory, chunk=3)
    assert not (directory / "partial").exists()


# ---------------------------------------------------------------------- CamVid


@pytest.mark.data
def test_camvid_maps_at_full_size_with_400_superpixels(camvid_root, tmp_path):
    full = build_camvid(str(camvid_root), "train")
    pool = FileSegmentationDataset(full.image_paths[:4], full.mask_paths[:4], full.ids[:4], full.classes, full.lut,
                                   name="camvid")
    start = time.perf_counter()
    cache = RegionCache.build(pool, RegionSpec(), tmp_path / "camvid")
    seconds = time.perf_counter() - start
    assert cache.shape == (360, 480) and cache.maps.dtype == np.uint16
    assert all(200 <= c <= 500 for c in cache.counts), cache.counts  # SLIC gives about the target count
    assert (cache.area.astype(np.int64).sum()) == 4 * 360 * 480
    print(f"camvid: {seconds / 4:.3f} s per image, {cache.counts.tolist()} regions")
