"""Start a test's worker processes (torchrun ranks) so that a hang fails the test with the workers' output.

``subprocess.run(timeout=...)`` kills only the process it started: torchrun's ranks run in sessions of
their own and would outlive it, still holding their cores, while the test shows no output at all.
:func:`run_workers` kills every descendant and fails with what they printed.  The ranks also get a
short process-group timeout (``SEGAL_DIST_TIMEOUT``), so that ranks waiting in different
collectives end with gloo's timeout error, long before the test's own limit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLLECTIVE_TIMEOUT_S = 120  # one collective's wait: far above a loaded machine's skew between ranks (seconds)
TEST_TIMEOUT_S = 900


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of a test's workers: the project importable, one thread each, a short group timeout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "SEGAL_DIST_TIMEOUT": str(COLLECTIVE_TIMEOUT_S)}
    return env | extra


def torchrun_command(*args: str, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]


def _descendants(pid: int) -> list[int]:
    """Every living process below ``pid`` (Linux /proc; elsewhere none are found)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_workers(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = TEST_TIMEOUT_S,
                cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ``cmd`` to completion; past ``timeout`` seconds kill it and all its descendants and fail the test."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env or worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        doomed = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)  # torchrun forwards it to its ranks and reports them
        time.sleep(5)
        for pid in [proc.pid, *doomed]:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])} ... still running after {timeout:.0f} s: killed it and its "
                    f"{len(doomed)} worker processes.\n--- stdout ---\n{out[-3000:]}\n--- stderr ---\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def failure_report(result: subprocess.CompletedProcess, lines: int = 40) -> str:
    """What the ranks raised (torchrun prefixes their lines with ``[rankN]:``), then the end of stderr."""
    ranks = [line for line in result.stderr.splitlines() if line.startswith("[rank")]
    return "\n".join(ranks[-lines:]) + "\n--- end of stderr ---\n" + result.stderr[-2000:]
