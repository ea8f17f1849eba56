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
