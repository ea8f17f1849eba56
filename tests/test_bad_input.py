"""Bad input, one test each, through the CLI: one clear line naming the file and the fix, exit code 2,
and nothing written or lost.

"Nothing lost" is checked byte for byte: every file of the run (except the append-only log.jsonl)
is hashed before the command and must be unchanged after it.  A fresh run that fails before
anything exists must leave no run directory; one that fails mid-way must resume, once the input is
fixed, without redoing finished work.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from segal.cli import main
from tests.tiny import TinySeg

CLASSES = "bg 0 0 0\nsquare 255 0 0\nbar 0 255 0\n"


def make_folder_dataset(root: Path, n_train: int = 24, n_test: int = 6) -> Path:
    """The ``folder`` layout (images/SPLIT, masks/SPLIT, classes.txt) filled with tiny-seg scenes."""
    for split, n, salt in (("train", n_train, 0), ("test", n_test, 1)):
        data = TinySeg(n, salt=salt)
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / "images" / split / f"{split}{i:03d}.png"), data.load_image(i)[..., ::-1])
            cv2.imwrite(str(root / "masks" / split / f"{split}{i:03d}.png"), data.load_target(i))
    (root / "classes.txt").write_text(CLASSES)
    return root


def recipe_dict(data_root: Path, run_dir: Path) -> dict:
    return {
        "name": "bad-input", "seed": 0, "device": "cpu", "output_dir": str(run_dir),
        "data": {"dataset": "folder", "root": str(data_root), "train_split": "train", "test_split": "test",
                 "image_size": [32, 32]},
        "model": {"name": "deeplabv3plus", "encoder": "resnet18"},
        "train": {"steps": 2, "batch_size": 4, "eval_batch_size": 8, "amp": "off"},
        "active": {"initial": 8, "budget": 4, "cycles": 1, "strategy": "random"},
    }


@pytest.fixture
def setup(tmp_path):
    data = make_folder_dataset(tmp_path / "data")
    run_dir = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(data, run_dir)))
    return data, recipe, run_dir


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run (cycles 0 and 1), copied per test so that tests may damage it."""
    base = tmp_path_factory.mktemp("finished")
    data = make_folder_dataset(base / "data")
    recipe = base / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(data, base / "run")))
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    return base


@pytest.fixture
def finished_copy(finished, tmp_path):
    import shutil

    shutil.copytree(finished / "data", tmp_path / "data")
    shutil.copytree(finished / "run", tmp_path / "run")
    stored = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    stored["data"]["root"], stored["output_dir"] = str(tmp_path / "data"), str(tmp_path / "run")
    (tmp_path / "run" / "recipe.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(tmp_path / "data", tmp_path / "run")))
    return tmp_path / "data", recipe, tmp_path / "run"


def snapshot(run_dir: Path) -> dict[str, str]:
    if not run_dir.exists():
        return {}
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != "log.jsonl"}


def fails(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI; it must exit 2 with exactly one line holding every needle and a fix."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:") and "fix:" in err, err
    for needle in needles:
        assert needle in err, err
    return err


def fails_unchanged(capsys, run_dir: Path, argv: list[str], *needles: str) -> None:
    before = snapshot(run_dir)
    log = (run_dir / "log.jsonl").read_text() if (run_dir / "log.jsonl").exists() else ""
    fails(capsys, argv, *needles)
    assert snapshot(run_dir) == before, "a failed command changed the run"
    if log:
        assert (run_dir / "log.jsonl").read_text().startswith(log), "the log lost lines"


def trained_cycles(run_dir: Path) -> list[int]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [json.loads(line)["cycle"] for line in lines if json.loads(line)["event"] == "trained"]


# ---------------------------------------------------------------------------------------- image files
def test_corrupt_image(finished_copy, capsys):
    data, _, run_dir = finished_copy
    victim = data / "images" / "test" / "test003.png"
    victim.write_bytes(b"this is not an image" * 10)
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(victim), "cannot decode image")


def test_truncated_image_mid_run_then_resume(setup, capsys):
    data, recipe, run_dir = setup
    victim = data / "images" / "test" / "test002.png"
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])
    # cycle 0 trains, then evaluation meets the truncated file
    fails(capsys, ["acquire", str(recipe), "--quiet"], str(victim), "corrupt or truncated")
    assert trained_cycles(run_dir) == [0]
    victim.write_bytes(good)
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    assert trained_cycles(run_dir) == [0, 1]  # cycle 0's training was kept, not redone


