"""VAAL on region crops: the crop of a hand-made region, seeded scores in [0, 1], and a two-cycle region run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import yaml

from segal.cli import main
from segal.config import recipe_from_dict
from segal.data.base import ClassSet, Dataset
from segal.errors import UserError
from segal.regions.budget import select_under_budget
from segal.regions.cache import region_stats
from segal.runs import Run
from segal.strategies import REGION_STRATEGIES, make_region_strategy
from segal.strategies.context import build_context
from segal.strategies.region_base import RegionContext
from segal.strategies.region_vaal import RegionCrops, RegionVAALStrategy, spread_picks
from segal.strategies.vaal import VAALStrategy
from tests.test_regions_loop import labels_of, region_recipe

TINY = {"width": 8, "z_dim": 8, "image_size": 16, "steps": 3, "batch_size": 4}


class Pictures(Dataset):
    """``images`` (N×H×W×3 uint8) as a pool."""

    classes = ClassSet(("a", "b"), ((0, 0, 0), (255, 255, 255)))

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, index: int) -> str:
        return f"img{index}"

    def load_image(self, index: int) -> np.ndarray:
        return self.images[index].copy()

    def load_target(self, index: int) -> np.ndarray:
        return np.zeros(self.images.shape[1:3], np.int64)


def _cache(maps: list[np.ndarray]) -> SimpleNamespace:
    """What :class:`RegionCrops` reads of a region cache, for hand-made region maps (one per image)."""
    counts = [int(m.max()) + 1 for m in maps]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    bbox = np.concatenate([region_stats(m, c)[1] for m, c in zip(maps, counts, strict=True)])
    return SimpleNamespace(shape=maps[0].shape, offsets=offsets, bbox=bbox, num_regions=int(offsets[-1]),
                           region_map=lambda i: maps[i],
                           image_of=lambda ids: np.searchsorted(offsets, np.asarray(ids), side="right") - 1)


def _maps() -> list[np.ndarray]:
    """Two 8×12 maps: image 0 has region 0 in its top-left 3×5 corner, an L-shaped region 1 around it and
    region 2 in the bottom rows; image 1 is cut into left and right halves."""
    first = np.ones((8, 12), np.int64)
    first[:3, :5] = 0
    first[6:] = 2
    second = np.zeros((8, 12), np.int64)
    second[:, 6:] = 1
    return [first, second]


def test_a_crop_is_its_regions_bounding_box_resized_and_scaled_to_the_image_source():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    crops = RegionCrops(Pictures(images), _cache(_maps()), size=16)
    assert len(crops) == 5
    corner = cv2.resize(images[0, :3, :5], (16, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crops.load_image(0), corner)
    # the L-shaped region's box is the whole of rows 0-5, context pixels (region 0's) included
    np.testing.assert_array_equal(crops.load_image(1), cv2.resize(images[0, :6], (16, 16), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(crops.load_image(4), cv2.resize(images[1, :, 6:], (16, 16),
                                                                  interpolation=cv2.INTER_AREA))
    assert crops.load_target(3) == 0 and crops.image_id(4) == "img1#region4"
    # an image source at twice the maps' resolution: the box is scaled to it
    big = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
    assert RegionCrops(Pictures(big), _cache(_maps()), size=16).box(0, big.shape[1:3]) == (0, 0, 6, 10)
    np.testing.assert_array_equal(RegionCrops(Pictures(big), _cache(_maps()), size=16).load_image(0),
                                  cv2.resize(big[0, :6, :10], (16, 16), interpolation=cv2.INTER_AREA))


def _region_context(seed: int = 0, workdir=None) -> RegionContext:
    """Six 8×12 images cut as :func:`_maps` cuts (alternately); image 0's regions labeled, the rest candidates."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 8, 12, 3), dtype=np.uint8)
    cache = _cache([_maps()[i % 2] for i in range(6)])
    labeled = np.arange(int(cache.offsets[1]))
    candidates = np.arange(int(cache.offsets[1]), cache.num_regions)
    base = build_context(Pictures(images), [0], budget=0, unlabeled=np.arange(1, 6), num_classes=2, seed=seed,
                         workdir=workdir)
    labels = SimpleNamespace(all_labeled_regions=lambda: labeled)
    return RegionContext(images=base, cache=cache, labels=labels, candidates=candidates)


