"""Smoke test of tools/bench_acquisition.py: a --quick run on a 200-image pool fills every section,
segal's VAAL scores equal the bare forward pass's, and every registered strategy picks a valid batch."""

from __future__ import annotations

import json

import torch

from segal.strategies import STRATEGIES
from tests.tool_loader import load_tool


def test_quick_run_writes_every_section(tmp_path):
    bench = load_tool("bench_acquisition")
    threads = 2  # not the tool's 1 (nor conftest's), so that a leak would show
    torch.set_num_threads(threads)
    out = tmp_path / "bench.json"
    result = bench.main(["--quick", "--pool", "200", "--out", str(out)])
    assert torch.get_num_threads() == threads  # --threads 1 does not leak into the caller

    saved = json.loads(out.read_text())
    assert set(saved) == {"settings", "scoring", "training", "selection"}
    assert saved["settings"]["pool"] == 200 and saved["settings"]["unlabeled"] == 180
    assert saved["settings"]["budget"] == 10 and saved["settings"]["threads"] == 1

    scoring = saved["scoring"]
    paths = {"segal", "naive", "authors", "floor", "floor + loader", "loader"}
    assert set(scoring["seconds"]) == paths and all(t > 0 for t in scoring["seconds"].values())
    assert scoring["images"] == 180
    # the ratios are the times' quotients, not separately computed numbers
    assert abs(scoring["segal_over_floor"] - scoring["seconds"]["segal"] / scoring["seconds"]["floor"]) < 1e-9
    assert abs(scoring["naive_over_segal"] - scoring["seconds"]["naive"] / scoring["seconds"]["segal"]) < 1e-9
    # segal's streamed eval-mode scores are exactly what the bare encoder + discriminator compute
    assert scoring["segal_vs_floor_max_abs_diff"] < 1e-6

    training = saved["training"]
    assert set(training["seconds"]) == {"segal (fixed)", "segal (paper)", "naive (authors' solver)"}
    assert training["steps"] == 3
    assert all(abs(ips - 3 / training["seconds"][k]) < 1e-6 for k, ips in training["iterations_per_s"].items())

    selection = saved["selection"]
    assert set(selection) == set(STRATEGIES.names())
    assert all(row["valid"] and row["seconds"] > 0 for row in selection.values())
    assert selection["mc_dropout"]["params"]["T"] == 2 and selection["qbc"]["params"]["M"] == 2
    assert selection["vaal"]["params"]["steps"] == 3
    assert result["selection"].keys() == selection.keys()
