"""tools/sieve_study.py: which pixels each sieve rule drops, and the shares, against hand counts."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tool_loader import load_tool


def test_each_rule_drops_the_pixels_its_threshold_names_and_void_pixels_never_count():
    tool = load_tool("sieve_study")
    # 1×5 pixels, 3 classes: right (confident), wrong (network says its true class at 0.75), right (network
    # disagrees at 0.6), unlabeled (255), labeled but void in the ground truth
    probs = np.array([[0.8, 0.2, 0.6, 0.1, 0.1],
                      [0.1, 0.75, 0.35, 0.8, 0.1],
                      [0.1, 0.05, 0.05, 0.1, 0.8]])[:, None, :]
    label = np.array([[0, 0, 1, 255, 2]])
    truth = np.array([[0, 1, 1, 2, 255]])
    counts = tool.sieve_counts(probs, label, truth, 255)
    assert counts["totals"] == [1, 3]
    assert [counts[f"disagree@{t:g}"] for t in (0.3, 0.5, 0.7, 0.9)] == [[1, 1], [1, 1], [1, 0], [0, 0]]
    assert [counts[f"lowp@{t:g}"] for t in (0.05, 0.1, 0.2, 0.3)] == [[0, 0], [0, 0], [0, 0], [1, 0]]
    shares = tool.summarise(counts)
    assert shares["noise"] == pytest.approx(1 / 3)
    assert shares["disagree@0.5"] == {"wrong_dropped": 1.0, "right_dropped": 0.5, "noise_after": 0.0}
    assert shares["lowp@0.1"] == {"wrong_dropped": 0.0, "right_dropped": 0.0, "noise_after": pytest.approx(1 / 3)}
    with pytest.raises(ValueError, match="unknown rule"):
        tool.drop_mask("median", 0.5, probs, np.zeros((1, 5), dtype=np.int64))


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    tool = load_tool("sieve_study")
    out = tmp_path / "sieve.json"
    assert tool.main([str(tmp_path / "no-run"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-run" in err and "fix:" in err
    assert tool.main([str(tmp_path / "no-run"), "--out", str(tmp_path)]) == 2  # a folder as --out
    assert "--out is a folder" in capsys.readouterr().err
    assert not out.exists()


def test_on_a_real_dominant_run_its_noise_is_the_runs_own_and_every_share_is_a_share(tmp_path):
    """End to end on a tiny dominant-oracle region run: the tool opens the run, its networks and labels, and the
    noise it counts over cycle 1's labels is the one the run recorded in metrics.json (segal.regions.training)."""
    import json

    from tests.test_regions_loop import metrics, run_regions

    run = run_regions(tmp_path, oracle="dominant", cycles=1)
    out = tmp_path / "sieve.json"
    assert load_tool("sieve_study").main([str(run.dir), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result) == ["1"]
    recorded = metrics(run, 1)["label_noise"]
    assert (result["1"]["wrong"], result["1"]["labeled"]) == (recorded["wrong_pixels"], recorded["labeled_pixels"])
    for rule in ("disagree@0.5", "lowp@0.1"):
        assert all(0.0 <= v <= 1.0 for v in result["1"][rule].values())
