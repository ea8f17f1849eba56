"""tools/convergence.py: the S vs 2S plan, the verdict arithmetic, and a real (tiny) resumable run."""

from __future__ import annotations

import json

import pytest

from tests.test_datasets import make_camvid
from tests.tool_loader import load_tool


def test_every_point_runs_steps_and_double_for_every_seed():
    tool = load_tool("convergence")
    jobs = tool.jobs_for(tool.parse_points("37:800,145:1600"), [0, 1])
    assert [j.name for j in jobs] == ["n37-s800-seed0", "n37-s1600-seed0", "n145-s1600-seed0", "n145-s3200-seed0",
                                      "n37-s800-seed1", "n37-s1600-seed1", "n145-s1600-seed1", "n145-s3200-seed1"]


@pytest.mark.parametrize("bad", ["37", "37:", "a:800", "37:0", "0:800"])
def test_a_bad_point_is_one_line(bad):
    with pytest.raises(SystemExit, match="LABELED:STEPS"):
        load_tool("convergence").parse_points(bad)


def test_verdict_is_the_mean_change_over_seeds_against_the_tolerance():
    tool = load_tool("convergence")
    miou = {"n37-s800-seed0": 40.0, "n37-s1600-seed0": 41.5, "n37-s800-seed1": 42.0, "n37-s1600-seed1": 42.1,
            "n145-s1600-seed0": 45.0, "n145-s3200-seed0": 47.0, "n145-s1600-seed1": 44.0, "n145-s3200-seed1": 46.6}
    small, large = tool.verdict([(37, 800), (145, 1600)], [0, 1], miou, tolerance=1.0)
    assert small["mean_change"] == pytest.approx(0.8) and small["converged"] is True  # (1.5 + 0.1) / 2
    assert small["mean_at_steps"] == pytest.approx(41.0) and small["mean_at_double"] == pytest.approx(41.8)
    assert large["mean_change"] == pytest.approx(2.3) and large["converged"] is False  # (2.0 + 2.6) / 2
    partial = tool.verdict([(37, 800)], [0, 1], {"n37-s800-seed0": 40.0, "n37-s1600-seed0": 40.4}, 1.0)[0]
    assert partial["seeds_done"] == 1 and partial["mean_change"] == pytest.approx(0.4)


def test_quick_run_writes_the_table_and_skips_finished_runs(tmp_path, capsys):
    tool = load_tool("convergence")
    make_camvid(tmp_path / "camvid", "train", 40)  # 5% of 40 = 2: a valid budget
    make_camvid(tmp_path / "camvid", "val", 2)
    out = tmp_path / "conv"
    argv = ["--quick", "--out", str(out), "--data-root", str(tmp_path / "camvid")]
    assert tool.main(argv) == 0
    table = json.loads((out / "convergence.json").read_text())
    assert set(table["runs"]) == {"n4-s2-seed0", "n4-s4-seed0"}
    assert table["points"][0]["seeds_done"] == 1
    stored = json.loads((out / "n4-s2-seed0" / "cycles" / "0" / "metrics.json").read_text())["miou"]
    assert table["runs"]["n4-s2-seed0"] == pytest.approx(100 * stored, abs=1e-3)  # points, as the tolerance
    change = table["runs"]["n4-s4-seed0"] - table["runs"]["n4-s2-seed0"]
    assert table["points"][0]["mean_change"] == pytest.approx(change, abs=1e-3)
    capsys.readouterr()
    assert tool.main(argv) == 0  # everything finished: nothing is run again
    assert "$ " not in capsys.readouterr().out


def test_a_classification_run_is_read_as_its_accuracy_in_points(tmp_path):
    tool = load_tool("convergence")
    (tmp_path / "cycles" / "0").mkdir(parents=True)
    (tmp_path / "cycles" / "0" / "metrics.json").write_text(json.dumps({"fraction": 0.1, "accuracy": 0.4375}))
    assert tool.final_miou(tmp_path) == pytest.approx(43.75)


def test_the_cifar10_check_runs_its_own_recipe_at_its_own_size(tmp_path):
    tool = load_tool("convergence")
    args = tool.argparse.Namespace(benchmark="cifar10", out=str(tmp_path), image_size=[32, 32], batch_size=128,
                                   data_root=None)
    cmd = tool.command(tool.Job(1000, 800, 1), args)
    assert cmd[cmd.index("acquire") + 1].endswith("recipes/cifar10-jpg.yaml")
    assert "active.initial=1000" in cmd and "train.batch_size=128" in cmd and cmd[cmd.index("--steps") + 1] == "800"
    assert tool.BENCHMARKS["cifar10"]["points"] == "1000:800,4000:1600"
