"""Class-balanced region acquisition (Cai et al. 2021): the weight rule by hand, the one-pass scoring on a
fixed softmax, and a two-cycle region run on demo scenes."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from segal.cli import main
from segal.config import recipe_from_dict
from segal.errors import UserError
from segal.progress import Progress
from segal.runs import Run
from segal.strategies import REGION_STRATEGIES, make_region_strategy
from segal.strategies import scoring as pixel_scores
from segal.strategies.region_base import RegionContext, score_regions
from segal.strategies.region_class_balanced import (
    RegionClassBalancedStrategy,
    class_balanced_scores,
    dominant_classes,
    region_uncertainty_and_class,
)
from tests.test_regions_loop import labels_of, region_recipe


def test_weight_rule_matches_hand_computed_scores():
    # u min-max normalised: [0, .5, 1, .5]; predicted-class shares p0 = 3/4, p1 = 1/4
    u, dominant = np.array([0.2, 0.6, 1.0, 0.6]), np.array([0, 0, 0, 1])
    w0, w1 = math.exp(-0.75), math.exp(-0.25)
    scores = class_balanced_scores(u, dominant, num_classes=2)
    np.testing.assert_allclose(scores, [0.0, 0.5 * w0, w0, 0.5 * w1], rtol=1e-12)
    assert np.argsort(-scores, kind="stable").tolist() == [2, 3, 1, 0]
    # T = 0.5 favours the rare class more: the half-as-uncertain class-1 region now comes first
    sharp = class_balanced_scores(u, dominant, num_classes=2, temperature=0.5)
    np.testing.assert_allclose(sharp, [0.0, 0.5 * math.exp(-1.5), math.exp(-1.5), 0.5 * math.exp(-0.5)], rtol=1e-12)
    assert np.argsort(-sharp, kind="stable").tolist() == [3, 2, 1, 0]
    # all equally uncertain: no division by zero, the weights alone rank; no candidate: no score
    np.testing.assert_allclose(class_balanced_scores(np.full(3, 0.4), np.array([1, 1, 0]), 2),
                               [math.exp(-2 / 3), math.exp(-2 / 3), math.exp(-1 / 3)])
    assert class_balanced_scores(np.empty(0), np.empty(0, np.int64), 2).shape == (0,)


def test_dominant_class_is_the_majority_prediction_per_region():
    region_map = np.array([[0, 0, 1, 1], [0, 0, 1, 2]])
    predicted = np.array([[2, 1, 0, 0], [1, 1, 2, 2]])
    assert dominant_classes(region_map, predicted, 3, 3).tolist() == [1, 0, 2]  # region 1: 0,0,2 → 0


def _context(probs: np.ndarray, region_map: np.ndarray, candidates: np.ndarray) -> RegionContext:
    """One 2×8 image whose "network" returns ``probs`` (C×2×8) as its softmax; regions from ``region_map``."""
    num_regions = int(region_map.max()) + 1
    logits = torch.log(torch.as_tensor(probs, dtype=torch.float32))[None]
    images = SimpleNamespace(
        unlabeled=np.array([0]), num_classes=probs.shape[0], device=torch.device("cpu"), amp=False,
        progress=Progress(), require_model=lambda who="": nn.Identity(),
        eval_loader=lambda indices: [(logits, np.asarray(indices))])
    cache = SimpleNamespace(shape=region_map.shape, offsets=np.array([0, num_regions]),
                            area=np.bincount(region_map.ravel()), region_map=lambda i: region_map)
    return RegionContext(images=images, cache=cache, labels=None, candidates=candidates)


def test_rare_predicted_class_ranks_above_an_equally_uncertain_common_one():
    # four 2×2 regions (column pairs): 0 and 1 predict class 0 at p = .7, region 2 predicts class 1 at p = .7
    # (the same entropy), region 3 is confident class 0 (p = .99)
    region_map = np.repeat(np.arange(4), 2)[None].repeat(2, axis=0)
    p0 = np.repeat([0.7, 0.7, 0.3, 0.99], 2)[None].repeat(2, axis=0)
    probs = np.stack([p0, 1 - p0])
    ctx = _context(probs, region_map, np.arange(4))
    uncertainty, dominant = region_uncertainty_and_class(ctx, pixel_scores.entropy)
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    np.testing.assert_allclose(uncertainty, [h(0.7), h(0.7), h(0.7), h(0.99)], rtol=1e-5)
    np.testing.assert_allclose(uncertainty, score_regions(ctx, pixel_scores.entropy))  # entropy's own numbers
    assert dominant.tolist() == [0, 0, 1, 0]
    scores = RegionClassBalancedStrategy().score(ctx)
    # normalised u = [1, 1, 1, 0]; shares p0 = 3/4, p1 = 1/4
    np.testing.assert_allclose(scores, [math.exp(-0.75), math.exp(-0.75), math.exp(-0.25), 0.0], rtol=1e-5)
    assert int(np.argmax(scores)) == 2
    # only some regions are candidates: shares and normalisation are over those, returned in their order
    some = RegionClassBalancedStrategy().score(_context(probs, region_map, np.array([1, 2])))
    np.testing.assert_allclose(some, [math.exp(-0.5), math.exp(-0.5)], rtol=1e-5)


def test_registered_with_validated_parameters():
    assert REGION_STRATEGIES.get("class_balanced") is RegionClassBalancedStrategy
    assert RegionClassBalancedStrategy.needs_model
    strategy = make_region_strategy("class_balanced", {"temperature": 0.5, "uncertainty": "margin"}, "r.yaml")
    assert strategy.params.temperature == 0.5 and strategy.params.uncertainty == "margin"
    for bad in ({"temperature": 0}, {"temperature": -1.0}, {"temperature": float("inf")},
                {"uncertainty": "bald"}, {"beta": 1}):
        with pytest.raises(UserError, match=r"^r\.yaml: "):
            make_region_strategy("class_balanced", bad, "r.yaml")


def test_a_bad_temperature_fails_in_one_line_before_anything_is_written(tmp_path, capsys):
    data = region_recipe(tmp_path / "bad", strategy="class_balanced")
    data["active"]["strategy_params"] = {"temperature": 0}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["acquire", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "temperature must be a finite number > 0" in err and str(path) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_two_cycle_region_run_with_class_balanced(tmp_path):
    path = tmp_path / "cb.yaml"
    path.write_text(yaml.safe_dump(region_recipe(tmp_path, strategy="class_balanced")))
    assert main(["acquire", str(path), "--quiet"]) == 0  # the CLI takes a region-only strategy name
    run = Run(tmp_path / "run", recipe_from_dict(region_recipe(tmp_path, strategy="class_balanced")))
    state, labels = labels_of(run)
    assert state.stage == "done" and state.cycle == 2
    assert labels.labeled_counts().tolist()[0] == 4 * 6 and labels.num_labeled == 4 * 6 + 2 * 6  # 6 patches a cycle
    for cycle in (0, 1):
        q = json.loads((run.cycle_dir(cycle) / "queries.json").read_text())
        assert q["strategy"] == "class_balanced" and len(q["regions"]) == 6
        assert q["scores"] == sorted(q["scores"], reverse=True) and all(0 <= s <= 1 for s in q["scores"])
