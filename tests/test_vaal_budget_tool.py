"""tools/vaal_budget.py: re-running a VAAL acquisition at the run's own budget gives the run's picks, a
larger budget trains proportionally more, the run folder is left as it was, and bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.cli import main
from tests.tiny import tiny_recipe
from tests.tool_loader import load_tool

VAAL = {"image_size": 32, "z_dim": 8, "width": 8, "batch_size": 8, "epochs": 1.0}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


@pytest.fixture(scope="module")
def vaal_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("vaal-budget")
    data = tiny_recipe(base, strategy="vaal", strategy_params=VAAL, cycles=2)
    recipe = base / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    return base / "run"


def test_own_budget_reproduces_the_runs_picks_and_more_epochs_train_more(vaal_run, tmp_path):
    before = snapshot(vaal_run)
    out = tmp_path / "budget.json"
    assert load_tool("vaal_budget").main([str(vaal_run), "--cycle", "1", "--epochs", "1,3", "--cache", str(tmp_path / "cache"),
                             "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    own, triple = result["budgets"]
    assert result["labeled"] == 12 and own["same_as_run"] and own["overlap"] == 1.0  # 8 initial + 4 of cycle 0
    ran = json.loads((vaal_run / "cycles" / "1" / "queries.json").read_text())["diagnostics"]
    assert own["steps"] == ran["steps"] and own["auroc"] == pytest.approx(ran["auroc"])
    # steps = ceil(epochs × n / batch), so ceil(3x) lies in [3·ceil(x) − 2, 3·ceil(x)] and above 2·ceil(x) for x > 2
    assert 3 * own["steps"] - 2 <= triple["steps"] <= 3 * own["steps"] and triple["steps"] > 2 * own["steps"]
    assert snapshot(vaal_run) == before  # nothing in the run folder was written


def test_bad_input_is_one_line_exit_2(vaal_run, tmp_path, capsys):
    tool = load_tool("vaal_budget")
    assert tool.main([str(vaal_run), "--cycle", "5", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "no labeled set for cycles 0 … 5" in err and len(err.strip().splitlines()) == 1
    assert tool.main([str(tmp_path), "--cycle", "0"]) == 2
    assert "not a segal run directory" in capsys.readouterr().err
    for bad in ("30,x", "0", "-5", "inf", ""):
        assert tool.main([str(vaal_run), "--cycle", "1", "--epochs", bad]) == 2
        assert "--epochs" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_an_unwritable_out_is_one_line_naming_it(vaal_run, tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert load_tool("vaal_budget").main([str(vaal_run), "--cycle", "0", "--epochs", "1", "--cache", str(tmp_path / "cache"),
                             "--out", str(blocked / "out.json")]) == 2
    err = capsys.readouterr().err
    assert str(blocked) in err and "fix:" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists()  # refused before any VAE was trained
