"""What a person sees (issue 17): the training bar in steps, `segal --version` and the version in
every cycle's metrics, the per-class IoU table of `segal evaluate`, and the acquisition score on
every Label Studio task."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest
import yaml

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.cli import main
from segal.config import TrainConfig
from segal.engine import train
from segal.progress import Progress
from tests.test_engine import CPU32, StopAfterFirstEpoch, fresh_model
from tests.tiny import TinySeg, tiny_recipe


class CountingBars(Progress):
    """Records each bar's total and how many of its items were consumed (= steps marked done)."""

    def __init__(self):
        self.bars: list[list] = []

    def track(self, iterable, total=None, description=""):
        bar = [description, total, 0]
        self.bars.append(bar)
        for item in iterable:
            yield item
            bar[2] += 1


def test_training_bar_counts_steps_not_epochs(tmp_path):
    data, cfg = TinySeg(12, salt=0), TrainConfig(steps=5, batch_size=4, amp="off")  # 3 batches an epoch: 2 epochs
    bars = CountingBars()
    result = train(fresh_model(), data, range(12), cfg, compute=CPU32, seed=0, progress=bars, description="t")
    assert result.steps == 5
    assert bars.bars == [["t", 5, 5]]


def test_resumed_training_bar_counts_the_remaining_steps(tmp_path):
    data, cfg = TinySeg(12, salt=0), TrainConfig(steps=5, batch_size=4, amp="off")
    ckpt = tmp_path / "train_state.pt"
    with pytest.raises(KeyboardInterrupt):  # killed after the first epoch: 3 of 5 steps saved
        train(fresh_model(), data, range(12), cfg, compute=CPU32, seed=0, checkpoint=ckpt,
              progress=StopAfterFirstEpoch())
    bars = CountingBars()
    train(fresh_model(), data, range(12), cfg, compute=CPU32, seed=0, checkpoint=ckpt, progress=bars,
          description="t")
    assert bars.bars == [["t", 2, 2]]


def test_version_prints_the_distribution_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"segal {version('segal-vaal')}"


@pytest.fixture
def finished_run(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tmp_path, cycles=1)))
    assert main(["acquire", str(path), "--quiet"]) == 0
    return tmp_path / "run"


def test_every_cycle_records_the_segal_version(finished_run):
    for cycle in (0, 1):
        metrics = json.loads((finished_run / "cycles" / str(cycle) / "metrics.json").read_text())
        assert metrics["segal_version"] == version("segal-vaal")  # what report.html shows


def test_evaluate_prints_per_class_iou_of_every_cycle(finished_run, capsys):
    from segal.cli import out

    capsys.readouterr()
    width = out.width
    out.width = 200  # one row per class on one line
    try:
        assert main(["evaluate", str(finished_run)]) == 0
    finally:
        out.width = width
    text = capsys.readouterr().out
    assert "per-class IoU (%)" in text
    lines = text.splitlines()
    for cycle in (0, 1):
        scored = json.loads((finished_run / "cycles" / str(cycle) / "eval_val.json").read_text())
        for name, iou in scored["per_class_iou"].items():
            row = next(line for line in lines if line.strip("│ ").startswith(name + " "))
            cells = [c.strip() for c in row.strip("│").split("│")]
            assert cells[0] == name
            assert cells[1 + cycle] == ("–" if iou is None else f"{100 * iou:.1f}")


def test_labelstudio_tasks_carry_the_acquisition_score(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tmp_path, oracle="human", cycles=1)))  # entropy: scores
    assert main(["acquire", str(path), "--quiet"]) == 0
    run = tmp_path / "run"
    queries = json.loads((run / "cycles" / "0" / "queries.json").read_text())
    expected = dict(zip(queries["ids"], queries["scores"], strict=True))
    assert main(["export", str(run), "--format", "labelstudio", "--out", str(tmp_path / "ls")]) == 0
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    got = {t["data"]["segal_id"]: t["predictions"][0]["score"] for t in tasks}
    assert got == expected and len(set(got.values())) > 1  # each image its own score, exactly


def test_random_strategy_exports_no_score(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tmp_path, oracle="human", cycles=1, strategy="random")))
    assert main(["acquire", str(path), "--quiet"]) == 0
    assert main(["export", str(tmp_path / "run"), "--format", "labelstudio", "--out", str(tmp_path / "ls")]) == 0
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert len(tasks) == 4 and all("score" not in t["predictions"][0] for t in tasks)


def test_exported_and_served_scores_share_one_direction_higher_is_label_first():
    from segal.strategies import label_first

    assert label_first("vaal", 0.25) == 0.75  # VAAL acquires its lowest P(labeled): P(unlabeled) is served
    assert label_first("entropy", 0.25) == 0.25 and label_first("coreset", 3.0) == 3.0