# ---------------------------------------------------------------------------------------- masks
def test_mask_of_the_wrong_size(finished_copy, capsys):
    data, _, run_dir = finished_copy
    victim = data / "masks" / "test" / "test001.png"
    cv2.imwrite(str(victim), np.zeros((20, 20), np.uint8))
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(victim), "20")


def test_mask_values_outside_the_class_set(finished_copy, capsys):
    data, _, run_dir = finished_copy
    victim = data / "masks" / "test" / "test004.png"
    mask = cv2.imread(str(victim), cv2.IMREAD_UNCHANGED)
    mask[0, 0] = 7  # 3 classes: ids 0..2 and 255 (ignore) only
    cv2.imwrite(str(victim), mask)
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(victim), "7")


# ---------------------------------------------------------------------------------------- data and budget
def test_empty_split(setup, capsys):
    data, recipe, run_dir = setup
    for p in (data / "images" / "train").iterdir():
        p.unlink()
    fails(capsys, ["acquire", str(recipe), "--quiet"], "images/train", "no images")
    assert not run_dir.exists()


def test_missing_data_root(setup, capsys, tmp_path):
    _, recipe, run_dir = setup
    missing = tmp_path / "nowhere"
    fails(capsys, ["acquire", str(recipe), "--quiet", "--data-root", str(missing)], str(missing))
    assert not run_dir.exists()


def test_budget_larger_than_the_pool(setup, capsys):
    _, recipe, run_dir = setup
    data = yaml.safe_load(recipe.read_text())
    data["active"].update(initial=8, budget=20, cycles=2)  # 8 + 20 + 20 > 24 images
    recipe.write_text(yaml.safe_dump(data))
    fails(capsys, ["acquire", str(recipe), "--quiet"], str(recipe), "24")
    assert not run_dir.exists()


# ---------------------------------------------------------------------------------------- recipes
@pytest.mark.parametrize(("edit", "needles"), [
    (lambda r: r["train"].update(stpes=5), ("train.stpes",)),
    (lambda r: r["train"].update(steps="many"), ("train.steps",)),
    (lambda r: r["active"].update(initial=[1, 2]), ("active.initial",)),
], ids=["unknown-key", "wrong-type", "wrong-type-list"])
def test_recipe_with_unknown_keys_or_wrong_types(setup, capsys, edit, needles):
    _, recipe, run_dir = setup
    data = yaml.safe_load(recipe.read_text())
    edit(data)
    recipe.write_text(yaml.safe_dump(data))
    fails(capsys, ["acquire", str(recipe), "--quiet"], str(recipe), *needles)
    assert not run_dir.exists()


def test_malformed_yaml(setup, capsys):
    _, recipe, run_dir = setup
    recipe.write_text(recipe.read_text() + "train: [unclosed\n")
    fails(capsys, ["acquire", str(recipe), "--quiet"], str(recipe), "YAML")
    assert not run_dir.exists()


# ---------------------------------------------------------------------------------------- run state
@pytest.mark.parametrize("damage", ["duplicate", "out-of-range", "pending-overlap", "truncated"])
def test_state_edited_by_hand_into_inconsistency(finished_copy, capsys, damage):
    _, recipe, run_dir = finished_copy
    path = run_dir / "state.json"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    else:
        state = json.loads(path.read_text())
        first = next(iter(state["labeled"].values()))
        if damage == "duplicate":
            state["labeled"]["1"] = state["labeled"]["1"] + [first[0]]
        elif damage == "out-of-range":
            first.append(10_000)
        else:
            state["pending"] = [first[0]]
        path.write_text(json.dumps(state))
    fails_unchanged(capsys, run_dir, ["acquire", str(recipe), "--quiet", "--cycles", "2"], str(path))


def test_checkpoint_from_another_model(finished_copy, capsys):
    _, _, run_dir = finished_copy
    ckpt = run_dir / "cycles" / "0" / "task.pt"
    foreign = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 3, 1))
    torch.save({"model": foreign.state_dict()}, ckpt)
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(ckpt))


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(_Exploit.marker),))


def test_checkpoint_is_never_unpickled(finished_copy, capsys, tmp_path):
    _, _, run_dir = finished_copy
    ckpt = run_dir / "cycles" / "0" / "task.pt"
    _Exploit.marker = str(tmp_path / "pwned")
    with open(ckpt, "wb") as f:
        pickle.dump({"model": _Exploit()}, f)
    torch.save({"model": _Exploit()}, tmp_path / "also.pt")
    ckpt.write_bytes((tmp_path / "also.pt").read_bytes())
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir)], str(ckpt))
    assert not (tmp_path / "pwned").exists(), "loading a checkpoint ran code from it"