def test_scores_are_one_per_candidate_in_0_1_and_the_same_for_the_same_seed():
    strategy = make_region_strategy("vaal", TINY, "<test>")
    assert isinstance(strategy, RegionVAALStrategy) and REGION_STRATEGIES.get("vaal") is RegionVAALStrategy
    assert not strategy.needs_model
    first = strategy.score(_region_context())
    assert first.shape == (12,) and np.isfinite(first).all() and ((first >= 0) & (first <= 1)).all()
    np.testing.assert_array_equal(strategy.score(_region_context()), first)
    # a subsampled unlabeled set still scores every candidate
    few = make_region_strategy("vaal", {**TINY, "max_unlabeled": 5}, "<test>").score(_region_context())
    assert few.shape == (12,) and np.isfinite(few).all()


def test_a_resumed_acquisition_reuses_the_cycles_checkpoint_instead_of_retraining(tmp_path, monkeypatch):
    workdir = tmp_path / "cycles" / "0"
    strategy = make_region_strategy("vaal", TINY, "<test>")
    first = strategy.score(_region_context(workdir=workdir))
    assert (workdir / "region_vaal" / "vaal.pt").exists() and (tmp_path / "cache" / "8x12" / "images.npy").exists()

    def no_training(*args, **kwargs):
        raise AssertionError("retrained")

    monkeypatch.setattr(VAALStrategy, "train", no_training)
    np.testing.assert_array_equal(strategy.score(_region_context(workdir=workdir)), first)


def test_bad_parameters_fail_when_the_recipe_is_read():
    with pytest.raises(UserError, match="max_unlabeled"):
        make_region_strategy("vaal", {**TINY, "max_unlabeled": 0}, "<test>")
    with pytest.raises(UserError, match="multiple of 16"):
        make_region_strategy("vaal", {**TINY, "image_size": 20}, "<test>")


@pytest.mark.parametrize("diversity", [0, 2])
def test_a_two_cycle_region_run_with_vaal_completes_within_its_pixel_budget(tmp_path, diversity):
    path = tmp_path / "vaal.yaml"
    data = region_recipe(tmp_path, strategy="vaal", strategy_params={**TINY, "diversity_factor": diversity})
    path.write_text(yaml.safe_dump(data))
    assert main(["acquire", str(path), "--quiet"]) == 0
    run = Run(tmp_path / "run", recipe_from_dict(data))
    state, labels = labels_of(run)
    assert state.stage == "done" and state.cycle == 2
    for cycle in (0, 1):
        queries = json.loads((run.cycle_dir(cycle) / "queries.json").read_text())
        budget = state.budgets[cycle + 1] - state.budgets[cycle]
        assert queries["strategy"] == "vaal" and queries["unit"] == "region"
        assert 0 < queries["spent"] <= budget and len(queries["regions"]) > 0
        if diversity:  # the k-center picks come first, scored (1, 2] in pick order (spread_picks)
            spread = queries["diagnostics"]["diversity"]
            assert spread["factor"] == 2 and spread["shortlist"] <= 2 * spread["plain_picks"]
            raised = [s for s in queries["scores"] if s > 1]
            assert 0 < len(raised) <= spread["plain_picks"] and raised == sorted(raised, reverse=True)
            assert queries["scores"][: len(raised)] == raised
        else:
            assert all(0 <= s <= 1 for s in queries["scores"]) and "diversity" not in queries["diagnostics"]
        assert (run.cycle_dir(cycle) / "region_vaal" / "vaal.pt").exists()
        diagnostics = queries["diagnostics"]  # the discriminator's AUROC and interval, as image VAAL's
        assert diagnostics["auroc_on"] in ("holdout", "crossfit") and 0 <= diagnostics["auroc"] <= 1
        low, high = diagnostics["auroc_ci"]
        assert low <= diagnostics["auroc"] <= high
    assert (run.dir / "cache" / "32x48" / "images.npy").exists()  # crops read from the resized-image cache


