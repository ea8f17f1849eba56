"""The classification half of the paper through the same loop: cifar10-jpg (class folders, real
images), ResNet-18 at 32×32, accuracy per budget, and every classification recipe validates."""

from __future__ import annotations

import json

import pytest

from segal.config import load_recipe
from segal.loop import ActiveLoop
from segal.runs import start_run


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "caltech256", "imagenet", "cifar10-jpg"])
def test_classification_recipes_validate(name):
    recipe = load_recipe(f"recipes/{name}.yaml")
    assert recipe.task == "classification" and recipe.active.initial == 0.1 and recipe.active.budget == 0.05
    assert recipe.active.final == (0.3 if name in ("imagenet", "cifar10-jpg") else 0.4)


@pytest.mark.parametrize("strategy", ["vaal", "entropy"])
def test_cifar10_jpg_loop_reports_accuracy(tmp_path, cifar_jpg_root, strategy):
    recipe = load_recipe("recipes/cifar10-jpg.yaml", {
        "data.root": str(cifar_jpg_root), "output_dir": str(tmp_path / "run"), "device": "cpu",
        "train.steps": 2, "train.epochs": None, "active.initial": 40, "active.budget": 20, "active.final": None,
        "active.cycles": 1, "active.strategy": strategy,
        "active.strategy_params": {"image_size": 32, "z_dim": 8, "width": 8, "batch_size": 64, "steps": 3}
        if strategy == "vaal" else {},
    })
    run = start_run(recipe, "<test>")
    rows = ActiveLoop(run).run_loop()
    assert [r.labeled for r in rows] == [40, 60] and rows[0].metric_name == "accuracy"
    metrics = json.loads((run.cycle_dir(0) / "metrics.json").read_text())
    assert metrics["test_size"] == 2000 and 0 <= metrics["accuracy"] <= metrics["top5"] <= 1
    queries = json.loads((run.cycle_dir(0) / "queries.json").read_text())
    assert len(queries["ids"]) == 20 and all("/" in i for i in queries["ids"])  # class/file ids
    hist = queries["diagnostics"]["class_histogram"]
    assert abs(sum(hist.values()) - 1) < 1e-4
