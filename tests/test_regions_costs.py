"""Annotation costs of regions (clicks, pixels) and the simulated oracles (precise, dominant), on hand-drawn masks."""

from __future__ import annotations

import numpy as np
import pytest

from segal.regions.costs import clicks_dominant, clicks_precise, pixels, polygon_clicks
from segal.regions.labels import dominant_labels, dominant_noise, partial_mask
from segal.regions.maps import grid_map

V = 255  # void


def two_regions() -> np.ndarray:
    """A 10×20 map: region 0 is the left half, region 1 the right half (rectangles of 10×10)."""
    region_map = np.zeros((10, 20), np.int32)
    region_map[:, 10:] = 1
    return region_map


# ---------------------------------------------------------------------- clicks


def test_dominant_labels_cost_one_click_per_region():
    assert clicks_dominant(0) == 0
    assert clicks_dominant(17) == 17


def test_a_rectangle_of_one_class_costs_its_four_corners():
    gt = np.full((10, 20), 3, np.uint8)
    np.testing.assert_array_equal(clicks_precise(two_regions(), gt, [0, 1], V), [4, 4])


def test_a_region_split_by_a_straight_class_edge_costs_two_rectangles():
    gt = np.zeros((10, 20), np.uint8)
    gt[:, 5:10] = 1  # region 0: two 10×5 rectangles; region 1: one class
    gt[4:, 10:] = 2  # region 1: split top / bottom
    np.testing.assert_array_equal(clicks_precise(two_regions(), gt, [0, 1], V), [4 + 4, 4 + 4])
    np.testing.assert_array_equal(clicks_precise(two_regions(), gt, [1], V), [8])  # ids in their order
    np.testing.assert_array_equal(clicks_precise(two_regions(), gt, [], V), np.zeros(0))


def test_void_is_never_drawn():
    gt = np.full((10, 20), V, np.uint8)
    gt[:, :4] = 1  # region 0: a 10×4 rectangle of class 1, the rest void; region 1: all void
    np.testing.assert_array_equal(clicks_precise(two_regions(), gt, [0, 1], V), [4, 0])


def test_each_piece_of_a_class_is_its_own_polygon():
    gt = np.zeros((10, 20), np.uint8)
    gt[1:4, 1:4] = 1
    gt[6:9, 5:8] = 1  # two separate rectangles of class 1 inside region 0, on a class-0 background
    # the background's outer outline is the region's rectangle (holes are not drawn): 4 + 4 + 4
    np.testing.assert_array_equal(clicks_precise(two_regions(), gt, [0], V), [12])


def test_a_piece_inside_a_hole_of_another_class_piece_is_drawn_too():
    """An 11×11 ring of class 1 around a 7×7 block of class 2 that holds a dot of class 1: class 1 is two
    pieces, the ring (4) and the dot (3), class 2 one rectangle (4) with a hole: 4 + 3 + 4 = 11, and the
    enclosing region's outline is the ring's.  Tracing only outermost contours lost the dot."""
    gt = np.ones((11, 11), np.uint8)
    gt[2:9, 2:9] = 2
    gt[5, 5] = 1
    assert polygon_clicks(gt == 1) == 4 + 3
    assert clicks_precise(np.zeros((11, 11), np.int32), gt, [0], V).tolist() == [4 + 3 + 4]


def test_shapes_cost_their_simplified_vertices_and_at_least_a_triangle():
    L = np.zeros((10, 10), bool)
    L[:, :3] = True
    L[7:, :] = True
    assert polygon_clicks(L) == 6
    dot = np.zeros((5, 5), bool)
    dot[2, 2] = True
    assert polygon_clicks(dot) == 3
    line = np.zeros((5, 5), bool)
    line[1, 1:4] = True
    assert polygon_clicks(line) == 3
    strip = np.zeros((8, 8), bool)
    strip[2:4, 1:7] = True  # 2 pixels across: its outline through pixel centres is within ε of a line
    assert polygon_clicks(strip) == 3
    strip[4, 1:7] = True  # 3 pixels across: a rectangle
    assert polygon_clicks(strip) == 4
    diagonal = np.eye(6, dtype=bool)  # 8-connected: one piece
    assert polygon_clicks(diagonal) == 3
    staircase = np.tril(np.ones((12, 12), bool))  # a right triangle drawn in pixel steps: ε = 1 px smooths them
    assert polygon_clicks(staircase) == 3


def test_an_irregular_region_pays_for_its_own_outline():
    region_map = np.ones((12, 12), np.int32)
    region_map[2:10, 2:6] = 0
    region_map[2:6, 6:10] = 0  # region 0: an L of two rectangles inside region 1 (a frame around it)
    gt = np.zeros((12, 12), np.uint8)
    assert clicks_precise(region_map, gt, [0], V).tolist() == [6]
    assert clicks_precise(region_map, gt, [1], V).tolist() == [4]  # outer outline only: the hole is region 0


