"""TensorBoard tracking (segal.tracking): the event files, read back with TensorBoard's own reader,
hold the run's own numbers, once per step, after a kill and a resume too, and change no result."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.config import recipe_from_dict
from segal.errors import UserError
from segal.loop import ActiveLoop
from segal.runs import start_run
from segal.tracking import query_panel
from tests.tiny import tiny_recipe

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = "import sys, tests.tiny; from segal.cli import main; sys.exit(main(sys.argv[1:]))"
VAAL = {"image_size": 16, "z_dim": 8, "width": 8, "batch_size": 8, "steps": 3}
RESULT_FILES = ("metrics.json", "queries.json", "train.json")
TIMINGS = {"seconds", "eval_seconds", "train_seconds", "cpu_seconds", "eval_cpu_seconds", "train_cpu_seconds"}  # wall-clock: the only fields two runs may differ in


def recipe(tmp_path: Path, name: str, tensorboard: bool) -> dict:
    data = tiny_recipe(tmp_path / name, strategy="vaal", strategy_params=VAAL, cycles=1)
    data["log"] = {"tensorboard": tensorboard}
    return data


def run_in_process(tmp_path: Path, name: str, tensorboard: bool) -> Path:
    run = start_run(recipe_from_dict(recipe(tmp_path, name, tensorboard)), "<test>")
    try:
        ActiveLoop(run).run_loop()
    finally:
        run.close()
    return run.dir


def results(run_dir: Path) -> dict:
    """The run's result files without wall-clock timings."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in TIMINGS}
        return obj
    return {str(p.relative_to(run_dir)): strip(json.loads(p.read_text()))
            for name in RESULT_FILES for p in sorted(run_dir.glob(f"cycles/*/{name}"))}