# ---------------------------------------------------------------------------------------- recipe values (before any write)
def _edit(recipe: Path, section: str | None, key: str, value) -> None:
    data = yaml.safe_load(recipe.read_text())
    (data[section] if section else data)[key] = value
    if key == "final":
        data["active"]["cycles"] = None  # `cycles` overrides `final`
    recipe.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(("section", "key", "value", "needles"), [
    ("train", "lr", float("nan"), ("train.lr", "finite")),  # NaN slips past `lr <= 0`
    ("train", "lr", float("inf"), ("train.lr", "finite")),
    ("train", "lr", -0.01, ("train.lr", "> 0")),
    ("train", "weight_decay", -1e-4, ("train.weight_decay",)),
    ("train", "weight_decay", float("nan"), ("train.weight_decay", "finite")),
    ("train", "momentum", 1.5, ("train.momentum", "[0, 1)")),
    ("train", "momentum", float("-inf"), ("train.momentum", "finite")),
    ("train", "batch_size", 0, ("train.batch_size",)),
    ("train", "batch_size", -4, ("train.batch_size",)),
    (None, "seed", -1, ("'seed'",)),
    ("train", "amp", "maybe", ("train.amp",)),
    ("active", "final", 1.5, ("active.final", "1.0 = the whole pool")),
    ("active", "final", 4, ("active.final", "below active.initial")),
    ("data", "image_size", [30, 44], ("data.image_size", "multiples of 16", "[16, 32] or [32, 48]")),
    ("model", "encoder", "resnet19", ("resnet19", "resnet18")),
    ("model", "options", {"bogus": 1}, ("model.options", "bogus")),
], ids=["lr-nan", "lr-inf", "lr-negative", "weight-decay-negative", "weight-decay-nan", "momentum-above-1",
        "momentum-minus-inf", "batch-size-zero", "batch-size-negative", "seed-negative", "amp-unknown",
        "final-fraction-above-1", "final-below-initial", "image-size-off-stride", "encoder-unknown",
        "model-option-unknown"])
def test_recipe_value_refused_before_the_run_exists(setup, capsys, section, key, value, needles):
    _, recipe, run_dir = setup
    _edit(recipe, section, key, value)
    fails(capsys, ["acquire", str(recipe), "--quiet"], str(recipe), *needles)
    assert not run_dir.exists(), "a refused recipe left a run directory (the fixed one would be 'a different experiment')"


def test_corrected_encoder_is_not_a_different_experiment(setup, capsys):
    _, recipe, run_dir = setup
    _edit(recipe, "model", "encoder", "resnet19")
    fails(capsys, ["acquire", str(recipe), "--quiet"], "resnet19")
    _edit(recipe, "model", "encoder", "resnet18")
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    assert trained_cycles(run_dir) == [0, 1]


# ---------------------------------------------------------------------------------------- recipe files
def _bomb() -> str:
    lines, prev = ['    a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'], "a"
    for name in "bcdefghi":  # 9 levels of 9 references: 9^9 ≈ 4·10^8 strings once expanded
        lines.append(f"    {name}: &{name} [{', '.join(['*' + prev] * 9)}]")
        prev = name
    return "model:\n  options:\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(("content", "needles"), [
    (lambda text: text + "train:\n  lr: 0.5\n", ("'train' is written twice", "line")),
    (lambda text: _bomb(), ("expands to more than",)),
    (lambda text: text.replace("bad-input", "caf\xe9").encode("latin-1"), ("not UTF-8",)),
    (lambda text: "", ("empty",)),
    (lambda text: "# only a comment\n", ("empty",)),
    (lambda text: "model:\n  options:\n    deep: " + "[" * 3000 + "]" * 3000 + "\n", ("nested",)),
    (lambda text: "model:\n  options:\n    deep: " + "[" * 60 + "]" * 60 + "\n", ("nested deeper than",)),
], ids=["duplicate-key", "alias-bomb", "not-utf8", "empty", "comment-only", "nested-3000", "nested-60"])
def test_recipe_file_refused(setup, capsys, content, needles):
    _, recipe, run_dir = setup
    new = content(recipe.read_text())
    recipe.write_bytes(new if isinstance(new, bytes) else new.encode())
    fails(capsys, ["acquire", str(recipe), "--quiet"], str(recipe), *needles)
    assert not run_dir.exists()


