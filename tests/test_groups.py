"""Sequence-aware breakdown: adapters name each image's sequence or city, the report shares acquisitions by it."""

import json

import pytest

from segal.data import DATASETS
from segal.data.camvid import sequence_of
from segal.report import report
from tests.test_datasets import make_camvid, make_cityscapes
from tests.test_report import make_run, summary_of


def test_camvid_and_cityscapes_know_their_groups(tmp_path):
    assert [sequence_of(i) for i in ("0016E5_07959", "0001TP_006690", "Seq05VD_f00000", "0006R0_f01800")] == \
        ["0016E5", "0001TP", "Seq05VD", "0006R0"]
    make_camvid(tmp_path / "camvid")
    camvid = DATASETS.get("camvid")(str(tmp_path / "camvid"), "train")
    assert [camvid.group(i) for i in range(len(camvid))] == ["0001TP"] * 3
    make_cityscapes(tmp_path / "cs", cities=("aachen", "bochum"), per_city=2)
    cs = DATASETS.get("cityscapes")(str(tmp_path / "cs"), "train")
    assert [cs.group(i) for i in range(len(cs))] == ["aachen", "aachen", "bochum", "bochum"]
    assert DATASETS.get("demo")(None, "train").group(0) is None  # an adapter without sequences


def test_report_shares_acquisitions_by_sequence(tmp_path):
    runs = [make_run(tmp_path, f"entropy-seed{seed}", "entropy", seed, [0.3, 0.4], fractions=[0.1, 0.2])
            for seed in (0, 1)]
    # seed 0: written before groups were recorded, so they are read from the ids by CamVid's rule
    (runs[0] / "cycles" / "0" / "queries.json").write_text(json.dumps(
        {"cycle": 0, "ids": ["0016E5_001", "0016E5_002", "0001TP_003", "0006R0_004"], "diagnostics": {}}))
    (runs[1] / "cycles" / "0" / "queries.json").write_text(json.dumps(
        {"cycle": 0, "ids": ["a", "b", "c", "d"], "groups": ["0016E5", "0016E5", "0016E5", "0001TP"], "diagnostics": {}}))
    out = report(runs, tmp_path / "out")
    (d,) = summary_of(out)["strategies"]["entropy"]["diagnostics"]
    # (2/4 + 3/4) / 2, (1/4 + 1/4) / 2, (1/4 + 0) / 2
    assert d["group_share"] == {"0001TP": pytest.approx(0.25), "0006R0": pytest.approx(0.125),
                                "0016E5": pytest.approx(0.625)}
    page = (out / "report.html").read_text()
    assert "Acquired images by sequence" in page and "<td>62.5</td>" in page and "<th>0006R0</th>" in page


def test_report_counts_adjacent_picks_by_hand(tmp_path):
    """A pick is adjacent when the image beside it in the pool's order, in its own group, came in the same batch."""
    runs = [make_run(tmp_path, f"vaal-seed{seed}", "vaal", seed, [0.3, 0.4, 0.5], fractions=[0.1, 0.2, 0.3])
            for seed in (0, 1)]
    acquisitions = {
        # 10 and 11 are neighbours; 30 and 31 are too, but in two sequences (a boundary); 40 stands alone
        (0, 0): ([10, 11, 30, 31, 40], ["A", "A", "A", "B", "B"]),  # 2/5
        (0, 1): ([50, 52, 54, 56], ["A", "A", "A", "A"]),  # gaps of 2 are not neighbours: 0/4
        (1, 0): ([5, 6, 7, 9], ["A", "A", "A", "A"]),  # 5, 6, 7 in a run; 9 alone: 3/4
        (1, 1): ([60, 61], ["A", "A"]),  # 2/2
    }
    for (seed, cycle), (indices, groups) in acquisitions.items():
        (runs[seed] / "cycles" / str(cycle) / "queries.json").write_text(json.dumps(
            {"cycle": cycle, "indices": indices, "ids": [f"x_{i}" for i in indices], "groups": groups,
             "diagnostics": {}}))
    out = report(runs, tmp_path / "out")
    s = summary_of(out)["strategies"]["vaal"]
    assert [d["adjacent_share"] for d in s["diagnostics"]] == [pytest.approx((2 / 5 + 3 / 4) / 2),
                                                              pytest.approx((0 + 1) / 2)]
    assert s["adjacent_share"]["acquisitions"] == 4
    assert s["adjacent_share"]["mean"] == pytest.approx((2 / 5 + 0 + 3 / 4 + 1) / 4)
    assert s["adjacent_share"]["seeds"] == {"0": pytest.approx(0.2), "1": pytest.approx(0.875)}
    table = (out / "table.md").read_text()
    assert table.count("\nAdjacent picks\n") == 1 and "| vaal | 53.8 | 4 | 0: 20.0, 1: 87.5 |" in table
    assert "<th>adjacent picks</th>" in (out / "report.html").read_text()


def test_adjacent_picks_need_indices(tmp_path):
    """Without the acquired pool indices (or without groups) there is no order to read: no number, no table."""
    run = make_run(tmp_path, "vaal-seed0", "vaal", 0, [0.3, 0.4], fractions=[0.1, 0.2])
    (run / "cycles" / "0" / "queries.json").write_text(json.dumps(
        {"cycle": 0, "ids": ["0016E5_001", "0016E5_002"], "diagnostics": {}}))
    out = report([run], tmp_path / "out")
    s = summary_of(out)["strategies"]["vaal"]
    assert s["adjacent_share"] is None and s["diagnostics"][0]["adjacent_share"] is None
    assert "Adjacent picks" not in (out / "table.md").read_text()
