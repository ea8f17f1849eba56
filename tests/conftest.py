"""Shared fixtures: the real data beside the project, skipped cleanly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
