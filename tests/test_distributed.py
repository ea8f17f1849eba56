"""Two CPU processes with gloo under torchrun: same selection as one process, a DDP loop that runs, and
ranks that wait in different collectives failing with a timeout error instead of hanging."""

import json
import sys

import pytest
import yaml

from segal.distributed import group_timeout
from segal.errors import UserError
from segal.pool import PoolState
from tests.launch import failure_report, run_workers, torchrun_command, worker_env
from tests.tiny import tiny_recipe


def torchrun(args, nproc=2, **env):
    return run_workers(torchrun_command(*args, nproc=nproc), env=worker_env(**env))


def test_sharded_selection_equals_single_process(tmp_path):
    single = run_workers([sys.executable, "tests/dist_worker.py", str(tmp_path)])
    assert single.returncode == 0, single.stderr[-2000:]
    out = torchrun(["tests/dist_worker.py", str(tmp_path)])
    assert out.returncode == 0, failure_report(out)
    reference = json.loads((tmp_path / "select_rank0_of1.json").read_text())
    assert json.loads((tmp_path / "select_rank0_of2.json").read_text()) == reference
    assert json.loads((tmp_path / "select_rank1_of2.json").read_text()) == reference
    vaal = [json.loads((tmp_path / f"vaal_rank{r}_of2.json").read_text()) for r in (0, 1)]
    assert vaal[0] == vaal[1] and len(set(vaal[0])) == 5 and not set(vaal[0]) & set(range(6))
    qbc = json.loads((tmp_path / "qbc_rank0_of1.json").read_text())
    assert [json.loads((tmp_path / f"qbc_rank{r}_of2.json").read_text()) for r in (0, 1)] == [qbc, qbc]


def test_ddp_loop_runs_and_only_rank0_writes(tmp_path):
    data = tiny_recipe(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(data))
    launcher = "import sys, tests.tiny; from segal.cli import main; sys.exit(main(sys.argv[1:]))"
    script = tmp_path / "launch.py"
    script.write_text(launcher)
    out = torchrun([str(script), "acquire", str(recipe), "--quiet"])
    assert out.returncode == 0, failure_report(out)
    state = PoolState.load(tmp_path / "run" / "state.json")
    assert state.stage == "done" and state.num_labeled == 16
    events = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert sum('"event": "start"' in e for e in events) == 1  # one writer


def test_ranks_in_different_collectives_fail_with_a_timeout_not_a_stall():
    # rank 0 waits in a barrier while rank 1 gathers: the shape of the committee-checkpoint race
    out = torchrun(["tests/dist_worker.py", "--mismatch"], SEGAL_DIST_TIMEOUT="5")
    assert out.returncode != 0
    assert "Timed out waiting 5000ms" in out.stderr, failure_report(out)  # gloo's error, after SEGAL_DIST_TIMEOUT


def test_group_timeout_reads_the_environment():
    assert group_timeout({}).total_seconds() == 1800
    assert group_timeout({"SEGAL_DIST_TIMEOUT": "90"}).total_seconds() == 90
    for bad in ("0", "-5", "soon", "inf", "nan"):
        with pytest.raises(UserError, match="SEGAL_DIST_TIMEOUT"):
            group_timeout({"SEGAL_DIST_TIMEOUT": bad})
