"""Memory of pool scoring is bounded by the batch, not the pool (tools/bench_scale.py's scorer).

Before scoring kept copies instead of torch views, peak RSS grew by about 250 bytes per scored image
(+45 MB from 20k to 200k ids); now the growth is the scores themselves (16 bytes per id).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bench_scale.py"


def test_scoring_peak_memory_does_not_grow_with_the_pool():
    spec = importlib.util.spec_from_file_location("bench_scale", TOOL)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    small, large = bench.bench_scoring(20_000), bench.bench_scoring(200_000)
    assert small["chosen"] == large["chosen"] == 1000
    growth = large["peak_mb"] - small["peak_mb"]
    assert growth < 20, f"peak RSS grew {growth:.0f} MB from 20k to 200k ids"