def test_recipe_that_is_a_folder(setup, capsys, tmp_path):
    _, _, run_dir = setup
    fails(capsys, ["acquire", str(tmp_path), "--quiet"], str(tmp_path), "is a folder")
    assert not run_dir.exists()


def test_class_list_not_utf8(setup, capsys):
    data, recipe, run_dir = setup
    (data / "classes.txt").write_bytes("bg\ncarr\xe9\nbar\n".encode("latin-1"))
    fails(capsys, ["acquire", str(recipe), "--quiet"], str(data / "classes.txt"), "UTF-8")
    assert not run_dir.exists()


# ---------------------------------------------------------------------------------------- --set and other options
@pytest.mark.parametrize(("flag", "needles"), [
    ("train.lr=.nan", ("--set train.lr", "finite")),
    ("train.steps=many", ("--set train.steps", "'many'")),
    ("active.bogus=1", ("--set active.bogus", "unknown key")),
    ("train.lr.x=1", ("--set train.lr", "single value")),
    ("no-equals-sign", ("KEY=VALUE",)),
    ("active.strategy_params.stepz=5", ("active.strategy_params.stepz",)),
    ("model.options=[1, 2", ("--set model.options", "malformed YAML")),
], ids=["nan", "wrong-type", "unknown-key", "below-a-value", "no-equals", "unknown-strategy-param", "bad-yaml"])
def test_set_override_refused(setup, capsys, flag, needles):
    _, recipe, run_dir = setup
    fails(capsys, ["acquire", str(recipe), "--quiet", "--set", flag], *needles)
    assert not run_dir.exists()


def test_sweep_set_of_a_parameter_no_strategy_has(setup, capsys, tmp_path):
    _, recipe, _ = setup
    out = tmp_path / "sweep"
    fails(capsys, ["sweep", str(recipe), "--strategies", "random,entropy", "--out", str(out), "--quiet",
                   "--set", "active.strategy_params.steps=100"], "--set active.strategy_params.steps", "steps")
    assert not out.exists()


def test_test_split_changed_on_resume(finished_copy, capsys):
    _, recipe, run_dir = finished_copy
    data = yaml.safe_load(recipe.read_text())
    data["data"]["test_split"] = "train"
    recipe.write_text(yaml.safe_dump(data))
    fails_unchanged(capsys, run_dir, ["acquire", str(recipe), "--quiet", "--cycles", "2"],
                    str(recipe), "data.test_split", "'test'", "segal evaluate")


def test_evaluate_on_a_missing_data_root(finished_copy, capsys, tmp_path):
    _, _, run_dir = finished_copy
    fails_unchanged(capsys, run_dir, ["evaluate", str(run_dir), "--data-root", str(tmp_path / "nowhere")],
                    str(tmp_path / "nowhere"), "not found")


def test_select_out_is_a_folder(setup, capsys, tmp_path):
    data, _, _ = setup
    fails(capsys, ["select", str(data / "images" / "train"), "--budget", "2", "--strategy", "random",
                   "--out", str(tmp_path)], str(tmp_path), "--out is a folder")


# ---------------------------------------------------------------------------------------- the file system says no
def test_output_dir_below_a_file(setup, capsys, tmp_path):
    _, recipe, _ = setup
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    fails(capsys, ["acquire", str(recipe), "--quiet", "--output-dir", str(blocker / "run")],
          str(blocker), "a folder was expected")


@pytest.mark.parametrize(("code", "needle"), [
    (13, "permission denied"), (30, "read-only file system"), (28, "no space left"), (21, "is a folder"),
], ids=["EACCES", "EROFS", "ENOSPC", "EISDIR"])
def test_file_system_error_is_one_line(setup, capsys, monkeypatch, code, needle):
    """Permissions and a read-only disk cannot be made real under root; the OSError is what the kernel raises."""
    import segal.runs

    _, recipe, run_dir = setup
    target = run_dir / "recipe.yaml"

    def refuse(*args, **kwargs):
        raise OSError(code, "simulated", str(target))

    monkeypatch.setattr(segal.runs, "write_recipe", refuse)
    fails(capsys, ["acquire", str(recipe), "--quiet"], str(target), needle)
    assert not (run_dir / "state.json").exists()
