"""tools/label_efficiency.py: the converged schedule by default, and its settings reach the recipe."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from segal.config import load_recipe
from segal.engine import planned_steps

TOOL = Path(__file__).resolve().parents[1] / "tools" / "label_efficiency.py"
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "camvid.yaml"


def load_tool():
    spec = importlib.util.spec_from_file_location("label_efficiency", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def args(tool, **changes) -> argparse.Namespace:
    base = dict(data_root="/data/camvid", image_size=[96, 128], steps=None, epochs=tool.EPOCHS,
                min_steps=tool.MIN_STEPS, batch_size=8, cycles=6, device="cpu", vae_size=32, z_dim=32, vae_width=32,
                vae_epochs=tool.VAE_EPOCHS, vae_steps=None, warm_epochs=None)
    return argparse.Namespace(**(base | changes))


def test_default_schedule_is_epochs_with_a_floor_and_reaches_40_percent():
    tool = load_tool()
    overrides, params = tool.settings(args(tool))
    recipe = load_recipe(RECIPE, overrides)
    assert recipe.train.steps is None and recipe.train.epochs == tool.EPOCHS and recipe.train.min_steps == tool.MIN_STEPS
    assert recipe.active.cycles == 6  # 10% + 6 × 5% = 40%
    small, large = planned_steps(recipe.train, 37), planned_steps(recipe.train, 147)
    assert small == max(tool.MIN_STEPS, -(-tool.EPOCHS * 37 // 8))
    assert large == max(tool.MIN_STEPS, -(-tool.EPOCHS * 147 // 8))
    assert params["vaal"]["epochs"] == tool.VAE_EPOCHS and params["vaal"]["steps"] is None


def test_fixed_steps_restore_the_old_protocol():
    tool = load_tool()
    overrides, _ = tool.settings(args(tool, steps=200))
    assert load_recipe(RECIPE, overrides).train.steps == 200


def test_warm_epochs_warm_start_every_later_cycle():
    from segal.engine import cycle_schedule

    tool = load_tool()
    cold = load_recipe(RECIPE, tool.settings(args(tool))[0])
    warm = load_recipe(RECIPE, tool.settings(args(tool, warm_epochs=30))[0])
    assert cold.train.reinit is True and cold.train.warm_epochs is None
    assert warm.train.reinit is False and warm.train.warm_epochs == 30 and warm.data.cache is True
    assert planned_steps(cycle_schedule(warm.train, warm=True), 145) == -(-30 * 145 // 8)  # 544, no floor
    assert planned_steps(cycle_schedule(warm.train, warm=False), 37) == planned_steps(cold.train, 37)
