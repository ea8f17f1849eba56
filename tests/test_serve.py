"""``segal serve``: Label Studio's ML-backend protocol on a tiny human-oracle run, through Flask's test client.

One run is acquired per module (cycle 0 trained, 4 images chosen by entropy) and copied for each test.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("flask")

import tests.tiny  # noqa: E402, F401  (registers tiny-seg)
from segal.cli import main  # noqa: E402
from segal.engine import predict_masks  # noqa: E402
from segal.errors import UserError  # noqa: E402
from segal.interchange.brush_rle import rle_to_mask  # noqa: E402
from segal.interchange.labelstudio import LOCAL_ROOT_ENV, labeling_config  # noqa: E402
from segal.pool import PoolState  # noqa: E402
from segal.runs import open_run  # noqa: E402
from segal.serve import Backend, write_tasks  # noqa: E402
from segal.serve.app import create_app  # noqa: E402
from segal.serve.protocol import BrushTarget, brush_result  # noqa: E402
from tests.tiny import TinySeg, tiny_recipe  # noqa: E402

TOKEN = "serve-test-token"
POOL = TinySeg(40, salt=0)
CLASSES = POOL.classes
CONFIG = labeling_config(CLASSES).decode()


def basic(password: str, user: str = "label-studio") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


AUTH = basic(TOKEN)


@pytest.fixture(scope="module")
def acquired(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    recipe = tiny_recipe(root, oracle="human", cycles=1)
    recipe["serve"] = {"retrain_every": 2}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["acquire", str(path), "--quiet"]) == 0
    Backend(root / "run").close()  # scores the pool once (serve_scores.json), for every copy
    return root / "run"


@pytest.fixture
def run_dir(acquired, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(acquired, target)
    return target


@pytest.fixture
def backend(run_dir):
    b = Backend(run_dir).start()
    yield b
    b.close()


@pytest.fixture
def client(backend):
    return create_app(backend, TOKEN).test_client()


def queries(run_dir: Path, cycle: int = 0) -> dict:
    return json.loads((run_dir / "cycles" / str(cycle) / "queries.json").read_text())


def state_of(run_dir: Path) -> PoolState:
    return PoolState.load(run_dir / "state.json")


def unqueried(run_dir: Path, count: int) -> list[int]:
    """Unlabeled images the strategy did not choose (what an annotator may still pick in Label Studio)."""
    state, chosen = state_of(run_dir), set(queries(run_dir)["indices"])
    labeled = set(state.labeled_indices().tolist())
    return [i for i in range(len(POOL)) if i not in labeled and i not in chosen][:count]


def task(index: int, task_id: int | None = None) -> dict:
    image_id = POOL.image_id(index)
    return {"id": task_id if task_id is not None else 100 + index,
            "data": {"image": f"/data/local-files/?d=tasks/images/{image_id}.png", "segal_id": image_id}}


def event(index: int, result: list | None = None, action: str = "ANNOTATION_CREATED", **annotation) -> dict:
    if result is None:
        result = brush_result(POOL.load_target(index), CLASSES, BrushTarget(), POOL.image_id(index))
    return {"action": action, "task": task(index),
            "annotation": {"id": 1, "result": result, "was_cancelled": False, **annotation}, "project": {"id": 1}}


def painted(results: list[dict], height: int, width: int) -> np.ndarray:
    mask = np.full((height, width), 255, np.uint8)
    for r in results:
        assert (r["type"], r["original_height"], r["original_width"]) == ("brushlabels", height, width)
        mask[rle_to_mask(r["value"]["rle"], height, width)] = CLASSES.names.index(r["value"]["brushlabels"][0])
    return mask


def predict(client, indices: list[int]) -> list[dict]:
    response = client.post("/predict", json={"tasks": [task(i) for i in indices], "label_config": CONFIG}, headers=AUTH)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"]


def snapshot_files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != "log.jsonl"}


# ---------------------------------------------------------------------- auth, health, setup

def test_every_route_needs_the_token(client):
    for method, path in [("get", "/"), ("get", "/health"), ("post", "/setup"), ("post", "/predict"),
                         ("post", "/webhook")]:
        assert getattr(client, method)(path, json={}).status_code == 401
        assert getattr(client, method)(path, json={}, headers=basic("wrong")).status_code == 401
        assert getattr(client, method)(path, json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    refused = client.get("/health", headers={"Authorization": "Basic !!!"})
    assert refused.status_code == 401 and "token" in refused.get_json()["error"]
    assert client.get("/health", headers=AUTH).status_code == 200
    assert client.get("/health", headers=basic(TOKEN, user="anyone")).status_code == 200
    assert client.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_no_token_no_server(backend):
    with pytest.raises(UserError, match="token"):
        create_app(backend, "")


def test_a_taken_port_is_one_clear_error(backend):
    import socket

    from segal.serve.app import serve_forever

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            serve_forever(backend, TOKEN, "127.0.0.1", port)


def test_health_and_setup(client):
    health = client.get("/health", headers=AUTH).get_json()
    assert health["status"] == "UP" and health["model_version"] == "tiny-cycle-0"
    assert (health["cycle"], health["labels_waiting"], health["retrain_every"]) == (0, 0, 2)
    setup = client.post("/setup", json={"project": "1.1700000000", "schema": CONFIG}, headers=AUTH)
    assert setup.status_code == 200 and setup.get_json() == {"model_version": "tiny-cycle-0"}
    lacking = CONFIG.replace('<Label value="bar"', '<Label value="pole"')
    refused = client.post("/setup", json={"schema": lacking}, headers=AUTH)
    assert refused.status_code == 400 and "'bar'" in refused.get_json()["error"]
    assert client.post("/validate", json={"config": CONFIG}, headers=AUTH).status_code == 200


# ---------------------------------------------------------------------- predict

def test_predict_gives_the_networks_masks_and_the_runs_scores(client, run_dir):
    q = queries(run_dir)
    state = state_of(run_dir)
    chosen, other, labeled = q["indices"][0], unqueried(run_dir, 1)[0], int(state.labeled_indices()[0])
    indices = [chosen, other, labeled]
    response = client.post("/predict", json={"tasks": [task(i) for i in indices] + [{"id": 9, "data": {"segal_id": "nope"}}],
                                             "label_config": CONFIG}, headers=AUTH)
    results = response.get_json()["results"]
    assert len(results) == 4 and all(r["model_version"] == "tiny-cycle-0" for r in results)
    run = open_run(run_dir)
    expected = dict(predict_masks(run.load_task_model(0), run.pool, indices, compute=run.compute))
    for index, result in zip(indices, results, strict=False):
        np.testing.assert_array_equal(painted(result["result"], 32, 32), expected[index])
    assert results[0]["score"] == q["scores"][0]  # entropy: the score that chose it, as queries.json records it
    assert results[1]["score"] <= min(q["scores"]) + 1e-6  # not chosen: scored lower than every chosen image
    assert "score" not in results[2]  # labeled already: nothing to rank
    assert results[3]["result"] == [] and "score" not in results[3]
    scored = json.loads((run_dir / "cycles" / "0" / "serve_scores.json").read_text())
    assert len(scored["indices"]) == len(POOL) - state.num_labeled  # every image that still needs a label


def test_vaal_scores_are_p_unlabeled(tmp_path):
    """VAAL acquires its lowest P(labeled) first; served, the score is P(unlabeled), highest first."""
    recipe = tiny_recipe(tmp_path, oracle="human", cycles=1, strategy="vaal", strategy_params={
        "image_size": 32, "z_dim": 8, "width": 8, "batch_size": 4, "steps": 5, "holdout": 0.0})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["acquire", str(tmp_path / "recipe.yaml"), "--quiet"]) == 0
    run_dir = tmp_path / "run"
    b = Backend(run_dir).start()
    try:
        client = create_app(b, TOKEN).test_client()
        q = queries(run_dir)
        results = predict(client, [q["indices"][0], unqueried(run_dir, 1)[0]])
        assert results[0]["score"] == pytest.approx(1.0 - q["scores"][0], abs=1e-12)
        assert results[1]["score"] <= 1.0 - max(q["scores"]) + 1e-6
    finally:
        b.close()


def test_predict_uses_the_projects_tag_names(client):
    config = CONFIG.replace('name="tag"', 'name="segmentation"').replace('toName="image"', 'toName="photo"')
    response = client.post("/predict", json={"tasks": [task(20)], "label_config": config}, headers=AUTH)
    regions = response.get_json()["results"][0]["result"]
    assert regions and {(r["from_name"], r["to_name"]) for r in regions} == {("segmentation", "photo")}


# ---------------------------------------------------------------------- webhook

def _wrong_size(index: int) -> dict:
    result = brush_result(np.zeros((16, 16), np.uint8), CLASSES, BrushTarget(), "x")
    return event(index, result)


def _unknown_class(index: int) -> dict:
    e = event(index)
    e["annotation"]["result"][0]["value"]["brushlabels"] = ["pole"]
    return e


def _not_in_pool(index: int) -> dict:
    e = event(index)
    e["task"]["data"]["segal_id"] = "tiny_9_9999"
    return e


BAD_EVENTS = {
    "wrong size": (_wrong_size, "is 16×16 but the image is 32×32"),
    "unknown class": (_unknown_class, "unknown class name 'pole'"),
    "not in the pool": (_not_in_pool, "is not in this run's pool"),
    "empty": (lambda i: event(i, result=[]), "is empty"),
    "corrupt rle": (lambda i: event(i, result=[{**event(i)["annotation"]["result"][0],
                                                "value": {"format": "rle", "rle": [1, 2, 3], "brushlabels": ["bg"]}}]),
                    "corrupt brush RLE"),
    "no payload": (lambda i: {"action": "ANNOTATION_CREATED"}, "send payload"),
}


@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_a_bad_annotation_is_refused_and_changes_nothing(client, backend, run_dir, case):
    make, message = BAD_EVENTS[case]
    before = snapshot_files(run_dir)
    response = client.post("/webhook", json=make(unqueried(run_dir, 1)[0]), headers=AUTH)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert backend.wait_idle(60)
    assert snapshot_files(run_dir) == before
    logged = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert logged[-1]["event"] == "serve_refused" and message in logged[-1]["error"]


def test_an_initial_image_is_refused(client, run_dir):
    labeled = int(state_of(run_dir).labeled_indices()[0])
    response = client.post("/webhook", json=event(labeled), headers=AUTH)
    assert response.status_code == 400 and "labeled already" in response.get_json()["error"]


def test_other_events_and_skips_are_ignored(client, run_dir):
    before = snapshot_files(run_dir)
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {}}, headers=AUTH).get_json()["status"] == "ignored"
    skipped = event(unqueried(run_dir, 1)[0], was_cancelled=True)
    assert client.post("/webhook", json=skipped, headers=AUTH).get_json()["status"] == "ignored"
    assert snapshot_files(run_dir) == before


# ---------------------------------------------------------------------- retraining

def test_labels_retrain_after_n_and_predictions_move_to_the_new_network(client, backend, run_dir, monkeypatch):
    import threading

    import segal.serve.backend as backend_module

    release, entered = threading.Event(), threading.Event()

    class HeldLoop(backend_module.ActiveLoop):  # the retraining waits until the test has predicted meanwhile
        def run_loop(self):
            entered.set()
            assert release.wait(120)
            return super().run_loop()

    monkeypatch.setattr(backend_module, "ActiveLoop", HeldLoop)
    first, second = unqueried(run_dir, 2)
    before_state = (run_dir / "state.json").read_bytes()
    before = {r["model_version"]: r.get("score") for r in predict(client, [30])}
    reply = client.post("/webhook", json=event(first), headers=AUTH).get_json()
    assert reply == {"status": "imported", "id": POOL.image_id(first), "labels_waiting": 1, "retrain_every": 2}
    assert backend.wait_idle(60)
    assert (run_dir / "state.json").read_bytes() == before_state  # one label: no retraining yet
    stored = (run_dir / "serve" / "inbox" / f"{POOL.image_id(first)}.png")
    np.testing.assert_array_equal(open_run(run_dir).pool.load_target(first), _png(stored))

    assert client.post("/webhook", json=event(second), headers=AUTH).get_json()["labels_waiting"] == 2
    assert entered.wait(60)  # committed, retraining: predictions still come from cycle 0's network
    assert client.get("/health", headers=AUTH).get_json()["retraining"] is True
    assert predict(client, [30])[0]["model_version"] == "tiny-cycle-0"
    release.set()
    assert backend.wait_idle(300)
    state = state_of(run_dir)
    assert (state.cycle, state.stage, state.num_labeled) == (1, "await_labels", 10)
    assert sorted(state.labeled[1]) == sorted([first, second]) and set(state.human) == {first, second}
    assert state.budgets == list(range(8, 41, 2))  # re-planned in steps of serve.retrain_every
    for index in (first, second):
        np.testing.assert_array_equal(_png(run_dir / "labels" / f"{POOL.image_id(index)}.png"), POOL.load_target(index))
    assert not any((run_dir / "serve" / "inbox").iterdir())
    cycle0, cycle1 = (run_dir / "cycles" / c / "task.pt" for c in ("0", "1"))
    assert cycle1.exists() and cycle1.read_bytes() != cycle0.read_bytes()
    health = client.get("/health", headers=AUTH).get_json()
    assert (health["model_version"], health["cycle"], health["labels_waiting"]) == ("tiny-cycle-1", 1, 0)
    after = predict(client, [30])[0]
    assert after["model_version"] == "tiny-cycle-1" and after["score"] != before["tiny-cycle-0"]
    assert queries(run_dir, 1)["scores"][0] == predict(client, [queries(run_dir, 1)["indices"][0]])[0]["score"]
    # a correction of an image already trained on replaces its label; the next retraining uses it
    corrected = event(first, action="ANNOTATION_UPDATED",
                      result=brush_result(np.ones((32, 32), np.uint8), CLASSES, BrushTarget(), "c"))
    assert client.post("/webhook", json=corrected, headers=AUTH).get_json()["labels_waiting"] == 0
    assert (_png(run_dir / "labels" / f"{POOL.image_id(first)}.png") == 1).all()


def test_a_restart_keeps_waiting_labels_and_resumes_a_retraining(run_dir):
    first, second = unqueried(run_dir, 2)
    b = Backend(run_dir).start()
    b.import_annotation(event(first))
    assert b.wait_idle(60)
    b.close()  # killed here: the label is in the inbox, not yet in the state
    b = Backend(run_dir)
    assert b.health()["labels_waiting"] == 1
    b.import_annotation(event(second))
    with b._lock:  # killed after the commit, before the retraining ran
        b._commit(state_of(run_dir), b._waiting())
    b.close()
    (run_dir / "serve" / "inbox" / f"{POOL.image_id(first)}.png").write_bytes(b"left by a kill")  # before its removal
    state = state_of(run_dir)
    assert (state.cycle, state.stage) == (1, "train") and not (run_dir / "cycles" / "1" / "task.pt").exists()
    b = Backend(run_dir)
    assert b.version == "tiny-cycle-0" and b.health()["labels_waiting"] == 0  # the committed copy is dropped
    b.start()
    try:
        assert b.wait_idle(300)
        state = state_of(run_dir)
        assert (state.cycle, state.stage, state.num_labeled) == (1, "await_labels", 10)
        assert b.version == "tiny-cycle-1" and (run_dir / "cycles" / "1" / "task.pt").exists()
    finally:
        b.close()


KILLED_SERVER = """
import json, sys
import tests.tiny
from segal.serve import Backend
backend = Backend(sys.argv[1]).start()
for line in sys.argv[2:]:
    backend.import_annotation(json.loads(line))
