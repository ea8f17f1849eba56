"""Crash torture: SIGKILL `segal` again and again, at named crash points (inside training, VAAL
training, pool scoring, prediction for export, between writing a temp file and renaming it, between
import steps) and at random moments, resume each time, and compare with an uninterrupted run.

After every kill the state must load, no labeled id may be lost or duplicated, and every label a
human imported must be on disk.  At the end the state, the acquired ids (in order) and the metrics
must equal those of the uninterrupted run with the same seed.  Runs go through a fork server
(tests/crash_worker.py) so each attempt costs a run of segal, not an interpreter start-up.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from segal.pool import PoolState
from tests.tiny import TinySeg, tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
VAAL = {"image_size": 32, "z_dim": 8, "width": 8, "batch_size": 8, "steps": 6}
# crash point -> the largest N for "kill at its N-th hit" (small, so most attempts die; one that
# never reaches its N runs to the end, which is how a tortured run finally finishes)
# (in the order a run reaches them, so killing once at each N=1 walks through the whole command)
SIM_POINTS = {"train.step": 3, "write.before_rename": 3, "write.after_rename": 3, "vaal.step": 3, "score.batch": 3}
WRITES = {"write.before_rename": 3, "write.after_rename": 3}
HUMAN_POINTS = {"acquire": SIM_POINTS, "export": {"predict.batch": 1, **WRITES},
                "import": {**WRITES, "import.move": 4, "import.state": 1}}


class ForkServer:
    def __init__(self, log: Path):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(log)], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.log = log

    def run(self, argv: list[str], crash: str | None = None, kill_after: float | None = None) -> dict:
        self.proc.stdin.write(json.dumps({"argv": argv, "crash": crash, "kill_after": kill_after}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"fork server died; its log:\n{self.log.read_text()[-3000:]}"
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture
def server(tmp_path):
    srv = ForkServer(tmp_path / "children.log")
    yield srv
    srv.close()


def write_recipe(tmp_path: Path, name: str, **active) -> Path:
    data = tiny_recipe(tmp_path / name, strategy="vaal", strategy_params=VAAL, **active)
    data["train"]["steps"] = 8
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Torturer:
    """Drives one run through kill-and-resume attempts and checks the invariants after each."""

    def __init__(self, server: ForkServer, run_dir: Path, points: dict, seed: int):
        """``points``: crash point → largest N, or command name → such a dict."""
        self.server, self.run_dir, self.points = server, run_dir, points
        self.rng = random.Random(seed)
        self.kills: Counter[str] = Counter()
        self.labeled_seen: set[int] = set()
        self.truth = TinySeg(40, salt=0)

    def check(self) -> PoolState | None:
        path = self.run_dir / "state.json"
        if not path.exists():
            return None
        state = PoolState.load(path)  # never torn, never inconsistent
        labeled = state.labeled_indices().tolist()
        assert len(labeled) == len(set(labeled)), "a labeled id is duplicated"
        assert not set(labeled) & set(state.pending), "an id is both labeled and pending"
        assert self.labeled_seen <= set(labeled), f"labeled ids lost: {sorted(self.labeled_seen - set(labeled))}"
        self.labeled_seen = set(labeled)
        for index in labeled if (self.run_dir / "labels").exists() else []:
            if index in state.labeled.get(0, []):
                continue
            stored = cv2.imread(str(self.run_dir / "labels" / f"{self.truth.image_id(index)}.png"), cv2.IMREAD_UNCHANGED)
            assert stored is not None, f"the imported label of {index} is gone"
            np.testing.assert_array_equal(stored, self.truth.load_target(index))
        return state

    def points_for(self, argv: list[str]) -> dict[str, int]:
        return self.points.get(argv[0], self.points) if isinstance(self.points.get(argv[0]), dict) else self.points

    def attempt(self, argv: list[str], point: str | None = None) -> dict:
        """Kill at ``point``'s first hit, or (None) at a random point, random N, or a random moment."""
        points = self.points_for(argv)
        if point is not None:
            result = self.server.run(argv, crash=f"{point}:1")
        elif self.rng.random() < 0.25:  # wherever the process happens to be
            point = "random moment"
            result = self.server.run(argv, kill_after=self.rng.uniform(0.05, 2.5))
        else:
            point = self.rng.choice(sorted(points))
            result = self.server.run(argv, crash=f"{point}:{self.rng.randint(1, points[point])}")
        if result["killed"]:
            self.kills[f"{argv[0]} {point}"] += 1
        return result

    def drive(self, argv: list[str], done, max_kills: int = 12) -> None:
        """Run ``argv`` until ``done(state)``: first killed once at every crash point (so each is
        covered on any machine), then at random until an attempt survives or ``max_kills`` more."""
        plan = list(self.points_for(argv)) + [None] * max_kills
        for point in plan:
            result = self.attempt(argv, point)
            state = self.check()
            if not result["killed"]:
                assert result["code"] == 0 or (result["code"] == 2 and done(state)), result
                if done(state):
                    return
        result = self.server.run(argv)
        assert result["code"] == 0 or (result["code"] == 2 and done(self.check())), result
        assert done(self.check())


