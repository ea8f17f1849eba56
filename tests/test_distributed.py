"""Two CPU processes with gloo under torchrun: same selection as one process, and a DDP loop that runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from segal.pool import PoolState
from tests.tiny import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]


def torchrun(args, nproc=2):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_sharded_selection_equals_single_process(tmp_path):
    single = subprocess.run([sys.executable, "tests/dist_worker.py", str(tmp_path)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    out = torchrun(["tests/dist_worker.py", str(tmp_path)])
    assert out.returncode == 0, out.stderr[-2000:]
    reference = json.loads((tmp_path / "select_rank0_of1.json").read_text())
    assert json.loads((tmp_path / "select_rank0_of2.json").read_text()) == reference
    assert json.loads((tmp_path / "select_rank1_of2.json").read_text()) == reference
    vaal = [json.loads((tmp_path / f"vaal_rank{r}_of2.json").read_text()) for r in (0, 1)]
    assert vaal[0] == vaal[1] and len(set(vaal[0])) == 5 and not set(vaal[0]) & set(range(6))


def test_ddp_loop_runs_and_only_rank0_writes(tmp_path):
    data = tiny_recipe(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(data))
    launcher = "import sys, tests.tiny; from segal.cli import main; sys.exit(main(sys.argv[1:]))"
    script = tmp_path / "launch.py"
    script.write_text(launcher)
    out = torchrun([str(script), "acquire", str(recipe), "--quiet"])
    assert out.returncode == 0, out.stderr[-3000:]
    state = PoolState.load(tmp_path / "run" / "state.json")
    assert state.stage == "done" and state.num_labeled == 16
    events = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert sum('"event": "start"' in e for e in events) == 1  # one writer
