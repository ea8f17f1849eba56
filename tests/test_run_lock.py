"""One writer per run directory, with real processes: a second `segal acquire`, `import` or `export`
on a run another process holds stops at once (exit 2, one line naming the holder's PID) without
touching the run, and a holder killed with SIGKILL leaves no lock behind.

The holder is either a real `segal acquire` or a small script that takes the lock the same way
(segal.runlock) and sleeps, which makes the timing deterministic.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.cli import main
from segal.pool import PoolState
from segal.runlock import LOCK_NAME
from tests.tiny import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
LAUNCH = "import sys, tests.tiny; from segal.cli import main; sys.exit(main(sys.argv[1:]))"
# Takes the run's lock, optionally forks a child that outlives it, says so, then sleeps until killed.
HOLDER = """
import os, sys, time
from segal.runlock import lock_run
lock = lock_run(sys.argv[1])
if sys.argv[2] == "fork" and os.fork() == 0:
    time.sleep(600)
    os._exit(0)
print("locked", flush=True)
time.sleep(600)
"""


def start_holder(run_dir: Path, fork: bool = False) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), "fork" if fork else "-"], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def snapshot(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != "log.jsonl"}


def refused(capsys, argv: list[str], pid: int) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert f"PID {pid}" in err and "in use" in err and "fix:" in err, err
    return err


@pytest.fixture
def human_run(tmp_path):
    """A run stopped at its first human-label step (pending ids, a trained cycle-0 network)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tmp_path, oracle="human", cycles=1)))
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    return recipe, tmp_path / "run"


def test_second_writer_is_refused_and_a_killed_holder_leaves_no_lock(human_run, tmp_path, capsys):
    recipe, run_dir = human_run
    assert (run_dir / LOCK_NAME).read_bytes() == b"", "a run at rest keeps an empty lock file"
    leftover = run_dir / ".state.json.abc123.tmp"  # a temp file a live writer may be about to rename
    leftover.write_bytes(b"in flight")
    holder = start_holder(run_dir)
    try:
        before = snapshot(run_dir)
        holder_record = json.loads((run_dir / LOCK_NAME).read_text())
        assert holder_record["pid"] == holder.pid
        refused(capsys, ["acquire", str(recipe), "--quiet"], holder.pid)
        refused(capsys, ["export", str(run_dir), "--format", "png", "--out", str(tmp_path / "out")], holder.pid)
        refused(capsys, ["import", str(run_dir), str(tmp_path / "out")], holder.pid)
        refused(capsys, ["evaluate", str(run_dir)], holder.pid)  # it writes eval_*.json beside checkpoints
        assert snapshot(run_dir) == before, "a refused command changed the run"
        assert leftover.exists(), "a refused acquire deleted the holder's temp file"
        assert not (tmp_path / "out").exists()
    finally:
        kill(holder)
    # the kernel dropped the dead holder's lock: the same commands now work, and the resume tidies up
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    assert not leftover.exists(), "the lock holder's resume removes what a killed writer left"
    assert main(["export", str(run_dir), "--format", "png", "--out", str(tmp_path / "out")]) == 0
    assert (run_dir / LOCK_NAME).read_bytes() == b""


def test_resume_after_the_holder_is_killed(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tmp_path, cycles=1)))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = start_holder(run_dir, fork=True)  # its forked child outlives it and must not keep the lock
    refused(capsys, ["acquire", str(recipe), "--quiet"], holder.pid)
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME], "a refused new run wrote files"
    kill(holder)
    assert main(["acquire", str(recipe), "--quiet"]) == 0  # the stale record names a dead PID: ignored
    assert PoolState.load(run_dir / "state.json").stage == "done"


def test_two_real_acquires(tmp_path, capsys):
    data = tiny_recipe(tmp_path, cycles=1)
    data["train"]["steps"] = 400  # long enough to be running while the second command starts
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-c", LAUNCH, "acquire", str(recipe), "--quiet"], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "state.json").exists():  # the first writer has started cycle 0
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        state = (run_dir / "state.json").read_bytes()
        err = refused(capsys, ["acquire", str(recipe), "--quiet"], first.pid)
        assert "acquire" in err  # the holder's command line
        assert (run_dir / "state.json").read_bytes() == state
        assert first.poll() is None, "the second acquire disturbed the first"
    finally:
        kill(first)
