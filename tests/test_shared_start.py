"""A sweep trains each seed's cycle-0 network once and copies it: the runs must not change by it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from segal.config import load_recipe
from segal.loop import ActiveLoop
from segal.progress import Progress
from segal.runs import start_run
from segal.shared_start import share_initial_network
from segal.sweep import sweep
from tests.tiny import tiny_recipe


def _recipe(tmp_path: Path, **train) -> Path:
    data = tiny_recipe(tmp_path)
    data["active"]["cycles"] = 1
    data["train"].update(train)
    path = tmp_path / f"tiny{len(train)}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _metrics(run: Path, cycle: int) -> dict:
    return json.loads((run / "cycles" / str(cycle) / "metrics.json").read_text())


def test_a_sweep_copies_cycle_0_and_every_result_equals_the_run_trained_alone(tmp_path):
    recipe = _recipe(tmp_path)
    out = tmp_path / "sweep"
    sweep(recipe, ["random", "entropy"], [0], out, {}, Progress(), write_report=False)
    shared, donor = out / "entropy-seed0", out / "random-seed0"
    log = (shared / "log.jsonl").read_text()
    assert "shared_initial_network" in log and str(donor) in log
    assert "shared_initial_network" not in (donor / "log.jsonl").read_text()
    task = "cycles/0/task.pt"
    assert (shared / task).read_bytes() == (donor / task).read_bytes()

    alone = load_recipe(recipe, {"output_dir": str(tmp_path / "alone"), "active.strategy": "entropy"})
    ActiveLoop(start_run(alone, str(recipe)), Progress()).run_loop()  # no donors: trains its own cycle 0
    assert (tmp_path / "alone" / task).read_bytes() == (shared / task).read_bytes()
    for cycle in (0, 1):
        assert _metrics(tmp_path / "alone", cycle)["miou"] == _metrics(shared, cycle)["miou"]
    queries = [json.loads((d / "cycles/0/queries.json").read_text())["indices"] for d in (shared, tmp_path / "alone")]
    assert queries[0] == queries[1]  # entropy chose the same images from the copied network


def test_a_donor_whose_training_differs_is_not_used(tmp_path):
    donor_recipe = load_recipe(_recipe(tmp_path, lr=0.01), {"output_dir": str(tmp_path / "donor"),
                                                             "active.strategy": "random"})
    ActiveLoop(start_run(donor_recipe, "donor.yaml"), Progress(), max_cycles=1).run_loop()
    assert (tmp_path / "donor" / "cycles/0/task.pt").is_file()

    mine = load_recipe(_recipe(tmp_path), {"output_dir": str(tmp_path / "mine")})
    run = start_run(mine, "mine.yaml")
    try:
        from segal.pool import PoolState

        initial = json.loads((tmp_path / "donor" / "state.json").read_text())["labeled"]["0"]
        state = PoolState(size=40, budgets=[8, 12], seed=0, pool_fingerprint="", labeled={0: list(initial)})
        assert share_initial_network(run, state, [tmp_path / "donor"]) is None  # train.lr differs
        assert not (tmp_path / "mine" / "cycles/0/task.pt").exists()
        other = PoolState(size=40, budgets=[8, 12], seed=0, pool_fingerprint="", labeled={0: list(initial)[1:] + [39]})
        same = load_recipe(_recipe(tmp_path, lr=0.01), {"output_dir": str(tmp_path / "mine2")})
        run2 = start_run(same, "mine2.yaml")
        try:
            assert share_initial_network(run2, other, [tmp_path / "donor"]) is None  # other initial images
            assert share_initial_network(run2, state, [tmp_path / "donor"]) == tmp_path / "donor"
            assert (tmp_path / "mine2" / "cycles/0/task.pt").read_bytes() == \
                (tmp_path / "donor" / "cycles/0/task.pt").read_bytes()
        finally:
            run2.close()
    finally:
        run.close()
