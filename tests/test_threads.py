"""segal's thread count follows the cores it may use: --threads, the affinity mask, OMP_NUM_THREADS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segal.errors import UserError
from segal.threads import child_environment, choose_threads, prefer_passive_wait, usable_cores

ROOT = Path(__file__).resolve().parents[1]


def test_affinity_mask_counts_not_the_machine():
    assert usable_cores({0, 3}) == 2
    assert usable_cores({5}) == 1
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("requested", "cores", "env", "jobs", "expected"), [
    (None, 8, {}, 1, 8),                               # the affinity mask's cores
    (None, 8, {"OMP_NUM_THREADS": "3"}, 1, 3),          # OMP_NUM_THREADS caps them
    (None, 2, {"OMP_NUM_THREADS": "16"}, 1, 2),         # ... but never above the usable cores
    (None, 8, {"OMP_NUM_THREADS": "4,2"}, 1, 4),        # nested levels: the outer one
    (None, 8, {"OMP_NUM_THREADS": "lots"}, 1, 8),       # unreadable: ignored, as OpenMP does
    (None, 8, {"OMP_NUM_THREADS": "0"}, 1, 8),
    (5, 2, {"OMP_NUM_THREADS": "1"}, 1, 5),             # --threads is the user's explicit choice
    (None, 8, {}, 2, 4),                                # divided between side-by-side jobs
    (None, 8, {"OMP_NUM_THREADS": "6"}, 4, 1),
    (None, 3, {}, 4, 1),                                # at least one each
    (6, 8, {}, 3, 2),
])
def test_choose_threads(requested, cores, env, jobs, expected):
    assert choose_threads(requested, cores=cores, env=env, jobs=jobs) == expected


def test_bad_counts_are_user_errors():
    with pytest.raises(UserError, match="--threads 0"):
        choose_threads(0, cores=2, env={})
    with pytest.raises(UserError, match="--jobs 0"):
        choose_threads(None, cores=2, env={}, jobs=0)


_PROBE = ("import json, os, torch; from segal.threads import configure_threads; p = configure_threads(); "
          "print(json.dumps([p.threads, torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY')]))")


def _probe(env: dict, affinity: set[int] | None = None, code: str = _PROBE) -> list:
    def pin():
        if affinity is not None:
            os.sched_setaffinity(0, affinity)

    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120, preexec_fn=pin)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_real_process_honours_its_affinity_mask_and_omp_num_threads():
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cores = sorted(os.sched_getaffinity(0))
    threads, torch_threads, _ = _probe(base, affinity={cores[0]})  # as under `taskset -c 0`
    assert threads == torch_threads == 1
    if len(cores) >= 2:  # without a mask the same process takes every usable core ...
        assert _probe(base)[:2] == [len(cores)] * 2
        # ... unless OMP_NUM_THREADS says fewer
        assert _probe({**base, "OMP_NUM_THREADS": "1"})[:2] == [1, 1]


def test_the_cli_asks_openmp_to_sleep_before_torch_loads():
    code = ("import json, os, sys; from segal.cli import main; main(['strategies']); "
            "print(json.dumps([os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules]))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _probe(env, code=code) == ["PASSIVE", True]
    assert _probe({**env, "OMP_WAIT_POLICY": "ACTIVE"}, code=code)[0] == "ACTIVE"  # the user's choice stands


def test_passive_wait_only_before_torch_and_never_over_the_user():
    import torch  # noqa: F401 — loaded: this process's OpenMP has read its environment already

    assert prefer_passive_wait({}) is False
    env = child_environment(3, {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}


@pytest.mark.slow
def test_parallel_sweep_equals_the_serial_one(tmp_path):
    """--jobs 2 runs the grid in two processes; the runs are the ones a serial sweep makes."""
    from segal.sweep import sweep

    recipe = {
        "name": "par", "seed": 0, "device": "cpu",
        "data": {"dataset": "demo", "image_size": [32, 32], "options": {"n_train": 40, "n_test": 8}},
        "model": {"name": "deeplabv3plus", "encoder": "resnet18"},
        "train": {"steps": 2, "batch_size": 4, "eval_batch_size": 8, "amp": "off"},
        "active": {"initial": 8, "budget": 4, "cycles": 1, "strategy": "random"},
    }
    path = tmp_path / "par.yaml"
    path.write_text(yaml.safe_dump(recipe))
    serial = sweep(path, ["random", "entropy"], [0], tmp_path / "serial", {})
    parallel = sweep(path, ["random", "entropy"], [0], tmp_path / "parallel", {}, jobs=2)
    assert [d.name for d in parallel] == [d.name for d in serial] == ["random-seed0", "entropy-seed0"]
    for a, b in zip(serial, parallel, strict=True):
        sa, sb = (json.loads((d / "state.json").read_text()) for d in (a, b))
        assert sa["stage"] == sb["stage"] == "done"
        assert sa["labeled"] == sb["labeled"] if a.name.startswith("random") else len(sa["labeled"]) == len(sb["labeled"])
    assert (tmp_path / "parallel" / "report").is_dir()


def test_cli_refuses_zero_threads_before_writing(tmp_path, capsys):
    from segal.cli import main

    out = tmp_path / "run"
    assert main(["acquire", str(ROOT / "recipes" / "demo.yaml"), "--threads", "0", "--output-dir", str(out)]) == 2
    assert "--threads 0 must be at least 1" in capsys.readouterr().err
    assert not out.exists()