def test_image_vaal_options_not_done_for_regions_are_refused():
    with pytest.raises(UserError, match="region VAAL has no warm_start"):
        RegionVAALStrategy.Params(warm_start=True)
    with pytest.raises(UserError, match="diversity_factor must be 0"):
        RegionVAALStrategy.Params(diversity_factor=1)
    assert RegionVAALStrategy.Params(diversity_factor=4).diversity_factor == 4


def _encode_as(points: dict[int, tuple[float, float]]):
    def encode(regions: np.ndarray) -> torch.Tensor:
        assert np.all(np.diff(regions) > 0)  # asked in ascending id order
        return torch.tensor([points[int(r)] for r in regions], dtype=torch.float64)
    return encode


def test_spread_picks_raises_k_center_picks_of_the_shortlist_above_plain_scores_by_hand():
    # candidates 10..15; plain order by score: 10, 11, 12, 13, 14, 15; unit costs, budget 2 -> n = 2,
    # shortlist (factor 2) = 10..13.  Latents: labeled region 0 at the origin; 10 and 11 sit on it, 12 at
    # (3, 0), 13 at (0, 4).  k-center from the origin: 13 (distance 4), then 12 (distance 3 from 0, 5 from 13).
    candidates = np.arange(10, 16)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    points = {0: (0.0, 0.0), 10: (0.0, 0.0), 11: (0.0, 0.1), 12: (3.0, 0.0), 13: (0.0, 4.0), 14: (9.0, 9.0),
              15: (9.0, 9.0)}
    out, spread = spread_picks(candidates, scores, np.ones(6, np.int64), 2, 2, _encode_as(points), np.array([0]))
    np.testing.assert_allclose(out, [0.9, 0.8, 1.5, 2.0, 0.5, 0.1])  # pick i of n: 1 + (n - i) / n
    assert spread == {"factor": 2, "plain_picks": 2, "shortlist": 4, "kept_from_plain": 0, "taken": 2, "picks_taken": 2,
                      "radius_before": 4.0, "radius_after": pytest.approx(0.1)}
    np.testing.assert_array_equal(select_under_budget(candidates, out, np.ones(6, np.int64), 2), [13, 12])
    # costs count: region 10 costs the whole budget of 3, so plain VAAL takes 10 alone (n = 1) and the
    # shortlist is 10, 11; 11 is farther from the labeled origin than 10 and is picked
    out, spread = spread_picks(candidates, scores, np.array([3, 1, 1, 1, 1, 1]), 3, 2, _encode_as(points),
                               np.array([0]))
    np.testing.assert_allclose(out, [0.9, 2.0, 0.7, 0.6, 0.5, 0.1])
    assert (spread["plain_picks"], spread["shortlist"], spread["kept_from_plain"]) == (1, 2, 0)
    assert (spread["taken"], spread["picks_taken"]) == (3, 1)  # 11 picked, then 12 and 13 fill the budget
    # the loop then fills what the pick leaves of the budget in plain order: 11 (1), then 12, 13 (1 each)
    np.testing.assert_array_equal(select_under_budget(candidates, out, np.array([3, 1, 1, 1, 1, 1]), 3),
                                  [11, 12, 13])


