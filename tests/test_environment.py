"""Every run says what computed it, and a report flags pairs whose cycle-0 networks differ."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import torch
import yaml

from segal.config import load_recipe
from segal.environment import PACKAGES, describe, numeric_fingerprint
from segal.loop import ActiveLoop
from segal.progress import Progress
from segal.report import report
from segal.runs import start_run
from tests.test_report import make_run, summary_of, write_state
from tests.tiny import tiny_recipe


def test_describe_names_the_versions_and_leaves_the_random_streams_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    info = describe("cpu")
    assert torch.equal(torch.rand(3), expected)  # the fingerprint forks the RNG: a run's streams do not move
    assert info["packages"]["torch"] == metadata.version("torch") == torch.__version__.split("+")[0]
    assert set(info["packages"]) == set(PACKAGES)
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and info["device"] == "cpu"
    fp = info["numeric_fingerprint"]
    assert len(fp) == 12 and int(fp, 16) >= 0 and numeric_fingerprint() == fp  # the same process: the same bits
    json.dumps(info)  # goes to log.jsonl as it is


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_a_run_logs_its_environment_at_start_and_on_resume_but_not_once_done(tmp_path):
    data = tiny_recipe(tmp_path)
    data["active"]["cycles"] = 1
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    run_dir = Path(recipe.output_dir)
    ActiveLoop(start_run(recipe, str(path)), Progress(), max_cycles=1).run_loop()
    names = [e["event"] for e in _events(run_dir)]
    assert names[:2] == ["start", "environment"] and names.count("environment") == 1
    env = next(e for e in _events(run_dir) if e["event"] == "environment")
    assert env["numeric_fingerprint"] == numeric_fingerprint() and env["packages"]["numpy"] == metadata.version("numpy")

    ActiveLoop(start_run(recipe, str(path)), Progress()).run_loop()  # resumed: cycle 1 is computed here
    names = [e["event"] for e in _events(run_dir)]
    assert names[names.index("resume") + 1] == "environment" and names.count("environment") == 2
    assert json.loads((run_dir / "state.json").read_text())["stage"] == "done"

    before = (run_dir / "log.jsonl").read_text()
    ActiveLoop(start_run(recipe, str(path)), Progress()).run_loop()  # nothing left to compute
    assert [e["event"] for e in _events(run_dir)].count("environment") == 2
    assert (run_dir / "log.jsonl").read_text().startswith(before)


@pytest.mark.parametrize("entropy_start", [0.40, 0.43])
def test_a_pair_whose_cycle_0_differs_is_kept_and_named(tmp_path, entropy_start):
    runs = [write_state(make_run(tmp_path / "runs", f"{s}-seed0", s, 0, v, fractions=[0.1, 0.2]), [1, 2])
            for s, v in [("random", [0.40, 0.50]), ("entropy", [entropy_start, 0.55])]]
    s = summary_of(report(runs, tmp_path / "out"))
    assert s["warnings"] == [] and s["strategies"]["entropy"]["paired"]["pairs"] == 1
    notes, md = s["environment_notes"], (tmp_path / "out" / "table.md").read_text()
    if entropy_start == 0.40:  # the same cycle-0 network: nothing to say
        assert notes == [] and "- note:" not in md
    else:
        assert len(notes) == 1 and "entropy seed 0" in notes[0] and "(43.00 vs 40.00)" in notes[0]
        assert f"- note: {notes[0]}" in md
        assert 'id="environment-notes"' in (tmp_path / "out" / "report.html").read_text()


def _finished_run(root: Path, name: str, fingerprints: list[str], done: bool = True) -> Path:
    run = root / name
    (run / "cycles").mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: x\n")
    (run / "state.json").write_text(json.dumps({"stage": "done" if done else "acquire"}))
    lines = [json.dumps({"event": "start"})] + [json.dumps({"event": "environment", "numeric_fingerprint": f})
                                                for f in fingerprints]
    (run / "log.jsonl").write_text("\n".join(lines) + "\n{\"event\": \"env")  # a torn last line is skipped
    return run


def test_the_benchmark_warns_about_seeds_whose_runs_came_from_another_environment(tmp_path):
    from rich.console import Console

    from segal.records import foreign_seeds, logged_fingerprints
    from tests.tool_loader import load_tool

    mine = numeric_fingerprint()
    runs = [_finished_run(tmp_path, "random-seed0", []), _finished_run(tmp_path, "coreset-seed0", [mine]),
            _finished_run(tmp_path, "random-seed1", [mine, "0123456789ab"]), _finished_run(tmp_path, "random-seed2", [mine])]
    assert logged_fingerprints(runs[2]) == {mine, "0123456789ab"} and logged_fingerprints(runs[0]) == set()
    assert foreign_seeds(runs, [0, 1, 2], mine) == {0: ["random-seed0 (environment not recorded)"],
                                                    1: [f"random-seed1 (0123456789ab, {mine})"]}
    ceiling = _finished_run(tmp_path / "ceiling", "random-seed2", [])  # another machine's, but no pair
    tool = load_tool("label_efficiency")
    console = Console(record=True, width=400)
    # entropy is still to compute for every seed: seeds 0 and 1 are warned, seed 2 (all here) is not
    assert tool.warn_foreign_seeds([*runs, ceiling], [0, 1, 2], ["random", "entropy"], console) == [0, 1]
    text = console.export_text()
    assert "seed 0: random-seed0 (environment not recorded) came from another numeric environment" in text
    assert "seed 1: random-seed1" in text and "seed 2" not in text
    assert tool.warn_foreign_seeds(runs, [1], ["random"], Console(record=True)) == []  # nothing left to compute
    # a --vaal-diversity folder reuses the names: OUT's finished random-seed1 leaves its own random-seed1 to compute
    assert tool.warn_foreign_seeds(runs, [1], ["random"], Console(record=True), where=tmp_path / "vaal-diversity-4") == [1]
    assert tool.warn_foreign_seeds(runs, [1], ["random"], Console(record=True), where=tmp_path) == []
