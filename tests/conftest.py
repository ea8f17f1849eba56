"""Shared fixtures: one compute thread per test process, and the real data beside the project.

Every number a test asserts was measured with one intra-op thread: float sums are ordered by the
thread count, so two threads give other (equally valid) results, and on a shared machine N threads
per process only oversubscribe the cores.  The environment is pinned here, at import, before any
test loads torch, so that this process and every subprocess a test starts (``{**os.environ, ...}``:
torchrun ranks, CLI runs, crash workers) read ``OMP_NUM_THREADS=1`` whatever the caller's shell
says; :func:`one_compute_thread` puts the count back after a test that changed it (``--threads``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from segal.threads import child_environment

TEST_THREADS = 1
os.environ.update(child_environment(TEST_THREADS))  # OMP_NUM_THREADS and MKL_NUM_THREADS, for us and children


@pytest.fixture(autouse=True)
def one_compute_thread():
    """Each test starts with :data:`TEST_THREADS` torch and OpenCV threads (a CLI test may have raised them)."""
    _pin_threads()
    yield


def _pin_threads() -> None:
    torch = sys.modules.get("torch")  # not imported here: tests that never need torch stay light
    if torch is not None and torch.get_num_threads() != TEST_THREADS:
        torch.set_num_threads(TEST_THREADS)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and cv2.getNumThreads() != TEST_THREADS:
        cv2.setNumThreads(TEST_THREADS)


SHARED_DATA = Path(os.environ.get("SEGAL_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set SEGAL_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def camvid_root(shared_data: Path) -> Path:
    root = shared_data / "camvid"
    if not (root / "train").is_dir():
        pytest.skip(f"CamVid not found at {root}")
    return root


@pytest.fixture(scope="session")
def cifar_jpg_root(shared_data: Path) -> Path:
    root = shared_data / "cifar10-jpg"
    if not (root / "train").is_dir():
        pytest.skip(f"cifar10-jpg not found at {root}")
    return root