def _two_pool_context(labeled_value: int, unlabeled_value: int) -> RegionContext:
    """Eight constant 16×16 images cut into sixteen 4×4 patches: images 0-1 (32 regions) labeled, painted
    ``labeled_value``; images 2-7 (96 candidates) painted ``unlabeled_value``.  Every crop of a pool is
    the same picture, so each pool's scores tie and the AUROC can only be 0, 0.5 or 1."""
    grid = (np.arange(16)[:, None] // 4 * 4 + np.arange(16)[None, :] // 4).astype(np.int64)
    images = np.full((8, 16, 16, 3), unlabeled_value, np.uint8)
    images[:2] = labeled_value
    cache = _cache([grid] * 8)
    labeled = np.arange(32)
    base = build_context(Pictures(images), [0, 1], budget=0, unlabeled=np.arange(2, 8), num_classes=2, seed=0)
    return RegionContext(images=base, cache=cache, labels=SimpleNamespace(all_labeled_regions=lambda: labeled),
                         candidates=np.arange(32, 128))


@pytest.mark.parametrize("auroc_min, method", [(8, "holdout"), (100, "crossfit")])
def test_pools_the_discriminator_cannot_tell_apart_give_auroc_one_half_and_a_collapse_warning(auroc_min, method):
    from segal.loop import collapse_warning

    params = {**TINY, "holdout": 0.25, "auroc_min": auroc_min}
    scores, diagnostics = make_region_strategy("vaal", params, "<test>").score_with_diagnostics(
        _two_pool_context(128, 128))
    assert scores.shape == (96,)
    assert diagnostics["auroc_on"] == method and diagnostics["auroc"] == 0.5
    if method == "holdout":  # 8 of the 32 labeled regions asked for: one whole image of 16 each, out of training
        assert (diagnostics["auroc_labeled"], diagnostics["auroc_unlabeled"]) == (16, 16)
        assert diagnostics["trained_on"] == {"labeled": 16, "unlabeled": 80}
    else:  # every labeled and unlabeled region scored out of fold
        assert (diagnostics["auroc_labeled"], diagnostics["auroc_unlabeled"]) == (32, 96)
    low, high = diagnostics["auroc_ci"]
    assert low < 0.5 < high
    assert "holds 0.5" in collapse_warning(0, diagnostics)


def test_pools_of_different_pictures_are_told_apart_on_held_out_regions_and_raise_no_warning():
    from segal.loop import collapse_warning

    # adversary_weight 0: the VAE does not fight the discriminator, which then has only to tell two pictures apart
    params = {**TINY, "steps": 40, "holdout": 0.25, "auroc_min": 8, "adversary_weight": 0.0}
    _, diagnostics = make_region_strategy("vaal", params, "<test>").score_with_diagnostics(_two_pool_context(255, 0))
    assert diagnostics["auroc_on"] == "holdout" and diagnostics["auroc"] == 1.0
    assert diagnostics["auroc_ci"] == [1.0, 1.0]  # Hanley-McNeil degenerates to a point at A = 1
    assert collapse_warning(0, diagnostics) is None


def test_the_holdout_takes_whole_images_so_no_held_out_region_shares_an_image_with_training():
    ctx = _two_pool_context(128, 128)
    vaal = VAALStrategy(VAALStrategy.Params(**{**TINY, "holdout": 0.25, "auroc_min": 8}))
    region_ctx = build_context(Pictures(np.zeros((128, 2, 2, 3), np.uint8)), np.arange(32), budget=0,
                               unlabeled=np.arange(32, 128), num_classes=2, seed=0)
    train_l, train_u, hold_l, hold_u = RegionVAALStrategy.split_by_image(vaal, region_ctx, ctx.cache)
    image_of = ctx.cache.image_of
    assert len(hold_l) >= 8 and len(hold_u) >= 8
    assert not set(image_of(np.concatenate([hold_l, hold_u]))) & set(image_of(np.concatenate([train_l, train_u])))
    assert sorted(np.concatenate([train_l, hold_l])) == list(range(32))
    assert sorted(np.concatenate([train_u, hold_u])) == list(range(32, 128))
    again = RegionVAALStrategy.split_by_image(vaal, region_ctx, ctx.cache)  # seeded
    assert all(np.array_equal(a, b) for a, b in zip(again, (train_l, train_u, hold_l, hold_u), strict=True))
