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


def _folder_run(tmp_path, *extra: str):
    """A finished 2-cycle run on the `folder` layout (train and test splits on disk)."""
    import yaml

    from tests.test_bad_input import make_folder_dataset, recipe_dict

    data = make_folder_dataset(tmp_path / "data")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(data, tmp_path / "run")))
    assert main(["acquire", str(recipe), "--quiet", *extra]) == 0
    return data, recipe, tmp_path / "run"


def test_keep_checkpoints_false_keeps_only_the_latest(tmp_path):
    _, _, run = _folder_run(tmp_path, "--set", "train.keep_checkpoints=false", "--set", "active.cycles=2")
    assert sorted(p.parent.name for p in run.glob("cycles/*/task.pt")) == ["2"]
    assert all((run / "cycles" / c / "metrics.json").exists() for c in "012")


def test_evaluate_on_another_data_root_without_the_train_split(tmp_path, capsys):
    import json
    import shutil

    data, _, run = _folder_run(tmp_path)
    moved = tmp_path / "elsewhere"
    shutil.copytree(data, moved)
    shutil.rmtree(data)  # the run's own data.root is gone
    shutil.rmtree(moved / "images" / "train")  # and no train split where we evaluate
    shutil.rmtree(moved / "masks" / "train")
    assert main(["evaluate", str(run), "--data-root", str(moved), "--set", "train.eval_batch_size=2"]) == 0
    scored = json.loads((run / "cycles" / "1" / "eval_test.json").read_text())
    stored = json.loads((run / "cycles" / "1" / "metrics.json").read_text())
    assert scored["data_root"] == str(moved) and abs(scored["miou"] - stored["miou"]) < 1e-6  # same images, same model


def test_strategy_flag_warns_about_the_params_it_drops(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'run'}\ndata:\n  dataset: demo\n  root: /does/not/exist\n"
                      "active:\n  strategy: vaal\n  strategy_params: {steps: 7000}\n")
    assert main(["acquire", str(recipe), "--quiet", "--strategy", "entropy"]) == 2
    err = capsys.readouterr().err
    assert "warning:" in err and "steps=7000" in err and "--set active.strategy_params" in err


def test_log_lines_carry_no_source_tag():
    from segal.cli import RichProgress, console

    with console.capture() as captured:
        RichProgress(console).log("resume", cycle=1, stage="train")
    text = captured.get()
    assert "resuming at cycle 1" in text and "cli.py" not in text


def test_sigterm_in_process_returns_143(monkeypatch, capsys):
    import os
    import signal

    import segal.cli

    def killed(args):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(segal.cli, "cmd_list", killed)
    assert main(["strategies"]) == 143
    assert capsys.readouterr().err.strip().startswith("terminated (SIGTERM)")
    assert signal.getsignal(signal.SIGTERM) is not segal.cli._on_sigterm  # the previous handler is back


@pytest.mark.slow
def test_sigterm_ends_with_one_line_and_resumes(tmp_path):
    """SIGTERM mid-run: exit 143 and one line, no traceback; the same command then finishes the run."""
    import os
    import signal
    import time

    import yaml

    from tests.test_bad_input import make_folder_dataset, recipe_dict

    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(make_folder_dataset(tmp_path / "data"), out)))
    cmd = [sys.executable, "-m", "segal.cli", "acquire", str(recipe), "--steps", "30", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out / "state.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived")
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["terminated (SIGTERM) — re-run the same command to resume from the last finished step"]
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0


def test_os_error_line_names_path_and_fix():
    import errno

    from segal.cli import os_error_line

    line = os_error_line(PermissionError(errno.EACCES, "Permission denied", "/runs/x/state.json"))
    assert line.startswith("/runs/x/state.json: permission denied — fix: ")
    assert "free disk space" in os_error_line(OSError(errno.ENOSPC, "No space left on device", "/runs/x"))
    assert os_error_line(OSError(errno.ECONNRESET, "reset")) is None  # not a user's problem: keeps its traceback


def test_a_failed_collective_is_one_line_not_a_traceback(monkeypatch, capsys):
    import torch.distributed as dist

    import segal.cli as cli

    def stuck(args):
        raise dist.DistBackendError("[gloo] Timed out waiting 5000ms for recv operation\nlong C++ trace")

    monkeypatch.setattr(cli, "cmd_list", stuck)
    assert cli.main(["strategies"]) == 1
    err = capsys.readouterr().err
    assert "Timed out waiting 5000ms" in err and "SEGAL_DIST_TIMEOUT" in err
    assert "Traceback" not in err and "long C++ trace" not in err
