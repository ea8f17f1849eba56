"""Bad input met by a run that already exists or is under way, one test each, through the CLI:
exit code 2, one line naming the file and the fix, no traceback, the run's files byte-identical
(``log.jsonl`` only grows), and a resume that works once the cause is fixed.

Covers: training that diverges or has nothing to learn from, imported labels lost between runs,
hostile Label Studio annotations, re-export into the same folder, a full disk, a read-only run,
state files too deeply nested or not UTF-8, and a run directory edited between runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.cli import main
from segal.config import TrainConfig
from segal.device import Compute
from segal.engine import train
from segal.errors import UserError
from segal.pool import PoolState
from tests import test_bad_input
from tests.test_bad_input import fails, fails_unchanged, snapshot
from tests.tiny import TinySeg, tiny_recipe

# the fixtures of the suite of bad inputs to a new run: a fresh folder dataset, a finished run, a copy of it
setup, finished, finished_copy = test_bad_input.setup, test_bad_input.finished, test_bad_input.finished_copy

TRUTH = TinySeg(40, salt=0)  # tiny-seg's pool, whose true masks the "annotators" return


def edit_recipe(recipe: Path, section: str, **values) -> None:
    data = yaml.safe_load(recipe.read_text())
    data[section].update(values)
    recipe.write_text(yaml.safe_dump(data))


# ---------------------------------------------------------------------------------------- training
def test_diverging_learning_rate_records_nothing(setup, capsys):
    _, recipe, run_dir = setup
    edit_recipe(recipe, "train", lr=1e30, steps=6)
    fails(capsys, ["acquire", str(recipe), "--quiet"], "diverged", "train.lr")
    cycle0 = run_dir / "cycles" / "0"
    assert not any((cycle0 / name).exists() for name in ("task.pt", "train.json", "metrics.json", "train_state.pt"))
    assert PoolState.load(run_dir / "state.json").stage == "train"
    edit_recipe(recipe, "train", lr=1e-3)  # the fix the message names; lr is not part of the identity
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    assert math.isfinite(json.loads((cycle0 / "train.json").read_text())["final_loss"])
    assert math.isfinite(json.loads((cycle0 / "metrics.json").read_text())["miou"])


def test_all_void_labeled_masks_record_nothing(setup, capsys):
    data, recipe, run_dir = setup
    for mask in (data / "masks" / "train").iterdir():
        cv2.imwrite(str(mask), np.full((32, 32), 255, np.uint8))
    fails(capsys, ["acquire", str(recipe), "--quiet"], "ignore")  # refused by the data check or by the trainer
    assert not list(run_dir.glob("cycles/*/metrics.json")) and not list(run_dir.glob("cycles/*/train.json"))


class _VoidTiny(TinySeg):
    """tiny-seg whose masks are all ignore for the images in ``void``."""

    def __init__(self, void: set[int]):
        super().__init__(16, salt=0)
        self.void = void

    def load_target(self, i):
        return np.full((32, 32), 255, np.uint8) if i in self.void else super().load_target(i)


def _train(dataset, steps: int = 4):
    from segal.models import MODELS

    torch.manual_seed(0)
    model = MODELS.get("deeplabv3plus")(3, encoder="resnet18")
    cfg = TrainConfig(steps=steps, batch_size=2, amp="off")
    return model, train(model, dataset, np.arange(8), cfg, compute=Compute(image_size=(32, 32)), seed=0)


def test_trainer_refuses_an_all_void_labeled_set():
    with pytest.raises(UserError, match="all ignore"):
        _train(_VoidTiny(set(range(16))))


def test_a_void_batch_does_not_poison_the_weights():
    """A batch with no labelled pixel had loss 0/0 = NaN, whose gradient turned every weight into NaN."""
    model, result = _train(_VoidTiny(set(range(6))), steps=8)  # 6 of 8 images void, batches of 2: 2+ all-void
    assert math.isfinite(result.final_loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------------------------------- the human oracle
@pytest.fixture
def human_run(tmp_path):
    """A tiny-seg run stopped at its first human-label step; ``cycles`` acquisitions in all."""

    def make(cycles: int = 1):
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(tiny_recipe(tmp_path, oracle="human", cycles=cycles)))
        assert main(["acquire", str(recipe), "--quiet"]) == 0
        return recipe, tmp_path / "run"

    return make


def annotate(folder: Path, run_dir: Path) -> list[str]:
    """Overwrite the exported predictions with the true masks, as annotators would."""
    pending = PoolState.load(run_dir / "state.json").pending
    ids = [TRUTH.image_id(i) for i in pending]
    for index, image_id in zip(pending, ids, strict=True):
        cv2.imwrite(str(folder / "masks" / f"{image_id}.png"), TRUTH.load_target(index))
    return ids


def test_lost_labels_folder_is_an_error_not_the_datasets_masks(human_run, tmp_path, capsys):
    recipe, run_dir = human_run()
    out = tmp_path / "export"
    assert main(["export", str(run_dir), "--format", "png", "--out", str(out)]) == 0
    pending = PoolState.load(run_dir / "state.json").pending
    annotate(out, run_dir)
    assert main(["import", str(run_dir), str(out / "masks")]) == 0
    assert sorted(PoolState.load(run_dir / "state.json").human) == sorted(pending)  # the state says so
    shutil.move(run_dir / "labels", tmp_path / "labels-backup")
    fails_unchanged(capsys, run_dir, ["acquire", str(recipe), "--quiet"], "labels", "imported mask", "restore")
    assert not (run_dir / "cycles" / "1" / "task.pt").exists()
    shutil.move(tmp_path / "labels-backup", run_dir / "labels")
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    assert PoolState.load(run_dir / "state.json").stage == "done"


def _label_studio_export(run_dir: Path, out: Path) -> tuple[Path, list[dict]]:
    assert main(["export", str(run_dir), "--format", "labelstudio", "--out", str(out)]) == 0
    tasks = json.loads((out / "tasks.json").read_text())
    for number, task in enumerate(tasks):  # accepted as they are, as an annotator might
        task["id"] = number + 1
        task["annotations"] = [{"id": 100 + number, "result": task.pop("predictions")[0]["result"]}]
    return out / "export.json", tasks


def _polygon(points) -> dict:
    return {"type": "polygonlabels", "from_name": "tag", "to_name": "image", "original_width": 32,
            "original_height": 32, "value": {"points": points, "polygonlabels": ["square"]}}


@pytest.mark.parametrize(("points", "needle"), [
    ([[10, 10], [float("nan"), 20], [30, 30]], "nan"),
    ([[10, 10], [1e12, 20], [30, 30]], "1e+12"),
], ids=["nan", "huge"])
def test_label_studio_polygon_with_bad_coordinates(human_run, tmp_path, capsys, points, needle):
    _, run_dir = human_run()
    path, tasks = _label_studio_export(run_dir, tmp_path / "ls")
    tasks[1]["annotations"][0]["result"].append(_polygon(points))
    path.write_text(json.dumps(tasks))  # Python writes NaN as the bare token NaN, as some tools do
    fails_unchanged(capsys, run_dir, ["import", str(run_dir), str(path)], str(path), "task 2", "polygon", needle)


def test_label_studio_empty_annotation_is_refused(human_run, tmp_path, capsys):
    _, run_dir = human_run()
    path, tasks = _label_studio_export(run_dir, tmp_path / "ls")
    tasks[2]["annotations"][0]["result"] = []  # submitted without drawing anything
    path.write_text(json.dumps(tasks))
    fails_unchanged(capsys, run_dir, ["import", str(run_dir), str(path)], str(path), "task 3",
                    tasks[2]["data"]["segal_id"], "empty")
    assert not (run_dir / "labels").exists()


def test_re_export_into_the_same_folder_holds_only_this_cycle(human_run, tmp_path):
    recipe, run_dir = human_run(cycles=2)
    out = tmp_path / "export"
    for _cycle in range(2):
        assert main(["export", str(run_dir), "--format", "png", "--out", str(out)]) == 0
        ids = annotate(out, run_dir)
        assert sorted(p.stem for p in (out / "masks").iterdir()) == sorted(ids), "stale masks of an earlier cycle"
        assert sorted(p.stem for p in (out / "images").iterdir()) == sorted(ids), "stale images of an earlier cycle"
        assert main(["import", str(run_dir), str(out / "masks")]) == 0
        assert main(["acquire", str(recipe), "--quiet"]) == 0
    assert PoolState.load(run_dir / "state.json").stage == "done"
    assert not list(tmp_path.glob(".export.segal-staging-*")), "staging folders left behind"


def test_export_refuses_a_folder_of_someone_elses_files(human_run, tmp_path, capsys):
    _, run_dir = human_run()
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    fails_unchanged(capsys, run_dir, ["export", str(run_dir), "--format", "png", "--out", str(out)], str(out), "--out")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------------------------------- the file system
@contextlib.contextmanager
def mounted(*commands: list[str], undo: list[str]):
    """Run mount commands (root only); skip the test where the machine does not allow them."""
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot {' '.join(command)}: {result.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(undo, capture_output=True)


def test_full_disk_loses_nothing_and_resumes(finished, tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(["mount", "-t", "tmpfs", "-o", "size=450m", "tmpfs", str(disk)], undo=["umount", "-l", str(disk)]):
        shutil.copytree(finished / "data", disk / "data")
        shutil.copytree(finished / "run", disk / "run")
        run_dir = disk / "run"
        stored = yaml.safe_load((run_dir / "recipe.yaml").read_text())
        stored["data"]["root"], stored["output_dir"] = str(disk / "data"), str(run_dir)
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(stored, sort_keys=False))
        filler = disk / "filler"
        for chunk, name in ((1 << 20, "filler"), (4096, "filler2")):  # fill the disk to the last page
            with contextlib.suppress(OSError), open(disk / name, "wb") as f:
                while True:
                    f.write(b"\0" * chunk)
                    f.flush()
        before = snapshot(run_dir)
        err = fails(capsys, ["acquire", str(recipe), "--quiet", "--cycles", "2"], str(run_dir), "no space")
        assert "free disk space" in err
        after = snapshot(run_dir)
        assert after == before, "a full disk changed the run"
        assert not list(run_dir.rglob(".*.tmp")), "a temp file was left on the full disk"
        filler.unlink()
        (disk / "filler2").unlink()
        assert main(["acquire", str(recipe), "--quiet", "--cycles", "2"]) == 0
        assert PoolState.load(run_dir / "state.json").cycle == 2


def test_read_only_run_directory(finished_copy, capsys):
    _, recipe, run_dir = finished_copy
    with mounted(["mount", "--bind", str(run_dir), str(run_dir)],
                 ["mount", "-o", "remount,bind,ro", str(run_dir)], undo=["umount", "-l", str(run_dir)]):
        fails_unchanged(capsys, run_dir, ["acquire", str(recipe), "--quiet", "--cycles", "2"], str(run_dir),
                        "Read-only", "writable")
    assert main(["acquire", str(recipe), "--quiet", "--cycles", "2"]) == 0  # once writable again


@pytest.mark.parametrize("damage", ["nested", "not-utf8"])
def test_state_too_deeply_nested_or_not_text(finished_copy, capsys, damage):
    _, recipe, run_dir = finished_copy
    path = run_dir / "state.json"
    good = path.read_bytes()
    path.write_bytes(b"[" * 200_000 + b"]" * 200_000 if damage == "nested" else b"\xff\xfe{\x00")
    fails_unchanged(capsys, run_dir, ["acquire", str(recipe), "--quiet", "--cycles", "2"], str(path), "not valid JSON")
    path.write_bytes(good)
    assert main(["acquire", str(recipe), "--quiet", "--cycles", "2"]) == 0


def test_metrics_too_deeply_nested(finished_copy, capsys):
    _, recipe, run_dir = finished_copy
    path = run_dir / "cycles" / "0" / "metrics.json"
    path.write_bytes(b"{\"a\":" * 100_000 + b"1" + b"}" * 100_000)
    fails_unchanged(capsys, run_dir, ["acquire", str(recipe), "--quiet"], str(path), "JSON")


# ---------------------------------------------------------------------------------------- a run edited between runs
def test_strategy_changed_between_runs_is_refused(finished_copy, capsys):
    _, recipe, run_dir = finished_copy
    fails_unchanged(capsys, run_dir, ["acquire", str(recipe), "--quiet", "--strategy", "entropy"], "active.strategy")


def test_deleted_checkpoint_is_retrained_to_the_same_result(finished_copy, tmp_path, capsys):
    _, recipe, run_dir = finished_copy
    intact = tmp_path / "intact"
    shutil.copytree(run_dir, intact)
    stored = yaml.safe_load((intact / "recipe.yaml").read_text())
    stored["output_dir"] = str(intact)
    (intact / "recipe.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    intact_recipe = tmp_path / "intact.yaml"
    intact_recipe.write_text(yaml.safe_dump(stored, sort_keys=False))
    (run_dir / "cycles" / "1" / "task.pt").unlink()  # the network the next acquisition scores with
    assert main(["acquire", str(recipe), "--quiet", "--cycles", "2"]) == 0
    assert main(["acquire", str(intact_recipe), "--quiet", "--cycles", "2"]) == 0
    for name in ("cycles/1/queries.json", "cycles/2/metrics.json"):
        ours, theirs = (json.loads((d / name).read_text()) for d in (run_dir, intact))
        for key in ("seconds", "cpu_seconds", "eval_seconds", "train_seconds", "eval_cpu_seconds", "train_cpu_seconds"):
            ours.pop(key, None), theirs.pop(key, None)
        assert ours == theirs, name


def test_run_recipe_damaged_by_hand(finished_copy, capsys):
    _, recipe, run_dir = finished_copy
    stored = run_dir / "recipe.yaml"
    good = stored.read_bytes()
    stored.write_bytes(good + b"train: [unclosed\n")
    fails_unchanged(capsys, run_dir, ["acquire", str(recipe), "--quiet", "--cycles", "2"], str(stored), "YAML")
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(stored), "YAML")
    stored.write_bytes(good)
    assert main(["acquire", str(recipe), "--quiet", "--cycles", "2"]) == 0


def test_deleted_checkpoint_of_a_run_awaiting_labels(human_run, tmp_path, capsys):
    """`segal export` needs the cycle's network; `segal acquire` trains it again, to the same weights."""
    recipe, run_dir = human_run()
    assert main(["export", str(run_dir), "--format", "png", "--out", str(tmp_path / "before")]) == 0
    ckpt = run_dir / "cycles" / "0" / "task.pt"
    ckpt.unlink()
    out = tmp_path / "after"
    fails_unchanged(capsys, run_dir, ["export", str(run_dir), "--format", "png", "--out", str(out)], str(ckpt),
                    "segal acquire")
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    assert main(["export", str(run_dir), "--format", "png", "--out", str(out)]) == 0
    for mask in (tmp_path / "before" / "masks").iterdir():
        assert (out / "masks" / mask.name).read_bytes() == mask.read_bytes(), mask.name


def test_re_export_of_the_same_batch_keeps_the_annotations(human_run, tmp_path, capsys):
    _, run_dir = human_run()
    out = tmp_path / "export"
    assert main(["export", str(run_dir), "--format", "png", "--out", str(out)]) == 0
    annotate(out, run_dir)  # annotated in place, not imported yet
    work = snapshot(out)
    fails_unchanged(capsys, run_dir, ["export", str(run_dir), "--format", "png", "--out", str(out)], str(out),
                    "this batch", "segal import")
    assert snapshot(out) == work, "a re-export overwrote the annotators' work"
