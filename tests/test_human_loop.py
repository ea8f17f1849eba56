"""The human oracle end to end through the CLI: acquire stops with pending ids, export writes them
with predicted masks, annotators' masks come back with import, and the next acquire trains on them."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.cli import main
from segal.pool import PoolState
from tests.tiny import TinySeg, tiny_recipe


@pytest.fixture
def human_run(tmp_path):
    recipe = tiny_recipe(tmp_path, oracle="human", cycles=1)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["acquire", str(path), "--quiet"]) == 0
    run_dir = tmp_path / "run"
    state = PoolState.load(run_dir / "state.json")
    assert state.stage == "await_labels" and len(state.pending) == 4
    return path, run_dir, state


def test_export_png_import_ground_truth_and_continue(human_run, tmp_path):
    recipe, run_dir, state = human_run
    out = tmp_path / "export"
    assert main(["export", str(run_dir), "--format", "png", "--out", str(out)]) == 0
    pool = TinySeg(40, salt=0)
    ids = {pool.image_id(i): i for i in state.pending}
    exported = sorted(p.stem for p in (out / "masks").glob("*.png"))
    assert exported == sorted(ids)
    # the annotators correct the predictions: write the true masks over them
    for image_id, index in ids.items():
        cv2.imwrite(str(out / "masks" / f"{image_id}.png"), pool.load_target(index))
    assert main(["import", str(run_dir), str(out / "masks")]) == 0
    after = PoolState.load(run_dir / "state.json")
    assert not after.pending and after.num_labeled == 12 and after.stage == "train"
    assert sorted(after.labeled[1]) == sorted(state.pending)
    for image_id, index in ids.items():
        stored = cv2.imread(str(run_dir / "labels" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(stored, pool.load_target(index))
    # importing twice is refused and changes nothing
    assert main(["import", str(run_dir), str(out / "masks")]) == 2
    # the next acquire trains and evaluates on the imported labels, then finishes
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    final = PoolState.load(run_dir / "state.json")
    assert final.stage == "done" and final.num_labeled == 12
    assert json.loads((run_dir / "cycles" / "1" / "metrics.json").read_text())["labeled"] == 12


@pytest.mark.parametrize("fmt", ["cvat-mask", "cvat-xml", "labelstudio", "coco"])
def test_tool_formats_round_trip_through_the_run(human_run, tmp_path, fmt):
    _, run_dir, state = human_run
    out = tmp_path / fmt
    assert main(["export", str(run_dir), "--format", fmt, "--out", str(out)]) == 0
    main_file = {"cvat-mask": "cvat-mask.zip", "cvat-xml": "annotations.xml", "labelstudio": "tasks.json",
                 "coco": "annotations/instances_default.json"}[fmt]
    assert (out / main_file).exists()
    if fmt == "labelstudio":  # Label Studio's export holds annotations; turn the predictions into them
        tasks = json.loads((out / main_file).read_text())
        for task in tasks:
            task["annotations"] = [{"result": task["predictions"][0]["result"]}]
        (out / main_file).write_text(json.dumps(tasks))
    assert main(["import", str(run_dir), str(out / main_file)]) == 0
    assert PoolState.load(run_dir / "state.json").num_labeled == 12


def test_bad_import_changes_nothing(human_run, tmp_path, capsys):
    _, run_dir, state = human_run
    out = tmp_path / "export"
    assert main(["export", str(run_dir), "--format", "png", "--out", str(out)]) == 0
    victim = sorted((out / "masks").glob("*.png"))[0]
    cv2.imwrite(str(victim), np.zeros((5, 5), np.uint8))  # wrong size
    before = (run_dir / "state.json").read_bytes()
    assert main(["import", str(run_dir), str(out / "masks")]) == 2
    assert victim.stem in capsys.readouterr().err
    assert (run_dir / "state.json").read_bytes() == before
    assert not (run_dir / "labels").exists() or not any((run_dir / "labels").iterdir())
