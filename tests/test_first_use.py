"""What a new user trips over (issue 17): sizing VAAL from the command line, continuing a run by its
directory, and a relative ``data.root`` read from the recipe's folder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import pytest
import yaml

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.cli import main
from segal.config import load_recipe, parse_set
from segal.pool import PoolState
from segal.strategies import STRATEGIES, check_strategy_params
from tests.test_bad_input import make_folder_dataset, recipe_dict
from tests.tiny import TinySeg, tiny_recipe

REPO = Path(__file__).resolve().parents[1]

# A valid value other than the default for every VAAL parameter: a new parameter must be added here.
VAAL_VALUES = {
    "mode": "paper", "image_size": 48, "z_dim": 7, "width": 24, "disc_layers": 3, "beta": 2.5,
    "adversary_weight": 0.5, "lr": 0.0002, "batch_size": 16, "epochs": 3.5, "steps": 100, "vae_steps": 3,
    "disc_steps": 2, "kl_reduction": "mean", "holdout": 0.2, "auroc_min": 8, "warm_start": True,
    "diversity_factor": 4,
}


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ------------------------------------------------------------------------ VAAL from the command line

def test_set_reaches_every_vaal_parameter():
    fields = {f.name for f in dataclasses.fields(STRATEGIES.get("vaal").Params)}
    assert set(VAAL_VALUES) == fields
    sets = parse_set([f"active.strategy_params.{k}={json.dumps(v)}" for k, v in VAAL_VALUES.items()])
    recipe = load_recipe(REPO / "recipes" / "demo.yaml", {"active.strategy": "vaal"}, sets)  # an entropy recipe
    params = check_strategy_params("vaal", recipe.active.strategy_params, "demo.yaml", sets).params
    assert {k: getattr(params, k) for k in fields} == VAAL_VALUES


@pytest.mark.parametrize(("flag", "needle"), [
    ("active.strategy_params.steps=abc", "'abc'"),
    ("active.strategy_params.stepz=5", "'active.strategy_params.stepz': strategy 'vaal' has no such parameter"),
    ("active.strategy_params.image_size=30", "not a multiple of 16"),
])
def test_a_bad_strategy_parameter_set_is_named(tmp_path, capsys, flag, needle):
    recipe = write(tmp_path / "r.yaml", tiny_recipe(tmp_path))
    assert main(["acquire", str(recipe), "--quiet", "--strategy", "vaal", "--set", flag]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"error: --set {flag.partition('=')[0]}: ") and needle in err, err
    assert not (tmp_path / "run").exists()


def test_a_bad_strategy_parameter_set_on_a_sweep_is_named(tmp_path, capsys):
    recipe = write(tmp_path / "r.yaml", tiny_recipe(tmp_path))
    out = tmp_path / "sweep"
    assert main(["sweep", str(recipe), "--strategies", "random,vaal", "--out", str(out), "--quiet",
                 "--set", "active.strategy_params.steps=abc"]) == 2
    assert one_line_error(capsys).startswith("error: --set active.strategy_params.steps: ")
    assert not out.exists()


def test_a_bad_parameter_in_the_recipe_is_named_after_the_recipe(tmp_path, capsys):
    recipe = write(tmp_path / "r.yaml", tiny_recipe(tmp_path, strategy="vaal", strategy_params={"image_size": 30}))
    assert main(["acquire", str(recipe), "--quiet", "--set", "active.strategy_params.steps=5"]) == 2
    assert one_line_error(capsys).startswith(f"error: {recipe}: ")


def test_steps_flag_says_it_does_not_size_vaal(tmp_path, capsys):
    recipe = write(tmp_path / "r.yaml", {**tiny_recipe(tmp_path), "data": {"dataset": "demo", "root": "/does/not/exist"}})
    assert main(["acquire", str(recipe), "--quiet", "--strategy", "vaal", "--steps", "10"]) == 2
    err = capsys.readouterr().err
    assert "--steps sizes the task network only" in err and "--set active.strategy_params.steps=N" in err
    assert main(["acquire", str(recipe), "--quiet", "--strategy", "vaal", "--steps", "10",
                 "--set", "active.strategy_params.steps=10"]) == 2
    assert "--steps sizes" not in capsys.readouterr().err  # VAAL is sized: nothing to say
    assert main(["acquire", str(recipe), "--quiet", "--steps", "10"]) == 2  # entropy trains nothing of its own
    assert "--steps sizes" not in capsys.readouterr().err


# ------------------------------------------------------------------------ continuing a run by its directory

def test_acquire_run_dir_continues_after_an_import(tmp_path, capsys, monkeypatch):
    recipe = write(tmp_path / "recipe.yaml", tiny_recipe(tmp_path))
    run_dir = tmp_path / "run"
    first = ["--quiet", "--oracle", "human", "--cycles", "1", "--image-size", "32", "48", "--steps", "2"]
    assert main(["acquire", str(recipe), *first]) == 0
    state = PoolState.load(run_dir / "state.json")
    assert state.stage == "await_labels"
    pool = TinySeg(40, salt=0)
    masks = tmp_path / "masks"
    masks.mkdir()
    for index in state.pending:
        cv2.imwrite(str(masks / f"{pool.image_id(index)}.png"), pool.load_target(index))
    assert main(["import", str(run_dir), str(masks)]) == 0
    assert f"segalacquire{run_dir}" in "".join(capsys.readouterr().out.split())  # rich may wrap the line

    # the recipe without the first command's flags is another experiment, and the error says what to run
    assert main(["acquire", str(recipe), "--quiet"]) == 2
    err = one_line_error(capsys)
    assert "data.image_size differ" in err and f"run `segal acquire {run_dir}`" in err

    monkeypatch.chdir(tmp_path / "masks")  # from anywhere: the run's own output_dir is not trusted
    assert main(["acquire", "../run", "--quiet"]) == 0
    final = PoolState.load(run_dir / "state.json")
    assert final.stage == "done" and final.num_labeled == 12 and sorted(final.human) == sorted(state.pending)
    metrics = json.loads((run_dir / "cycles" / "1" / "metrics.json").read_text())
    assert metrics["labeled"] == 12
    stored = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert stored["data"]["image_size"] == [32, 48] and stored["train"]["steps"] == 2
    assert stored["active"]["oracle"] == "human" and Path(stored["output_dir"]).resolve() == run_dir.resolve()


def test_acquire_on_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["acquire", str(tmp_path), "--quiet"]) == 2
    assert "neither a recipe file nor a segal run directory (no recipe.yaml)" in one_line_error(capsys)
    recipe = write(tmp_path / "recipe.yaml", tiny_recipe(tmp_path))  # a user's recipe named like a run's copy
    before = recipe.read_bytes()
    assert main(["acquire", str(tmp_path), "--quiet"]) == 2
    assert "(no state.json)" in one_line_error(capsys)
    assert recipe.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]


# ------------------------------------------------------------------------ data.root and the recipe's folder

def test_relative_data_root_is_read_from_the_recipe_folder(tmp_path, monkeypatch):
    data = make_folder_dataset(tmp_path / "project" / "data")
    recipe_data = recipe_dict(data, tmp_path / "run")
    recipe_data["data"]["root"], recipe_data["active"]["cycles"] = "../data", 0
    recipe = write(tmp_path / "project" / "recipes" / "r.yaml", recipe_data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    stored = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert stored["data"]["root"] == str(data)  # absolute in the run: its copy resolves wherever it is read
    assert main(["acquire", str(tmp_path / "run"), "--quiet", "--cycles", "1"]) == 0  # and continues from there
    assert PoolState.load(tmp_path / "run" / "state.json").stage == "done"


def test_command_line_data_root_is_read_from_the_current_folder(tmp_path, monkeypatch):
    recipe = write(tmp_path / "recipes" / "r.yaml", {"data": {"dataset": "folder", "root": "data"}})
    monkeypatch.chdir(tmp_path)
    assert load_recipe(recipe).data.root == str(tmp_path / "recipes" / "data")
    assert load_recipe(recipe, {"data.root": "mine"}).data.root == str(tmp_path / "mine")
    assert load_recipe(recipe, sets=parse_set(["data.root=../x"])).data.root == str(tmp_path.parent / "x")
    assert load_recipe(recipe, {"data.root": "/abs/data"}).data.root == "/abs/data"


def test_a_root_only_under_the_current_folder_is_used_with_a_warning(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    recipe = write(tmp_path / "recipes" / "r.yaml", {"data": {"dataset": "folder", "root": "data"}})
    monkeypatch.chdir(tmp_path)
    warnings: list[str] = []
    assert load_recipe(recipe, warnings=warnings).data.root == str(tmp_path / "data")
    assert len(warnings) == 1 and str(tmp_path / "recipes" / "data") in warnings[0] and "relative to the recipe" in warnings[0]


def test_a_missing_root_names_the_folder_tried_and_why(tmp_path, capsys, monkeypatch):
    recipe = write(tmp_path / "recipes" / "r.yaml", {**recipe_dict(tmp_path, tmp_path / "run"),
                                                    "data": {"dataset": "folder", "root": "nope"}})
    monkeypatch.chdir(tmp_path)
    assert main(["acquire", str(recipe), "--quiet"]) == 2
    err = one_line_error(capsys)
    tried = tmp_path / "recipes" / "nope"
    assert err.startswith(f"error: {tried}: data root not found") and "recipe file's folder" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["camvid", "cifar10-jpg"])
def test_repository_recipes_find_the_shared_data_from_any_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = load_recipe(REPO / "recipes" / f"{name}.yaml").data.root
    assert root == str(REPO.parent / "shared" / "data" / name)
