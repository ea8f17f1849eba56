"""Region maps: the spec's validation and fingerprint, SLIC and grid maps, nearest-neighbour upsampling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segal.errors import UserError
from segal.regions.maps import RegionSpec, compute_region_map, grid_map, upsample_map


def quadrants(h: int = 48, w: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image of four flat colour quadrants with mild noise, and which quadrant each pixel is in."""
    which = (np.arange(h)[:, None] >= h // 2) * 2 + (np.arange(w)[None, :] >= w // 2)
    colours = np.array([(230, 30, 30), (30, 230, 30), (30, 30, 230), (230, 230, 30)], np.float64)
    noise = np.random.default_rng(seed).normal(0, 4, (h, w, 3))
    return (colours[which] + noise).clip(0, 255).astype(np.uint8), which


def test_the_default_spec_and_its_fingerprint_are_stable():
    spec = RegionSpec()
    assert (spec.method, spec.segments, spec.compactness, spec.patch, spec.resolution) == ("slic", 400, 10.0, 32, None)
    # a literal: a change to the fields or to maps.VERSION must be deliberate (it rebuilds every cache)
    assert spec.fingerprint() == RegionSpec().fingerprint() == "8b0b22fbd470f6c9"
    others = {RegionSpec(segments=401), RegionSpec(compactness=20), RegionSpec(method="grid"), RegionSpec(patch=16),
              RegionSpec(resolution=(360, 480))}
    assert len({s.fingerprint() for s in others} | {spec.fingerprint()}) == 6


def test_a_spec_round_trips_through_a_recipe_dict():
    spec = RegionSpec.from_dict({"method": "grid", "patch": 16, "resolution": [90, 120]})
    assert spec.resolution == (90, 120) and spec.patch == 16
    assert RegionSpec.from_dict(spec.to_dict()) == spec
    assert RegionSpec.from_dict(spec.to_dict()).fingerprint() == spec.fingerprint()


@pytest.mark.parametrize("fields, words", [
    ({"method": "seeds"}, "unknown region method"),
    ({"segments": 0}, "regions.segments"),
    ({"segments": 2.5}, "regions.segments"),
    ({"patch": -3}, "regions.patch"),
    ({"compactness": 0}, "regions.compactness"),
    ({"compactness": float("nan")}, "regions.compactness"),
    ({"resolution": (0, 10)}, "regions.resolution"),
    ({"resolution": [360]}, "regions.resolution"),
    ({"resolution": "360x480"}, "regions.resolution"),
])
def test_bad_settings_are_user_errors_with_a_fix(fields, words):
    with pytest.raises(UserError, match=words) as info:
        RegionSpec(**fields)
    assert "fix:" in str(info.value)


def test_unknown_settings_in_a_recipe_dict_are_refused():
    with pytest.raises(UserError, match="unknown region settings"):
        RegionSpec.from_dict({"segmets": 100})


def test_a_grid_map_is_square_cells_numbered_row_by_row():
    expected = np.array([[0, 0, 0, 1, 1, 1, 2],
                         [0, 0, 0, 1, 1, 1, 2],
                         [0, 0, 0, 1, 1, 1, 2],
                         [3, 3, 3, 4, 4, 4, 5],
                         [3, 3, 3, 4, 4, 4, 5]])
    np.testing.assert_array_equal(grid_map((5, 7), 3), expected)
    image = np.zeros((5, 7, 3), np.uint8)
    region_map = compute_region_map(image, RegionSpec(method="grid", patch=3))
    assert region_map.dtype == np.int32
    np.testing.assert_array_equal(region_map, expected)
    at = compute_region_map(image, RegionSpec(method="grid", patch=2, resolution=(4, 6)))
    np.testing.assert_array_equal(at, np.repeat(np.repeat(np.arange(6).reshape(2, 3), 2, 0), 2, 1))


def test_slic_maps_are_contiguous_connected_deterministic_and_follow_colour_edges():
    image, which = quadrants()
    spec = RegionSpec(segments=16, compactness=10)
    region_map = compute_region_map(image, spec)
    assert region_map.dtype == np.int32 and region_map.shape == (48, 64)
    count = int(region_map.max()) + 1
    np.testing.assert_array_equal(np.unique(region_map), np.arange(count))
    assert 8 <= count <= 32
    for r in range(count):  # one 4-connected piece per region
        assert ndimage.label(region_map == r)[1] == 1, f"region {r} is in pieces"
        assert len(np.unique(which[region_map == r])) == 1, f"region {r} straddles a colour edge"
    np.testing.assert_array_equal(compute_region_map(image.copy(), spec), region_map)


def test_slic_runs_at_the_stated_resolution():
    image, _ = quadrants(96, 128)
    region_map = compute_region_map(image, RegionSpec(segments=12, resolution=(48, 64)))
    assert region_map.shape == (48, 64)
    np.testing.assert_array_equal(np.unique(region_map), np.arange(int(region_map.max()) + 1))
    np.testing.assert_array_equal(region_map, compute_region_map(image, RegionSpec(segments=12, resolution=(48, 64))))


def test_more_segments_give_more_regions():
    image, _ = quadrants(64, 64)
    few = compute_region_map(image, RegionSpec(segments=8)).max()
    many = compute_region_map(image, RegionSpec(segments=64)).max()
    assert many > 2 * few


@pytest.mark.parametrize("image", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                                   np.zeros((8, 8, 4), np.uint8)])
def test_only_rgb_uint8_images_are_accepted(image):
    with pytest.raises(ValueError, match="RGB uint8"):
        compute_region_map(image, RegionSpec())


def test_upsampling_repeats_each_region_id_nearest_neighbour():
    small = np.array([[0, 1], [2, 3]], np.uint16)
    big = upsample_map(small, (4, 6))
    assert big.dtype == np.uint16
    np.testing.assert_array_equal(big, np.repeat(np.repeat(small, 2, 0), 3, 1))
    assert upsample_map(small, (2, 2)) is small
    wide = np.array([[0, 70000]], np.int32)
    np.testing.assert_array_equal(upsample_map(wide, (1, 4)), [[0, 0, 70000, 70000]])


def test_upsampling_keeps_every_region_of_a_slic_map():
    image, _ = quadrants()
    region_map = compute_region_map(image, RegionSpec(segments=16))
    big = upsample_map(region_map, (97, 131))  # not a multiple of the map's size
    assert big.shape == (97, 131)
    np.testing.assert_array_equal(np.unique(big), np.unique(region_map))