def test_regions_without_pixels_cost_nothing_and_shapes_must_agree():
    gt = np.zeros((10, 20), np.uint8)
    np.testing.assert_array_equal(clicks_precise(two_regions(), gt, [5], V), [0])
    with pytest.raises(ValueError, match="differ in shape"):
        clicks_precise(two_regions(), gt[:, :10], [0], V)


def test_pixels_are_the_regions_areas():
    area = np.array([64, 10, 5, 1], np.int32)
    assert pixels(area, [0, 2]) == 69
    assert pixels(area, np.array([], np.int64)) == 0


def test_grid_clicks_on_a_pool_like_mask_are_the_sum_of_rectangles():
    region_map = grid_map((12, 18), 6)  # 2×3 cells
    gt = np.zeros((12, 18), np.uint8)
    gt[:, 9:] = 1  # a vertical edge through the middle of cells 1 and 4
    np.testing.assert_array_equal(clicks_precise(region_map, gt, np.arange(6), V), [4, 8, 4, 4, 8, 4])


# ---------------------------------------------------------------------- oracles


def small_pool() -> tuple[np.ndarray, np.ndarray]:
    region_map = np.array([[0, 0, 1, 1],
                           [0, 0, 1, 1],
                           [2, 2, 3, 3]], np.uint16)
    gt = np.array([[1, 1, 2, 3],
                   [2, 1, 3, V],
                   [V, V, 4, 4]], np.uint8)
    return region_map, gt


def test_dominant_labels_are_the_majority_of_non_void_pixels():
    region_map, gt = small_pool()
    labels = dominant_labels(region_map, gt, [0, 1, 2, 3], V)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, [1, 3, V, 4])  # region 2 is all void
    np.testing.assert_array_equal(dominant_labels(region_map, gt, [3, 0], V), [4, 1])


def test_ties_go_to_the_lowest_class_id():
    region_map = np.zeros((2, 3), np.int32)
    gt = np.array([[5, 2, 5], [2, V, V]], np.uint8)  # two 5s, two 2s
    np.testing.assert_array_equal(dominant_labels(region_map, gt, [0], V), [2])


def test_precise_masks_copy_the_truth_inside_the_queried_regions_only():
    region_map, gt = small_pool()
    np.testing.assert_array_equal(partial_mask(region_map, gt, [0, 2], "precise", V),
                                  [[1, 1, V, V], [2, 1, V, V], [V, V, V, V]])


def test_dominant_masks_paint_each_region_and_keep_void():
    region_map, gt = small_pool()
    np.testing.assert_array_equal(partial_mask(region_map, gt, [0, 1], "dominant", V),
                                  [[1, 1, 3, 3], [1, 1, 3, V], [V, V, V, V]])
    everything = partial_mask(region_map, gt, [0, 1, 2, 3], "dominant", V)
    np.testing.assert_array_equal(everything[2], [V, V, 4, 4])


def test_dominant_noise_counts_the_pixels_that_disagree_with_their_region():
    region_map, gt = small_pool()
    assert dominant_noise(region_map, gt, [0], V) == (1, 4)  # the 2 among three 1s
    assert dominant_noise(region_map, gt, [0, 1], V) == (2, 7)  # ... and the 2 among two 3s
    assert dominant_noise(region_map, gt, [0, 1, 2, 3], V) == (2, 9)
    assert dominant_noise(region_map, gt, [2], V) == (0, 0)
    assert dominant_noise(region_map, gt, [], V) == (0, 0)


def test_dominant_noise_matches_the_dominant_mask():
    rng = np.random.default_rng(0)
    region_map = grid_map((30, 40), 7)
    gt = rng.integers(0, 4, (30, 40)).astype(np.uint8)
    gt[rng.random((30, 40)) < 0.1] = V
    ids = np.array([0, 3, 4, 9, 17, 23])
    mask = partial_mask(region_map, gt, ids, "dominant", V)
    labelled = mask != V
    wrong, total = dominant_noise(region_map, gt, ids, V)
    assert total == labelled.sum() == np.isin(region_map, ids)[gt != V].sum()
    assert wrong == (mask[labelled] != gt[labelled]).sum() > 0


def test_bad_calls_are_refused():
    region_map, gt = small_pool()
    with pytest.raises(ValueError, match="repeat"):
        dominant_labels(region_map, gt, [1, 1], V)
    with pytest.raises(ValueError, match="unknown oracle mode"):
        partial_mask(region_map, gt, [0], "rough", V)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ in shape"):
        dominant_noise(region_map, gt[:2], [0], V)
    with pytest.raises(ValueError, match="negative"):
        partial_mask(region_map, gt, [-1], "precise", V)
