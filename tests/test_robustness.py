"""The robustness studies' switches: noisy oracle, biased initial pool, acquisition budget.

Training is replaced by a recorder where only the labels the task network would see matter, so
these tests check the data the loop feeds to training, quickly and exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal import loop as loop_module
from segal.config import recipe_from_dict
from segal.data.base import ClassSet, Dataset
from segal.engine import TrainResult
from segal.errors import UserError
from segal.loop import ActiveLoop, initial_selection
from segal.oracle import corrupt_label
from segal.pool import PoolState
from segal.runs import Run, start_run
from tests.tiny import tiny_recipe


class TinyCls(Dataset):
    """Classification pool: image i has label i % 5."""

    task = "classification"
    classes = ClassSet(tuple(f"c{k}" for k in range(5)), tuple((k, k, k) for k in range(5)))

    def __init__(self, n: int = 200):
        self.n = n

    def __len__(self):
        return self.n

    def image_id(self, i):
        return f"cls_{i:04d}"

    def load_image(self, i):
        return np.full((8, 8, 3), i % 256, np.uint8)

    def load_target(self, i):
        return i % 5


class SpeckSeg(Dataset):
    """Segmentation pool where even images hold class 2 in a single pixel, plus a void border."""

    classes = ClassSet(("bg", "a", "speck"), ((0, 0, 0), (1, 1, 1), (2, 2, 2)))

    def __len__(self):
        return 30

    def image_id(self, i):
        return f"speck_{i:03d}"

    def load_image(self, i):
        return np.zeros((16, 16, 3), np.uint8)

    def load_target(self, i):
        mask = np.zeros((16, 16), np.uint8)
        mask[4:8, 4:8] = 1
        mask[0, :] = 255
        if i % 2 == 0:
            mask[10, 10] = 2
        return mask


def make_run(tmp_path, pool: Dataset | None = None, task: str = "segmentation", **active) -> Run:
    data = tiny_recipe(tmp_path, **active)
    data["task"] = task
    data["data"]["options"] = {"n_test": 2}  # evaluation is not under test here
    recipe = recipe_from_dict(data)
    if pool is None:
        return start_run(recipe, "<test>")
    return Run(tmp_path / "run", recipe, _pool=pool)


def labeled_state(run: Run, acquired: list[int]) -> PoolState:
    """Initial set plus successive acquisitions of the given sizes, as the loop would record them."""
    state = run.new_state()
    state.add_labeled(initial_selection(run, state), cycle=0)
    for cycle, size in enumerate(acquired, 1):
        state.add_labeled(state.unlabeled_indices()[:size], cycle=cycle)
    return state


@pytest.fixture
def recorded_training(monkeypatch):
    """Replace training with a recorder of (cycle's labeled indices, the labels the network would get)."""
    seen: list[dict[int, object]] = []

    def fake_train(model, dataset, indices, cfg, **kwargs):
        seen.append({int(i): dataset.load_target(int(i)) for i in indices})
        return TrainResult(steps=0, final_loss=0.0, seconds=0.0)

    monkeypatch.setattr(loop_module, "train", fake_train)
    return seen


# ---------------------------------------------------------------------------- noisy oracle

def test_noisy_oracle_segmentation_corrupts_stated_fraction_of_acquired_masks(tmp_path):
    run = make_run(tmp_path, label_noise=0.3, initial=8, budget=10, cycles=2)
    state = labeled_state(run, [10, 10])
    view = ActiveLoop(run).oracle_view(state)
    for cycle, indices in state.labeled.items():
        corrupted = [i for i in indices if not np.array_equal(view.load_target(i), run.pool.load_target(i))]
        assert len(corrupted) == (0 if cycle == 0 else 3), cycle  # the initial set stays clean; round(0.3 × 10)
        for i in corrupted:
            clean, noisy = run.pool.load_target(i), view.load_target(i)
            assert (noisy != clean).all()  # every region relabelled with another class …
            for c in np.unique(clean):  # … consistently: one wrong class per true class
                assert len(np.unique(noisy[clean == c])) == 1
    # a resumed run (fresh loop object) sees exactly the same corruption
    again = ActiveLoop(run).oracle_view(state)
    assert again.noisy == view.noisy and len(view.noisy) == 6


def test_noisy_oracle_reaches_training(tmp_path, recorded_training):
    run = make_run(tmp_path, label_noise=0.5, initial=8, budget=4, cycles=2, strategy="random")
    ActiveLoop(run).run_loop()
    state = PoolState.load(run.state_path)
    assert len(recorded_training) == 3
    for cycle, labels in enumerate(recorded_training):
        wrong = [i for i, t in labels.items() if not np.array_equal(t, run.pool.load_target(i))]
        assert len(wrong) == 2 * cycle  # 2 of every 4 acquired, none of the initial 8
        assert not set(wrong) & set(state.labeled[0])


def test_noisy_oracle_classification_flips_labels(tmp_path):
    pool = TinyCls(200)
    run = make_run(tmp_path, pool, task="classification", label_noise=0.2, initial=20, budget=50, cycles=2,
                   strategy="random")
    state = labeled_state(run, [50, 50])
    view = ActiveLoop(run).oracle_view(state)
    for cycle, indices in state.labeled.items():
        flipped = [i for i in indices if view.load_target(i) != pool.load_target(i)]
        assert len(flipped) == (0 if cycle == 0 else 10)  # round(0.2 × 50)
        for i in flipped:
            assert 0 <= view.load_target(i) < 5 and isinstance(view.load_target(i), int)


def test_classification_noise_is_a_uniform_other_class():
    counts = np.bincount([corrupt_label(2, 5, seed=0, image_id=f"img{k}") for k in range(4000)], minlength=5)
    assert counts[2] == 0
    assert np.allclose(counts[[0, 1, 3, 4]] / 4000, 0.25, atol=0.03)


def test_no_noise_means_clean_labels(tmp_path):
    run = make_run(tmp_path, initial=8, budget=10, cycles=2)
    view = ActiveLoop(run).oracle_view(labeled_state(run, [10, 10]))
    assert view.noisy == set()


# ---------------------------------------------------------------------------- biased initial pool

def test_biased_initial_pool_has_no_image_containing_excluded_class(tmp_path):
    run = make_run(tmp_path, initial_exclude_classes=[2], initial=8, budget=4, cycles=1)
    state = run.new_state()
    chosen = initial_selection(run, state)
    assert len(chosen) == 8 and len(set(chosen.tolist())) == 8
    assert all(2 not in np.unique(run.pool.load_target(int(i))) for i in chosen)
    # without the switch, the same seed does pick images with the bar class (so the check above can fail)
    unbiased = initial_selection(make_run(tmp_path / "u", initial=8, budget=4, cycles=1), state)
    assert any(2 in np.unique(run.pool.load_target(int(i))) for i in unbiased)


def test_a_single_pixel_counts_as_containing(tmp_path):
    run = make_run(tmp_path, SpeckSeg(), initial_exclude_classes=[2], initial=10, budget=2, cycles=1)
    chosen = initial_selection(run, run.new_state())
    assert len(chosen) == 10 and all(i % 2 == 1 for i in chosen)  # every even image has one speck pixel


def test_biased_initial_pool_classification(tmp_path):
    run = make_run(tmp_path, TinyCls(200), task="classification", initial_exclude_classes=[0, 3], initial=40,
                   budget=10, cycles=1, strategy="random")
    chosen = initial_selection(run, run.new_state())
    assert len(chosen) == 40 and {i % 5 for i in chosen} == {1, 2, 4}


def test_biased_initial_pool_then_acquisition_may_add_the_class(tmp_path, recorded_training):
    run = make_run(tmp_path, initial_exclude_classes=[2], initial=8, budget=16, cycles=1, strategy="random")
    ActiveLoop(run).run_loop()
    state = PoolState.load(run.state_path)
    assert all(2 not in np.unique(run.pool.load_target(i)) for i in state.labeled[0])
    assert any(2 in np.unique(run.pool.load_target(i)) for i in state.labeled[1])  # only the initial set is biased


def test_impossible_bias_is_user_error(tmp_path):
    run = make_run(tmp_path, initial_exclude_classes=[1], initial=8, budget=4, cycles=1)  # every image has a square
    with pytest.raises(UserError, match=r"only 0 images avoid classes \[1\]"):
        initial_selection(run, run.new_state())


# ---------------------------------------------------------------------------- budget

@pytest.mark.parametrize(("budget", "expected"), [
    (0.05, [20, 30, 40, 50, 60, 70, 80]),  # 10% + 6 × 5% of 200 = 40%
    (0.10, [20, 40, 60, 80]),  # 10% + 3 × 10%
])
def test_budget_fraction_gives_budget_list(tmp_path, budget, expected):
    data = tiny_recipe(tmp_path, initial=0.1, budget=budget, final=0.4, cycles=None)
    data["data"]["options"] = {"n_train": 200}
    run = start_run(recipe_from_dict(data), "<test>")
    assert run.new_state().budgets == expected


def test_budget_drives_acquisition_sizes(tmp_path, recorded_training):
    run = make_run(tmp_path, initial=0.1, budget=0.1, final=0.4, cycles=None, strategy="random")  # pool of 40
    ActiveLoop(run).run_loop()
    state = PoolState.load(run.state_path)
    assert state.budgets == [4, 8, 12, 16]
    assert [len(state.labeled[c]) for c in range(4)] == [4, 4, 4, 4]
    assert [len(labels) for labels in recorded_training] == [4, 8, 12, 16]
    for c in range(3):
        assert json.loads((run.cycle_dir(c) / "queries.json").read_text())["budget"] == 4
    fractions = [json.loads((run.cycle_dir(c) / "metrics.json").read_text())["fraction"] for c in range(4)]
    assert fractions == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_budget_rounding_to_zero_is_user_error(tmp_path):
    with pytest.raises(UserError, match="rounds to zero"):  # 1% of 40 rounds to 0: refused before the run exists
        make_run(tmp_path, initial=0.1, budget=0.01, final=0.4, cycles=None)
    assert not (tmp_path / "run").exists()