def artefacts(run_dir: Path) -> dict:
    state = PoolState.load(run_dir / "state.json")
    out = {"labeled": state.labeled, "pending": state.pending, "budgets": state.budgets, "stage": state.stage,
           "cycle": state.cycle, "queries": {}, "metrics": {}}
    for cdir in sorted((run_dir / "cycles").iterdir()):
        if (cdir / "queries.json").exists():
            out["queries"][cdir.name] = json.loads((cdir / "queries.json").read_text())["ids"]
        if (cdir / "metrics.json").exists():
            out["metrics"][cdir.name] = round(json.loads((cdir / "metrics.json").read_text())["miou"], 6)
    return out


def test_simulated_oracle_survives_kills_anywhere(server, tmp_path, capsys):
    ref = server.run(["acquire", str(write_recipe(tmp_path, "ref", cycles=3)), "--quiet"])
    assert ref["code"] == 0, (tmp_path / "children.log").read_text()[-3000:]
    expected = artefacts(tmp_path / "ref" / "run")
    kills: Counter[str] = Counter()
    for seed in range(3):  # three independently tortured runs of the same experiment
        recipe = write_recipe(tmp_path, f"tortured{seed}", cycles=3)
        run_dir = tmp_path / f"tortured{seed}" / "run"
        t = Torturer(server, run_dir, SIM_POINTS, seed=seed)
        t.drive(["acquire", str(recipe), "--quiet"], lambda s: s is not None and s.stage == "done", max_kills=60)
        assert artefacts(run_dir) == expected
        assert server.run(["acquire", str(recipe), "--quiet"])["code"] == 0  # a resume tidies what kills left
        assert not list(run_dir.rglob(".*.tmp")), "temp files left behind"
        kills += t.kills
    with capsys.disabled():
        print(f"\n[crash torture, simulated oracle] {kills.total()} kills: {dict(sorted(kills.items()))}")
    assert {f"acquire {p}" for p in SIM_POINTS} <= set(kills)  # every crash point killed a run
    assert kills.total() >= 3 * len(SIM_POINTS)


def human_flow(run, recipe: Path, run_dir: Path, export_root: Path, cycles: int) -> None:
    """acquire → export → annotate (ground truth) → import, ``cycles`` times, then the final acquire."""
    truth = TinySeg(40, salt=0)
    for cycle in range(cycles):
        export_dir = export_root / f"cycle{cycle}"
        run(["acquire", str(recipe), "--quiet"], lambda s: s is not None and s.stage == "await_labels")
        pending = PoolState.load(run_dir / "state.json").pending
        run(["export", str(run_dir), "--format", "png", "--out", str(export_dir)],
            lambda s, d=export_dir, p=pending: all((d / "masks" / f"{truth.image_id(i)}.png").exists() for i in p))
        for index in pending:  # the annotator corrects every predicted mask
            cv2.imwrite(str(export_dir / "masks" / f"{truth.image_id(index)}.png"), truth.load_target(index))
        run(["import", str(run_dir), str(export_dir / "masks")], lambda s: not s.pending)
    run(["acquire", str(recipe), "--quiet"], lambda s: s.stage == "done")


def test_human_oracle_export_import_survive_kills(server, tmp_path, capsys):
    def clean(argv, done):
        assert server.run(argv)["code"] == 0, (tmp_path / "children.log").read_text()[-3000:]

    ref_recipe = write_recipe(tmp_path, "ref", oracle="human", cycles=2)
    human_flow(clean, ref_recipe, tmp_path / "ref" / "run", tmp_path / "ref-export", cycles=2)
    recipe = write_recipe(tmp_path, "tortured", oracle="human", cycles=2)
    run_dir = tmp_path / "tortured" / "run"
    t = Torturer(server, run_dir, HUMAN_POINTS, seed=1)
    human_flow(lambda argv, done: t.drive(argv, done, max_kills=8), recipe, run_dir, tmp_path / "export", cycles=2)
    assert artefacts(run_dir) == artefacts(tmp_path / "ref" / "run")
    total = sum(t.kills.values())
    with capsys.disabled():
        print(f"\n[crash torture, human oracle] {total} kills: {dict(sorted(t.kills.items()))}")
    covered = {f"{cmd} {p}" for cmd, points in HUMAN_POINTS.items() for p in points}
    assert covered <= set(t.kills)  # every crash point of every command killed it at least once


REGION_IMPORT_POINTS = {**WRITES, "import.move": 3, "import.state": 1}  # region caching and scoring: other tests


