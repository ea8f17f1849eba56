"""Memory of pool scoring is bounded by the batch, not the pool (tools/bench_scale.py's scorer).

Before scoring kept copies instead of torch views, peak RSS grew by about 250 bytes per scored image
(+45 MB from 20k to 200k ids); now the growth is the scores themselves (16 bytes per id).
"""

from __future__ import annotations

import pytest

from tests.tool_loader import load_tool


def test_scoring_peak_memory_does_not_grow_with_the_pool():
    bench = load_tool("bench_scale")
    small, large = bench.bench_scoring(20_000), bench.bench_scoring(200_000)
    assert small["chosen"] == large["chosen"] == 1000
    growth = large["peak_mb"] - small["peak_mb"]
    assert growth < 20, f"peak RSS grew {growth:.0f} MB from 20k to 200k ids"


def test_region_scores_are_the_mean_pixel_score_of_each_region_of_unlabeled_images(tmp_path):
    import numpy as np

    from segal.regions.cache import RegionCache
    from segal.regions.maps import RegionSpec
    from segal.regions.state import RegionLabels

    bench = load_tool("bench_scale")
    shape = (10, 13)  # patches of 4 px: the last row and column are narrower, so areas differ
    cache = RegionCache.build(bench.GridImages(3, shape), RegionSpec(method="grid", patch=4, resolution=shape),
                              tmp_path / "cache")
    labels = RegionLabels.empty(cache.offsets)
    labels.add_labeled(labels.regions_of([1]), cycle=0)  # image 1 fully labeled: not scored
    labels.add_labeled([int(cache.offsets[2])], cycle=0)  # image 2 partly labeled: all its regions scored
    scores = bench.score_regions(cache, labels, seed=3)
    assert scores.dtype == np.float32 and scores.shape == (3 * 12,)
    for image in range(3):
        region_map, pixels = cache.region_map(image), bench.pixel_scores(image, shape, seed=3)
        for local in range(12):
            got = scores[cache.offsets[image] + local]
            if image == 1:
                assert np.isnan(got)
            else:
                assert got == pytest.approx(pixels[region_map == local].astype(np.float64).mean(), rel=1e-6)


def test_region_benchmark_runs_end_to_end_on_a_tiny_pool(tmp_path):
    row = load_tool("bench_scale").bench_regions(2, tmp_path, grid=(4, 5), patch=4)  # 2 images × 20 regions of 16 px
    assert (row["regions"], row["labeled"], row["scored"]) == (40, 20, 20)
    assert row["budget_pixels"] == 0.05 * 2 * 16 * 20 == 32
    assert (row["chosen"], row["chosen_pixels"]) == (2, 32)
    assert row["peak_mb"] >= row["baseline_mb"]
