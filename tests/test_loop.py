import json

import numpy as np
import pytest
import yaml

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.config import recipe_from_dict
from segal.errors import UserError
from segal.loop import ActiveLoop, initial_selection
from segal.pool import PoolState
from segal.runs import start_run
from tests.tiny import tiny_recipe


def run_recipe(tmp_path, **active):
    recipe = recipe_from_dict(tiny_recipe(tmp_path, **active))
    run = start_run(recipe, "<test>")
    return run, ActiveLoop(run).run_loop()


def test_loop_runs_all_cycles_and_writes_run_dir(tmp_path):
    run, rows = run_recipe(tmp_path)
    assert [r.labeled for r in rows] == [8, 12, 16]
    state = PoolState.load(run.state_path)
    assert state.stage == "done" and state.num_labeled == 16
    assert sorted(state.labeled) == [0, 1, 2]
    for k in range(3):
        metrics = json.loads((run.cycle_dir(k) / "metrics.json").read_text())
        assert 0 <= metrics["miou"] <= 1 and len(metrics["per_class_iou"]) == 3
    q = json.loads((run.cycle_dir(0) / "queries.json").read_text())
    assert len(q["indices"]) == 4 and set(q["indices"]) == set(state.labeled[1])
    assert set(q["diagnostics"]["class_histogram"]) == {"bg", "square", "bar"}
    assert not (run.cycle_dir(2) / "queries.json").exists()  # no wasted acquisition after the last budget
    resolved = yaml.safe_load((run.dir / "recipe.yaml").read_text())
    assert resolved["train"]["steps"] == 4
    events = [json.loads(line)["event"] for line in (run.dir / "log.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events.count("acquired") == 2


def test_same_seed_same_acquisitions(tmp_path):
    run_a, _ = run_recipe(tmp_path / "a")
    run_b, _ = run_recipe(tmp_path / "b")
    a = PoolState.load(run_a.state_path).labeled
    b = PoolState.load(run_b.state_path).labeled
    assert a == b


def test_rerun_of_finished_run_changes_nothing(tmp_path):
    run, rows = run_recipe(tmp_path)
    before = run.state_path.read_bytes()
    _, rows2 = run_recipe(tmp_path)
    assert run.state_path.read_bytes() == before
    assert [r.metric for r in rows] == [r.metric for r in rows2]


def test_resume_from_every_stage_gives_same_result(tmp_path):
    """Stop after each single step, reopen, continue: the outcome equals an uninterrupted run."""
    ref, _ = run_recipe(tmp_path / "ref")
    recipe = recipe_from_dict(tiny_recipe(tmp_path / "stepwise"))
    steps = 0
    while True:
        run = start_run(recipe, "<test>")
        loop = ActiveLoop(run)
        if not run.state_path.exists():
            state = run.new_state()
            state.add_labeled(initial_selection(run, state), cycle=0)
            run.save_state(state)
        state = run.load_state()
        if state.stage == "done":
            break
        loop.step(state)  # a fresh loop object each time = a fresh process
        steps += 1
    assert steps == 3 * 2 + 2 * 2  # (train, evaluate) × 3 + (acquire, label) × 2
    assert PoolState.load(run.state_path).labeled == PoolState.load(ref.state_path).labeled


def test_impossible_budget_is_user_error(tmp_path):
    with pytest.raises(UserError, match="pool holds 40"):
        run_recipe(tmp_path, initial=30, budget=10, cycles=2)


def test_changed_recipe_in_same_run_dir_is_refused(tmp_path):
    run_recipe(tmp_path)
    with pytest.raises(UserError, match="different experiment"):
        run_recipe(tmp_path, strategy="random")


def test_human_oracle_stops_with_pending(tmp_path):
    run, rows = run_recipe(tmp_path, oracle="human")
    state = PoolState.load(run.state_path)
    assert state.stage == "await_labels" and len(state.pending) == 4 and state.num_labeled == 8
    assert len(rows) == 1


def test_biased_initial_pool_excludes_classes(tmp_path):
    run, _ = run_recipe(tmp_path, initial_exclude_classes=[2], cycles=0)
    state = PoolState.load(run.state_path)
    for i in state.labeled[0]:
        assert 2 not in np.unique(run.pool.load_target(i))
