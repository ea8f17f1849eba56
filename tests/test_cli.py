import subprocess
import sys

import pytest

from segal.cli import main


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("name: [broken\n", "malformed YAML"),
        ("active:\n  strategy: crystal_ball\n", "unknown strategy 'crystal_ball'"),
        ("data:\n  dataset: nope\n", "unknown dataset 'nope'"),
        ("data:\n  dataset: demo\n  root: /does/not/exist\n", "data root not found"),
        ("active:\n  initial: 1000\n  budget: 10\n  cycles: 1\n", "the pool holds"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, content, needle):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'run'}\n" + content)
    code = main(["acquire", str(recipe), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert needle in err
    assert len(err.splitlines()) == 1, err


def test_console_script_lists_strategies():
    out = subprocess.run([sys.executable, "-m", "segal.cli", "strategies"], capture_output=True, text=True, check=True)
    assert "entropy" in out.stdout.split() and "random" in out.stdout.split()


def test_unknown_strategy_params_are_rejected(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'run'}\nactive:\n  strategy: entropy\n  strategy_params: {{foo: 1}}\n")
    assert main(["acquire", str(recipe), "--quiet"]) == 2
    assert "active.strategy_params.foo" in capsys.readouterr().err


def test_readme_demo_command_runs_end_to_end(tmp_path):
    """The README's first command, shortened (2 steps, 1 acquisition): generated data, no download."""
    from segal.pool import PoolState

    out = tmp_path / "demo"
    assert main(["acquire", "recipes/demo.yaml", "--steps", "2", "--cycles", "1", "--output-dir", str(out), "--quiet"]) == 0
    state = PoolState.load(out / "state.json")
    assert state.stage == "done" and len(state.budgets) == 2 and state.num_labeled == state.budgets[-1]
    assert (out / "cycles" / "1" / "metrics.json").exists()
