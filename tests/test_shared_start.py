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


def test_a_region_run_starts_from_the_image_runs_network_which_is_the_one_it_would_train(tmp_path):
    """What a region run acquires later is not in its cycle 0: the image run's network is byte for byte the
    one the region run trains alone, so the region benchmark copies it (and its runs are paired with the
    image baselines from the start)."""
    from segal.config import recipe_from_dict
    from tests.test_regions_loop import region_recipe

    image = region_recipe(tmp_path / "image", cycles=1)
    image["active"] = {k: v for k, v in image["active"].items() if k not in ("unit", "cost")} | {"budget": 2}
    del image["regions"]
    with start_run(recipe_from_dict(image), "<image>") as donor:
        ActiveLoop(donor, Progress(), max_cycles=1).run_loop()
    alone_recipe = recipe_from_dict(region_recipe(tmp_path / "alone", cycles=1))
    with start_run(alone_recipe, "<alone>") as alone:
        ActiveLoop(alone, Progress()).run_loop()
    with start_run(recipe_from_dict(region_recipe(tmp_path / "shared", cycles=1)), "<shared>") as shared:
        ActiveLoop(shared, Progress(), initial_donors=[donor.dir]).run_loop()
    assert "shared_initial_network" in (shared.dir / "log.jsonl").read_text()
    assert "shared_initial_network" not in (alone.dir / "log.jsonl").read_text()
    task = "cycles/0/task.pt"
    assert (alone.dir / task).read_bytes() == (donor.dir / task).read_bytes() == (shared.dir / task).read_bytes()
    for cycle in (0, 1):
        assert _metrics(shared.dir, cycle)["miou"] == _metrics(alone.dir, cycle)["miou"]
    # The dominant oracle labels even the initial images by their regions' majority class: not the same network.
    dominant = recipe_from_dict(region_recipe(tmp_path / "dominant", oracle="dominant", cycles=1))
    with start_run(dominant, "<dominant>") as run:
        ActiveLoop(run, Progress(), initial_donors=[donor.dir, shared.dir], max_cycles=1).run_loop()
    assert "shared_initial_network" not in (run.dir / "log.jsonl").read_text()


def test_a_sweep_takes_donors_from_outside_itself(tmp_path):
    recipe = _recipe(tmp_path)
    (donor,) = sweep(recipe, ["random"], [0], tmp_path / "first", {}, Progress(), write_report=False)
    (run,) = sweep(recipe, ["entropy"], [0], tmp_path / "second", {}, Progress(), write_report=False, donors=[donor])
    assert str(donor) in (run / "log.jsonl").read_text()
    assert (run / "cycles/0/task.pt").read_bytes() == (donor / "cycles/0/task.pt").read_bytes()


def test_warm_epochs_act_after_cycle_0_so_a_run_that_only_trains_its_later_cycles_longer_shares_it(tmp_path):
    """``train.warm_epochs`` sets the steps of cycles 1+ (segal.engine.cycle_schedule): a run that differs
    only there (the region benchmark's 2×-steps check) copies cycle 0, and its cycle 1 trains the longer
    schedule while the donor's trains its own."""
    recipe = _recipe(tmp_path, steps=None, epochs=1, reinit=False, warm_epochs=2, min_steps=0)
    (donor,) = sweep(recipe, ["random"], [0], tmp_path / "short", {}, Progress(), write_report=False)
    (longer,) = sweep(recipe, ["random"], [0], tmp_path / "long", {"train.warm_epochs": 6}, Progress(),
                      write_report=False, donors=[donor])
    assert str(donor) in (longer / "log.jsonl").read_text()
    assert (longer / "cycles/0/task.pt").read_bytes() == (donor / "cycles/0/task.pt").read_bytes()
    steps = [json.loads((run / "cycles/1/train.json").read_text())["steps"] for run in (donor, longer)]
    assert steps[1] == 3 * steps[0] > 0
    lr = load_recipe(recipe, {"output_dir": str(tmp_path / "lr"), "train.lr": 0.5})  # a cycle-0 key still refuses
    with start_run(lr, str(recipe)) as run:
        state = json.loads((donor / "state.json").read_text())
        from segal.pool import PoolState

        initial = PoolState(size=state["size"], budgets=state["budgets"], seed=0, pool_fingerprint="",
                            labeled={0: list(state["labeled"]["0"])})
        assert share_initial_network(run, initial, [donor]) is None
