"""The training schedule that scales with the labeled set: ``max(min_steps, ceil(epochs × n / batch))``."""

import pytest
import torch

import tests.tiny  # noqa: F401
from segal.config import TrainConfig, recipe_from_dict
from segal.device import Compute
from segal.engine import planned_steps, train
from segal.errors import UserError
from segal.models import MODELS
from tests.tiny import TinySeg


@pytest.mark.parametrize(("epochs", "n", "batch", "min_steps", "steps", "expected"), [
    (30, 37, 8, 0, None, 139),      # 30 × 37 / 8 = 138.75 → 139
    (30, 147, 8, 0, None, 552),     # 30 × 147 / 8 = 551.25 → 552
    (30, 37, 8, 800, None, 800),    # the floor wins at the smallest budget ...
    (30, 367, 8, 800, None, 1377),  # ... and epochs at the largest: 30 × 367 / 8 = 1376.25
    (1, 3, 4, 0, None, 1),          # fewer images than a batch: one step
    (30, 37, 8, 800, 200, 200),     # train.steps overrides both
])
def test_planned_steps_hand_computed(epochs, n, batch, min_steps, steps, expected):
    cfg = TrainConfig(epochs=epochs, batch_size=batch, min_steps=min_steps, steps=steps)
    assert planned_steps(cfg, n) == expected


def test_train_runs_the_planned_steps():
    torch.manual_seed(0)
    model = MODELS.get("deeplabv3plus")(3, encoder="resnet18")
    cfg = TrainConfig(epochs=1, batch_size=4, min_steps=5, amp="off", augment=False)
    result = train(model, TinySeg(12, salt=0), range(10), cfg, compute=Compute(image_size=[32, 32]), seed=0)
    assert result.steps == 5  # ceil(1 × 10 / 4) = 3 < the floor of 5: two batches per epoch, three epochs


def test_negative_min_steps_is_refused():
    with pytest.raises(UserError, match="train.min_steps"):
        recipe_from_dict({"train": {"min_steps": -1}})


@pytest.mark.parametrize("reinit", [True, False])
def test_warm_start_continues_from_the_previous_cycle(tmp_path, reinit):
    """With a learning rate too small to move the weights, cycle 1 ends where it started: at cycle 0's
    network when warm-started (``train.reinit: false``), at a fresh initialisation otherwise."""
    from segal.checkpoint import load_checkpoint
    from segal.loop import ActiveLoop
    from segal.runs import start_run
    from tests.tiny import tiny_recipe

    data = tiny_recipe(tmp_path, strategy="random", cycles=1)
    data["train"].update(steps=1, lr=1e-12, reinit=reinit)
    run = start_run(recipe_from_dict(data), "<test>")
    ActiveLoop(run).run_loop()
    first, second = (load_checkpoint(run.cycle_dir(c) / "task.pt") for c in (0, 1))
    weights = [k for k, v in first.items() if v.is_floating_point() and "running" not in k]  # not BN statistics
    same = all(torch.allclose(first[k], second[k], atol=1e-6) for k in weights)
    assert same == (not reinit)


@pytest.mark.parametrize(("warm", "warm_epochs", "steps", "expected"), [
    (False, 30, None, 800),   # a from-scratch cycle keeps the floor: max(800, ceil(88 × 37 / 8) = 407)
    (True, 30, None, 139),    # warm: ceil(30 × 37 / 8) = 138.75 → 139, no floor
    (True, None, None, 800),  # no warm_epochs: a warm cycle is scheduled like any other
    (True, 30, 200, 200),     # train.steps fixes every cycle
])
def test_warm_cycles_use_warm_epochs_without_the_floor(warm, warm_epochs, steps, expected):
    from segal.engine import cycle_schedule

    cfg = TrainConfig(epochs=88, min_steps=800, warm_epochs=warm_epochs, steps=steps)
    assert planned_steps(cycle_schedule(cfg, warm), 37) == expected


def test_the_loop_trains_warm_cycles_for_warm_epochs(tmp_path):
    from segal.fileio import read_json
    from segal.loop import ActiveLoop
    from segal.runs import start_run
    from tests.tiny import tiny_recipe

    data = tiny_recipe(tmp_path, strategy="random", cycles=1)
    data["train"].update(steps=None, epochs=1, min_steps=6, warm_epochs=1, batch_size=4, reinit=False)
    run = start_run(recipe_from_dict(data), "<test>")
    ActiveLoop(run).run_loop()
    state = run.load_state()
    steps = [read_json(run.cycle_dir(c) / "train.json")["steps"] for c in (0, 1)]
    assert steps[0] == 6  # cycle 0 from scratch: the floor
    assert steps[1] == -(-state.budgets[1] // 4) < 6  # warm: ceil(1 × labeled / 4), below the floor


def test_zero_warm_epochs_is_refused():
    with pytest.raises(UserError, match="train.warm_epochs"):
        recipe_from_dict({"train": {"warm_epochs": 0}})
