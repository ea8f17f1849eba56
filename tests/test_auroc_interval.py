"""The discriminator's AUROC interval (Hanley–McNeil) and its cross-fitted measurement in VAAL."""

import math

import numpy as np
import pytest

from segal.loop import collapse_warning
from segal.metrics import auroc, auroc_interval
from tests.test_vaal import TwoLooks, _context, _vaal


def test_hanley_mcneil_by_hand():
    # A = 0.8, 32 + 32: Q1 = 0.8/1.2, Q2 = 2·0.64/1.8, SE² = (0.16 + 31(Q1 − 0.64) + 31(Q2 − 0.64)) / 1024
    q1, q2 = 0.8 / 1.2, 1.28 / 1.8
    se = math.sqrt((0.16 + 31 * (q1 - 0.64) + 31 * (q2 - 0.64)) / 1024)
    assert se == pytest.approx(0.05582, abs=1e-5)
    assert auroc_interval(0.8, 32, 32) == pytest.approx((0.8 - 1.96 * se, 0.8 + 1.96 * se), abs=1e-4)


def test_separated_scores_exclude_half_and_identical_ones_hold_it():
    separated = auroc(np.linspace(0.6, 1.0, 32), np.linspace(0.0, 0.4, 32))
    assert separated == 1.0 and auroc_interval(separated, 32, 32) == (1.0, 1.0)
    rng = np.random.default_rng(0)
    same = auroc(rng.normal(size=40), rng.normal(size=40))
    lo, hi = auroc_interval(same, 40, 40)
    assert lo < 0.5 < hi and hi - lo > 0.2  # 40 + 40 draws of one distribution cannot tell it from chance
    assert all(math.isnan(v) for v in auroc_interval(float("nan"), 0, 5))


def test_collapse_warning_follows_the_interval():
    assert collapse_warning(0, {"auroc": 0.58, "auroc_ci": [0.45, 0.71]}) is not None  # holds 0.5
    assert collapse_warning(0, {"auroc": 0.52, "auroc_ci": [0.51, 0.53]}) is None  # close to 0.5, yet real
    assert collapse_warning(0, {"auroc": 0.52}) is not None  # no interval: the old distance rule
    assert collapse_warning(0, {"class_histogram": {}}) is None


def test_small_labeled_set_is_cross_fitted_and_resumes(tmp_path, monkeypatch):
    pool = TwoLooks(60, split=30)
    labeled, unlabeled = np.arange(0, 60, 3), np.setdiff1d(np.arange(60), np.arange(0, 60, 3))  # 20 and 40
    strategy = _vaal(holdout=0.1, auroc_min=32, steps=4)  # 0.1 × 20 = 2 held-out images < 32: cross-fit
    selection = strategy.select(_context(pool, labeled, unlabeled, 6, tmp_path))
    d = selection.diagnostics
    assert d["auroc_on"] == "crossfit" and d["auroc_labeled"] == 20 and d["auroc_unlabeled"] == 40
    assert len(d["auroc_folds"]) == 2 and d["auroc_ci"] == pytest.approx(list(auroc_interval(d["auroc"], 20, 40)))
    again = _vaal(holdout=0.1, auroc_min=32, steps=4)
    monkeypatch.setattr(again, "train", lambda *args: pytest.fail("retrained despite a checkpoint"))
    resumed = again.select(_context(pool, labeled, unlabeled, 6, tmp_path)).diagnostics
    assert resumed["auroc"] == d["auroc"] and resumed["auroc_ci"] == d["auroc_ci"]
    assert _vaal(holdout=0.5, auroc_min=10).auroc_method(_context(pool, labeled, unlabeled, 6, None)) == "holdout"


@pytest.mark.parametrize("holdout, auroc_min", [(0.1, 32), (0.5, 4), (0.0, 1)])  # cross-fit, held out, on training
def test_paper_mode_scores_labeled_and_unlabeled_in_shared_batches_for_its_auroc(tmp_path, holdout, auroc_min):
    """Paper mode scores with train-mode BatchNorm: a pool scored in batches of its own is normalised by its
    own statistics, which could separate the pools by themselves.  No scoring call holds labeled images only."""
    pool = TwoLooks(60, split=30)
    labeled, unlabeled = np.arange(0, 60, 3), np.setdiff1d(np.arange(60), np.arange(0, 60, 3))
    strategy = _vaal(mode="paper", holdout=holdout, auroc_min=auroc_min, steps=2)
    calls, score = [], strategy.score

    def spy(ctx, vae, disc, indices, description="VAAL scoring"):
        calls.append(np.asarray(indices).copy())
        return score(ctx, vae, disc, indices, description)

    strategy.score = spy
    d = strategy.select(_context(pool, labeled, unlabeled, 6, tmp_path)).diagnostics
    assert d["auroc_on"] == {0.1: "crossfit", 0.5: "holdout", 0.0: "train"}[holdout]
    assert calls and not any(np.isin(c, labeled).all() for c in calls)
    assert any(np.isin(c, labeled).any() and np.isin(c, unlabeled).any() for c in calls)