def read_events(logdir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    acc.Reload()
    return acc


def series(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def f32(x: float) -> float:
    """A scalar event stores a float32."""
    return float(np.float32(x))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tracking")
    return run_in_process(tmp, "tracked", True), run_in_process(tmp, "plain", False)


def check_cycles_run(run_dir: Path) -> EventAccumulator:
    """Every per-cycle tag holds one value per cycle, equal to the run's own files."""
    acc = read_events(run_dir / "tensorboard" / "cycles")
    tags = acc.Tags()
    for tag in tags["scalars"]:
        steps = [s for s, _ in series(acc, tag)]
        assert steps == sorted(set(steps)), f"{tag}: steps {steps} repeat or go back"
    for k in (0, 1):
        m = json.loads((run_dir / f"cycles/{k}/metrics.json").read_text())
        assert (k, f32(m["miou"])) in series(acc, "eval/miou")
        assert (k, f32(m["pixel_accuracy"])) in series(acc, "eval/pixel_accuracy")
        assert (k, f32(m["labeled"])) in series(acc, "pool/labeled")
        for name, iou in m["per_class_iou"].items():
            if iou is not None:
                assert (k, f32(iou)) in series(acc, f"iou/{name}")
        t = json.loads((run_dir / f"cycles/{k}/train.json").read_text())
        assert (k, f32(t["final_loss"])) in series(acc, "train/final_loss")
    assert [s for s, _ in series(acc, "eval/miou")] == [0, 1]
    q = json.loads((run_dir / "cycles/0/queries.json").read_text())
    d = q["diagnostics"]
    assert series(acc, "vaal/auroc") == [(0, f32(d["auroc"]))]
    assert series(acc, "vaal/auroc_ci_low") == [(0, f32(d["auroc_ci"][0]))]
    assert series(acc, "vaal/auroc_ci_high") == [(0, f32(d["auroc_ci"][1]))]
    for loss in ("vae", "disc", "recon_kl"):
        assert series(acc, f"vaal/final_{loss}_loss") == [(0, f32(d[f"final_{loss}_loss"]))]
    for cls, share in d["class_histogram"].items():
        assert series(acc, f"acquired/{cls}") == [(0, f32(share))]
    (hist,) = acc.Histograms("acquired/classes")
    assert hist.step == 0 and list(hist.histogram_value.bucket) == pytest.approx(list(d["class_histogram"].values()))
    (scores,) = acc.Histograms("vaal/pool_scores")
    assert list(scores.histogram_value.bucket) == d["pool_score_histogram"]["counts"]
    assert sorted(tags["images"]) == [f"queries/{k}" for k in range(4)]
    return acc


def test_event_files_hold_the_runs_numbers_and_query_images(runs):
    tracked, _ = runs
    acc = check_cycles_run(tracked)
    q = json.loads((tracked / "cycles/0/queries.json").read_text())
    pool = tests.tiny.TinySeg(40, salt=0)
    from PIL import Image

    for k in range(4):
        (event,) = acc.Images(f"queries/{k}")
        panel = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
        image = pool.load_image(q["indices"][k])
        assert event.step == 0 and panel.shape == (32, 64, 3)  # the image | its coloured prediction
        assert np.array_equal(panel[:, :32], image)
        assert not np.array_equal(panel[:, 32:], image)  # the overlay tints every (non-ignored) pixel
    # train.steps 4, batch 4: 8 labeled images make epochs of 2 steps, 12 of 3 (so the last has 1)
    for k, last_epoch in ((0, [3, 4]), (1, [4])):
        losses = dict(series(read_events(tracked / "tensorboard" / "train" / f"cycle_{k}"), "train/loss"))
        assert list(losses) == [1, 2, 3, 4]
        final = json.loads((tracked / f"cycles/{k}/train.json").read_text())["final_loss"]
        assert np.mean([losses[s] for s in last_epoch]) == pytest.approx(final, rel=1e-6)  # its mean of float32s


def test_tracking_changes_no_result(runs):
    tracked, plain = runs
    assert results(tracked) == results(plain)
    assert not (plain / "tensorboard").exists()


def acquire(recipe_path: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SEGAL_CRASH_AT", None)
    if crash_at:
        env["SEGAL_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-c", LAUNCH, "acquire", str(recipe_path), "--quiet", "--tensorboard"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_kill_and_resume_write_each_step_once(runs, tmp_path):
    """SIGKILL mid-training (after the first epoch's checkpoint) and mid-VAAL (after the cycle's
    evaluation was logged), resume each time: the events equal an uninterrupted run's."""
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(recipe(tmp_path, "killed", False)))  # --tensorboard turns it on
    for crash in ("train.step:3", "vaal.step:2"):
        killed = acquire(path, crash)
        assert killed.returncode == -9, killed.stderr
    done = acquire(path)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "killed" / "run"
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["log"]["tensorboard"] is True
    assert len(list((run_dir / "tensorboard" / "cycles").glob("events.*"))) == 2  # two sessions wrote cycle 0
    check_cycles_run(run_dir)
    tracked, _ = runs
    assert results(run_dir) == results(tracked)
    for k in (0, 1):
        resumed = series(read_events(run_dir / "tensorboard" / "train" / f"cycle_{k}"), "train/loss")
        reference = series(read_events(tracked / "tensorboard" / "train" / f"cycle_{k}"), "train/loss")
        assert resumed == reference  # steps 1–4 once each, the same losses


def test_query_panel_blends_class_colours_and_leaves_ignored_pixels():
    image = np.full((2, 2, 3), 100, np.uint8)
    mask = np.array([[1, 0], [255, 1]], np.uint8)
    panel = query_panel(image, mask, [(0, 0, 0), (255, 0, 0)])
    assert panel.shape == (2, 4, 3) and np.array_equal(panel[:, :2], image)
    assert panel[0, 2].tolist() == [178, 50, 50]  # (100 + 255) / 2 rounds to even 178; (100 + 0) / 2
    assert panel[0, 3].tolist() == [50, 50, 50]
    assert panel[1, 2].tolist() == [100, 100, 100]  # 255 = ignore: the image itself
    big = query_panel(np.zeros((512, 300, 3), np.uint8), np.zeros((512, 300), np.uint8), [(0, 0, 0)])
    assert big.shape == (218, 256, 3)  # 512 × 600 scaled by 256 / 600 (its longer side): 218.5 × 256


def test_missing_tensorboard_fails_before_anything_is_written(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(UserError, match="tensorboard package is not installed") as err:
        start_run(recipe_from_dict(recipe(tmp_path, "r", True)), "recipe.yaml")
    assert "segal-vaal[tensorboard]" in str(err.value)
    assert not (tmp_path / "r").exists()


def test_log_tensorboard_is_a_typed_recipe_key(tmp_path):
    data = recipe(tmp_path, "r", True)
    data["log"] = {"tensorboard": "yes"}
    with pytest.raises(UserError, match="log.tensorboard"):
        recipe_from_dict(data)
    data["log"] = {"tensorbord": True}
    with pytest.raises(UserError, match="unknown key 'log.tensorbord'"):
        recipe_from_dict(data)


def test_a_run_without_tracking_never_imports_tensorboard():
    code = ("import sys, tests.tiny, segal.cli, segal.loop, segal.engine, segal.tracking; "
            "sys.exit(any(m.split('.')[0] == 'tensorboard' or m == 'torch.utils.tensorboard' for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0
