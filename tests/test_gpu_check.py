"""tools/gpu_check.py keeps working without a GPU: its --cpu version runs every check and writes the table."""

from __future__ import annotations

import json

import pytest
import torch

from tests.tool_loader import load_tool

CHECKS = ["amp", "channels_last", "torchrun", "vaal@64", "vaal@128", "vaal vs authors@32", "drn_d_22@64",
          "cityscapes loop"]


def _run(tmp_path, *extra) -> dict:
    out = tmp_path / "gpu.json"
    assert load_tool("gpu_check").main(["--cpu", "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_cpu_version_passes_every_check_but_torchrun(tmp_path):
    result = _run(tmp_path, "--skip", "torchrun")
    rows = {r["check"]: r for r in result["rows"]}
    assert list(rows) == [c for c in CHECKS if c != "torchrun"]
    assert all(r["ok"] for r in rows.values())
    assert rows["amp"]["detail"].startswith("autocast bfloat16")  # segal's CPU autocast dtype
    assert "3 cycles" in rows["cityscapes loop"]["detail"]  # the initial set and two acquisitions, evaluated
    assert all(rows[c]["images_per_s"] > 0 for c in ("vaal@64", "vaal@128", "drn_d_22@64"))


@pytest.mark.slow
def test_cpu_version_with_torchrun(tmp_path):
    rows = {r["check"]: r for r in _run(tmp_path, "--skip", "cityscapes loop")["rows"]}
    assert rows["torchrun"]["ok"] and rows["torchrun"]["detail"] == "backend gloo, world 1"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_without_a_gpu_it_says_so_and_exits_2(capsys):
    assert load_tool("gpu_check").main([]) == 2
    assert "--cpu" in capsys.readouterr().out