backend.wait_idle()
"""


def test_a_server_killed_mid_commit_loses_no_label_and_resumes(run_dir):
    """SIGKILL after the first label is copied to labels/ and before the state is written (the third
    atomic write: two inbox files, one copy); a kill after the state write is the restart test above."""
    import os
    import subprocess
    import sys

    first, second = unqueried(run_dir, 2)
    env = {**os.environ, "SEGAL_CRASH_AT": "write.after_rename:3"}
    proc = subprocess.run([sys.executable, "-c", KILLED_SERVER, str(run_dir), json.dumps(event(first)),
                           json.dumps(event(second))], env=env, cwd=Path(__file__).parents[1], capture_output=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]  # SIGKILL at the crash point
    b = Backend(run_dir).start()
    try:
        assert b.wait_idle(300)
        state = state_of(run_dir)
        assert (state.cycle, state.stage, sorted(state.labeled[1])) == (1, "await_labels", sorted([first, second]))
        for index in (first, second):
            np.testing.assert_array_equal(_png(run_dir / "labels" / f"{POOL.image_id(index)}.png"),
                                          POOL.load_target(index))
        assert not any((run_dir / "serve" / "inbox").iterdir()) and b.version == "tiny-cycle-1"
    finally:
        b.close()


# ---------------------------------------------------------------------- tasks and the command line

def test_write_tasks_covers_every_unlabeled_image(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(LOCAL_ROOT_ENV, str(tmp_path))
    path, count = write_tasks(run_dir, tmp_path / "tasks")
    tasks = json.loads(path.read_text())
    labeled = set(state_of(run_dir).labeled_indices().tolist())
    assert count == len(tasks) == len(POOL) - len(labeled)
    assert {t["data"]["segal_id"] for t in tasks} == {POOL.image_id(i) for i in range(len(POOL)) if i not in labeled}
    first = tasks[0]["data"]
    assert first["image"] == f"/data/local-files/?d=tasks/images/{first['segal_id']}.png"
    assert (tmp_path / "tasks" / "images" / f"{first['segal_id']}.png").is_file()
    assert (tmp_path / "tasks" / "labeling_config.xml").read_text() == CONFIG


@pytest.mark.parametrize(("value", "message"), [(0, "'serve.retrain_every' is 0, it must be ≥ 1"),
                                                  ("ten", "'serve.retrain_every' is 'ten', expected int or null")])
def test_retrain_every_is_checked_like_every_recipe_key(tmp_path, value, message):
    from segal.config import recipe_from_dict

    with pytest.raises(UserError, match=message):
        recipe_from_dict({**tiny_recipe(tmp_path), "serve": {"retrain_every": value}}, "r.yaml")
    assert recipe_from_dict({**tiny_recipe(tmp_path), "serve": {"retrain_every": 5}}).serve.retrain_every == 5


def test_cli_refusals_are_one_line(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SEGAL_SERVE_TOKEN", raising=False)
    assert main(["serve", str(run_dir)]) == 2
    assert "token" in capsys.readouterr().err
    recipe = tiny_recipe(tmp_path / "sim", cycles=0)
    (tmp_path / "sim.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["acquire", str(tmp_path / "sim.yaml"), "--quiet"]) == 0
    assert main(["serve", str(tmp_path / "sim" / "run"), "--token", TOKEN]) == 2
    err = capsys.readouterr().err
    assert "--oracle human" in err and "Traceback" not in err


def _png(path: Path) -> np.ndarray:
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
