"""Kill a real `segal acquire` process mid-run with SIGKILL, re-run it, and compare with an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from segal.pool import PoolState
from tests.tiny import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = "import sys, tests.tiny; from segal.cli import main; sys.exit(main(sys.argv[1:]))"


def acquire(recipe: Path, wait: bool = True):
    cmd = [sys.executable, "-c", LAUNCH, "acquire", str(recipe), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if wait:
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def write_recipe(tmp_path: Path, name: str) -> Path:
    data = tiny_recipe(tmp_path / name)
    data["train"]["steps"] = 12
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def events(run_dir: Path) -> list[str]:
    log = run_dir / "log.jsonl"
    if not log.exists():
        return []
    return [json.loads(line)["event"] for line in log.read_text().splitlines() if line.strip()]


def test_sigkill_during_run_then_resume_matches_uninterrupted(tmp_path):
    ref = acquire(write_recipe(tmp_path, "ref"))
    assert ref.returncode == 0, ref.stderr
    ref_state = PoolState.load(tmp_path / "ref" / "run" / "state.json")

    recipe = write_recipe(tmp_path, "killed")
    run_dir = tmp_path / "killed" / "run"
    kills = 0
    # Kill after successive milestones: mid-training of cycle 0, after an acquisition, mid-training of cycle 1.
    for milestone in ("start", "acquired", "labeled"):
        proc = acquire(recipe, wait=False)
        deadline = time.time() + 300
        while milestone not in events(run_dir) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # land somewhere inside the next step
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        state = PoolState.load(run_dir / "state.json")  # never torn
        labeled = state.labeled_indices()
        assert len(set(labeled.tolist())) == len(labeled)
    done = acquire(recipe)
    assert done.returncode == 0, done.stderr
    assert kills >= 1
    final = PoolState.load(run_dir / "state.json")
    assert final.stage == "done"
    assert final.labeled == ref_state.labeled
    assert "resume" in events(run_dir)