class RegionTorturer(Torturer):
    """Checks a region-level human run after every kill: the state and its region labels load and agree,
    no labeled region is lost, and every image with imported labels stores exactly the annotators'
    pixels (the ground truth) on its human-labeled regions and nothing elsewhere."""

    regions_seen: set[int] = set()

    def check(self) -> PoolState | None:
        from segal.regions.cache import RegionCache
        from segal.regions.state import load_region_labels
        from segal.runs import open_run

        path = self.run_dir / "state.json"
        if not path.exists():
            return None
        state = PoolState.load(path)
        run = open_run(self.run_dir)
        cache = RegionCache.open(self.run_dir / "regions")
        labels = load_region_labels(state, path, cache.offsets)  # never torn, never out of step with state.json
        labeled = set(labels.all_labeled_regions().tolist())
        assert self.regions_seen <= labeled, f"labeled regions lost: {sorted(self.regions_seen - labeled)[:5]}"
        self.regions_seen = labeled
        for index in state.human:
            stored = cv2.imread(str(self.run_dir / "labels" / f"{run.pool.image_id(index)}.png"), cv2.IMREAD_UNCHANGED)
            assert stored is not None, f"the imported labels of {index} are gone"
            status = labels.status[labels.offsets[index]:labels.offsets[index + 1]]
            human = np.isin(cache.region_map(index), np.flatnonzero(status >= 1))
            np.testing.assert_array_equal(stored, np.where(human, run.pool.load_target(index), 255))
        return state


def region_human_flow(run, recipe: Path, run_dir: Path, export_root: Path, cycles: int, finish: bool = True) -> None:
    """The region-level :func:`human_flow`: annotators paint the whole ground truth, segal keeps the asked part."""
    from segal.regions.cache import RegionCache
    from segal.regions.state import load_region_labels
    from segal.runs import open_run

    for cycle in range(cycles):
        export_dir = export_root / f"cycle{cycle}"
        run(["acquire", str(recipe), "--quiet"], lambda s: s is not None and s.stage == "await_labels")
        state = PoolState.load(run_dir / "state.json")
        pool = open_run(run_dir).pool
        labels = load_region_labels(state, run_dir / "state.json", RegionCache.open(run_dir / "regions").offsets)
        ids = {pool.image_id(i): i for i in labels.images_pending().tolist()}
        run(["export", str(run_dir), "--format", "png", "--out", str(export_dir)],
            lambda s, d=export_dir, p=ids: all((d / "masks" / f"{i}.png").exists() for i in p))
        for image_id, index in ids.items():
            cv2.imwrite(str(export_dir / "masks" / f"{image_id}.png"), pool.load_target(index))
        run(["import", str(run_dir), str(export_dir / "masks")], lambda s: s.regions["pending"] == 0)
    if finish:
        run(["acquire", str(recipe), "--quiet"], lambda s: s.stage == "done")


def region_artefacts(run_dir: Path) -> dict:
    from segal.regions.state import FILE_PREFIX

    out = artefacts(run_dir)
    out["region_labels"] = [p.read_bytes() for p in run_dir.glob(f"{FILE_PREFIX}*.npy")]
    out["labels"] = {p.name: p.read_bytes() for p in sorted((run_dir / "labels").glob("*"))}
    out["human"] = PoolState.load(run_dir / "state.json").human
    return out


def test_region_import_survives_kills(server, tmp_path, capsys):
    from tests.test_regions_loop import region_recipe

    def recipe_file(name: str) -> Path:
        data = region_recipe(tmp_path / name, strategy="entropy", cycles=2)
        data["active"]["oracle"] = "human"
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def clean(argv, done):
        assert server.run(argv)["code"] == 0, (tmp_path / "children.log").read_text()[-3000:]

    run_dir = tmp_path / "tortured" / "run"
    t = RegionTorturer(server, run_dir, REGION_IMPORT_POINTS, seed=2)

    def tortured(argv, done):
        """Imports are killed (the second one merges with the first's labels), each compared with the same
        import, uninterrupted, of a copy of the run taken just before; the other commands run clean."""
        if argv[0] != "import":
            clean(argv, done)
            return
        reference = tmp_path / f"reference-{Path(argv[2]).parent.name}"
        shutil.copytree(run_dir, reference)
        clean(["import", str(reference), argv[2]], done)
        t.drive(argv, done, max_kills=2)
        assert region_artefacts(run_dir) == region_artefacts(reference)

    region_human_flow(tortured, recipe_file("tortured"), run_dir, tmp_path / "export", cycles=2, finish=False)
    with capsys.disabled():
        print(f"\n[crash torture, region human oracle] {t.kills.total()} kills: {dict(sorted(t.kills.items()))}")
    assert {f"import {p}" for p in REGION_IMPORT_POINTS} <= set(t.kills)  # every import step killed it
