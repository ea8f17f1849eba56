"""Active learning inside a real Label Studio: ``segal serve`` as the project's ML backend, end to end.

A small demo run waits for labels; Label Studio (loopback, throwaway data dir) gets the run's tasks,
a webhook to segal with the token, and segal as its ML backend (basic auth, the token as password).
The test checks that predictions and segal's scores land on the tasks (and order the task list), that
annotations posted through Label Studio's API are imported by segal (and a bad one changes nothing),
that segal retrains after ``serve.retrain_every`` labels, and that the next predictions come from the new
network (a new checkpoint, a new model version, moved scores).  Needs ``SEGAL_LABEL_STUDIO`` (see
tests/test_label_studio_live.py); Label Studio must be started with ``ML_BLOCK_LOCAL_IP=false`` and
``SSRF_PROTECTION_ENABLED=false``, since both refuse loopback addresses by default.  With
``SEGAL_SERVE_SCREENSHOT=out.png`` (and Chromium on PATH) it also saves what an annotator sees: the
project's task list ordered by segal's score (headless Chromium, logged in, via its DevTools protocol).
The duration is printed and written beside the run (``duration.txt``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from segal.cli import main
from segal.pool import PoolState
from segal.runs import open_run
from segal.serve.protocol import BrushTarget, brush_result
from tests.test_label_studio_live import READY_TIMEOUT, TOKEN, Client, _executable, _free_port, _stop

SERVE_TOKEN = "segal-serve-live-token-9876543210"
RETRAIN_EVERY = 3
LIMIT = 120.0  # seconds from Label Studio's start-up to the end (the start-up itself is Label Studio's)


def _get(url: str, token: str | None = SERVE_TOKEN, timeout: float = 10.0) -> tuple[int, dict]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait(what: str, check, timeout: float, logs: list[Path], proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}\n" + _tails(logs))
        try:
            value = check()
        except (urllib.error.URLError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout:.0f} s\n" + _tails(logs))
        time.sleep(0.5)


def _tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())


# ---------------------------------------------------------------------- optional screenshot (SEGAL_SERVE_SCREENSHOT=out.png)

def _login_cookie(base: str) -> str:
    """Label Studio's session cookie for the test user (the web UI takes no API token)."""
    import http.cookiejar
    import re

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/user/login/", timeout=30).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"email": "u@example.com", "password": "segal-live-pw-1",
                                   "csrfmiddlewaretoken": csrf, "persist_session": "on"}).encode()
    req = urllib.request.Request(base + "/user/login/", data=form, headers={"Referer": base + "/user/login/"})
    opener.open(req, timeout=30).read()
    return next(c.value for c in jar if c.name == "sessionid")


class _DevTools:
    """Chromium's DevTools protocol over a minimal stdlib WebSocket (text frames, no extensions)."""

    def __init__(self, ws_url: str) -> None:
        import base64
        import socket

        url = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.next_id = 0

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "DevTools closed the connection"
            data += chunk
        return data

    def _frame(self) -> bytes:
        payload, fin = b"", False
        while not fin:
            b0, b1 = self._read(2)
            fin, n = bool(b0 & 0x80), b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            payload += self._read(n)
        return payload

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        data = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(data)
        size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        self.sock.sendall(bytes([0x81]) + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        while True:
            message = json.loads(self._frame())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]


def _screenshot(base: str, path: str, out: Path) -> None:
    """Headless Chromium, logged in, on ``path``; the PNG goes to ``out``."""
    import base64
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no chromium: screenshot skipped")
        return
    port = _free_port()
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
                             "--window-size=1400,900", "about:blank"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        pages = _wait("chromium", lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json",
                                                                           timeout=5).read()), 60, [])
        tools = _DevTools(next(p for p in pages if p.get("type") == "page")["webSocketDebuggerUrl"])
        tools.call("Network.enable")
        tools.call("Network.setCookie", name="sessionid", value=_login_cookie(base), url=base)
        tools.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
        tools.call("Page.navigate", url=base + path)
        time.sleep(15)  # the data manager renders after several API calls
        out.write_bytes(base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"]))
        print(f"screenshot: {out}")
    finally:
        _stop(proc)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[dict]:
    """Label Studio and ``segal serve`` on loopback, both started at once (their start-ups overlap)."""
    t0 = time.monotonic()
    exe = _executable()
    recipe = yaml.safe_load((Path(__file__).parents[1] / "recipes" / "demo.yaml").read_text())
    recipe.update(output_dir=str(tmp_path / "run"), device="cpu")
    recipe["data"]["options"] = {"n_train": 48, "n_test": 16}
    recipe["train"].update(steps=32, amp="off")  # cycle 0, while Label Studio starts: scores worth ordering by
    recipe["active"].update(initial=8, budget=RETRAIN_EVERY, final=None, cycles=1, oracle="human", strategy="entropy")
    recipe["serve"] = {"retrain_every": RETRAIN_EVERY}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    ls_port, serve_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{ls_port}"
    data_dir = tmp_path / "ls-data"
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(tmp_path), "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",
           "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",  # no telemetry; see test_label_studio_live.py
           "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false"}  # segal serve is on loopback too
    env.pop("HOST", None)
    ls_log, serve_log = tmp_path / "label-studio.log", tmp_path / "segal-serve.log"
    logs = [ls_log, serve_log]
    cmd = [exe, "start", "--no-browser", "--internal-host", "127.0.0.1", "--host", base, "--port", str(ls_port),
           "--data-dir", str(data_dir), "--username", "u@example.com", "--password", "segal-live-pw-1",
           "--user-token", TOKEN, "--enable-legacy-api-token", "--log-level", "WARNING"]
    procs = []
    with ls_log.open("wb") as log:
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        assert main(["acquire", str(tmp_path / "recipe.yaml"), "--quiet"]) == 0  # cycle 0, then waits for labels
        stored = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
        stored["train"]["steps"] = 8  # the retraining under test is kept short (train.steps may change on resume)
        (tmp_path / "run" / "recipe.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
        tasks_dir = tmp_path / "tasks"
        assert main(["serve", str(tmp_path / "run"), "--write-tasks", str(tasks_dir)]) == 0
        serve_env = {**os.environ, "SEGAL_SERVE_TOKEN": SERVE_TOKEN}
        with serve_log.open("wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", "import sys; from segal.cli import main; sys.exit(main(sys.argv[1:]))",
                 "serve", str(tmp_path / "run"), "--port", str(serve_port)],
                env=serve_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        serve = f"http://127.0.0.1:{serve_port}"
        _wait("segal serve", lambda: _get(serve + "/health")[0] == 200, 120, logs, procs[1])
        print(f"\n{time.monotonic() - t0:.1f} s: run acquired, segal serve up")
        _wait("label-studio", lambda: urllib.request.urlopen(base + "/health", timeout=5).status == 200,
              READY_TIMEOUT, logs, procs[0])
        print(f"{time.monotonic() - t0:.1f} s: label studio up")
        yield {"api": Client(base), "serve": serve, "run": tmp_path / "run", "tasks": tasks_dir, "t0": t0,
               "ready": time.monotonic(),
               "logs": logs, "serve_proc": procs[1]}
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _retrieve_predictions(api: Client, pid: int, version: str) -> None:
    """The data manager's "Retrieve predictions", then ``version`` as the project's model version: Label
    Studio's prediction-score column (which the task list is ordered by) counts that version's only."""
    api.json("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
             {"selectedItems": {"all": True, "excluded": []}})
    api.json("PATCH", f"/api/projects/{pid}", {"model_version": version})


def _tasks(api: Client, pid: int, view: int | None = None) -> list[dict]:
    where = f"view={view}" if view is not None else f"project={pid}"
    return api.json("GET", f"/api/tasks?{where}&fields=all&page_size=200")["tasks"]


def _scores_by_id(api: Client, pid: int, version: str) -> dict[str, float]:
    out = {}
    for task in _tasks(api, pid):
        (prediction,) = [p for p in task["predictions"] if p["model_version"] == version]
        out[task["data"]["segal_id"]] = prediction["score"]
    return out


@pytest.mark.slow
def test_label_studio_drives_active_learning_through_segal_serve(started: dict):
    api, serve, run_dir, logs = started["api"], started["serve"], started["run"], started["logs"]
    run = open_run(run_dir)
    pool = run.pool
    ids = {pool.image_id(i): i for i in range(len(pool))}

    # the token: nothing without it, also not the health check
    assert _get(serve + "/health", token=None)[0] == 401
    assert _get(serve + "/health", token="wrong")[0] == 401

    project = api.json("POST", "/api/projects", {"title": "segal serve live",
                                                 "label_config": (started["tasks"] / "labeling_config.xml").read_text()})
    pid = project["id"]
    tasks = json.loads((started["tasks"] / "tasks.json").read_text())
    assert api.json("POST", f"/api/projects/{pid}/import", tasks)["task_count"] == len(tasks) == len(pool) - 8
    api.json("POST", "/api/storages/localfiles", {"project": pid, "title": "segal", "path": str(started["tasks"] / "images"),
                                                  "use_blob_urls": True})
    # the webhook first, with the token: connecting the backend then keeps it instead of adding one without
    api.json("POST", "/api/webhooks", {"project": pid, "url": serve + "/webhook", "send_payload": True,
                                       "send_for_all_actions": True, "headers": {"Authorization": f"Bearer {SERVE_TOKEN}"}})
    ml = api.json("POST", "/api/ml", {"project": pid, "url": serve, "title": "segal", "auth_method": "BASIC_AUTH",
                                      "basic_auth_user": "label-studio", "basic_auth_pass": SERVE_TOKEN})
    assert ml["state"] == "CO", ml  # connected: health and setup answered with the token
    assert [w["url"] for w in api.json("GET", f"/api/webhooks?project={pid}")] == [serve + "/webhook"]

    # predictions and scores appear on every task, from cycle 0's network and segal's own scores
    _retrieve_predictions(api, pid, "demo-cycle-0")
    print(f"{time.monotonic() - started['t0']:.1f} s: project connected, predictions retrieved")
    before = _scores_by_id(api, pid, "demo-cycle-0")
    served = json.loads((run_dir / "cycles" / "0" / "serve_scores.json").read_text())
    expected = dict(zip(served["indices"], served["scores"], strict=True))
    assert set(before) == {t["data"]["segal_id"] for t in tasks}
    for image_id, score in before.items():
        assert score == pytest.approx(expected[ids[image_id]], abs=1e-9)
    queried = json.loads((run_dir / "cycles" / "0" / "queries.json").read_text())
    for image_id, score in zip(queried["ids"], queried["scores"], strict=True):
        assert before[image_id] == pytest.approx(score, abs=1e-9)  # the score that chose it
    view = api.json("POST", "/api/dm/views", {"project": pid, "data": {"title": "by segal's score",
                                                                       "ordering": ["-tasks:predictions_score"]}})
    ordered = _tasks(api, pid, view=view["id"])
    listed = [before[t["data"]["segal_id"]] for t in ordered]
    assert listed == sorted(listed, reverse=True)  # Label Studio's task list, ordered by segal's score
    top = [t["data"]["segal_id"] for t in ordered[:RETRAIN_EVERY]]
    if os.environ.get("SEGAL_SERVE_SCREENSHOT"):  # what an annotator sees: the task list, segal's score first
        _screenshot(api.base, f"/projects/{pid}/data?tab={view['id']}", Path(os.environ["SEGAL_SERVE_SCREENSHOT"]))
    assert set(top) == set(queried["ids"])  # the top of the list is what the strategy would acquire

    # a bad annotation (nothing drawn) is refused by segal and changes nothing
    state_before = (run_dir / "state.json").read_bytes()
    by_id = {t["data"]["segal_id"]: t for t in ordered}
    api.json("POST", f"/api/tasks/{by_id[top[0]]['id']}/annotations", {"result": [], "was_cancelled": False})
    log = run_dir / "log.jsonl"
    refused = _wait("segal refuses the empty annotation", lambda: [json.loads(x) for x in log.read_text().splitlines()
                    if '"serve_refused"' in x], 30, logs)
    assert "is empty" in refused[-1]["error"]
    assert (run_dir / "state.json").read_bytes() == state_before
    assert _get(serve + "/health")[1]["labels_waiting"] == 0

    # the annotator labels the top tasks; segal imports each one and retrains after RETRAIN_EVERY of them
    for image_id in top:
        target = pool.load_target(ids[image_id])
        result = brush_result(target, pool.classes, BrushTarget(), image_id)
        api.json("POST", f"/api/tasks/{by_id[image_id]['id']}/annotations", {"result": result, "was_cancelled": False})
    health = _wait("retrained", lambda: (h := _get(serve + "/health")[1]).get("model_version") == "demo-cycle-1"
                   and not h["retraining"] and h, 150, logs, started["serve_proc"])
    assert health["cycle"] == 1 and health["last_error"] is None
    print(f"{time.monotonic() - started['t0']:.1f} s: retrained")
    state = PoolState.load(run_dir / "state.json")
    assert (state.cycle, state.stage, state.num_labeled) == (1, "await_labels", 8 + RETRAIN_EVERY)
    assert sorted(state.labeled[1]) == sorted(ids[i] for i in top) and set(state.human) == set(state.labeled[1])
    for image_id in top:
        import cv2

        stored = cv2.imread(str(run_dir / "labels" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(stored, pool.load_target(ids[image_id]))
    cycle0, cycle1 = (run_dir / "cycles" / c / "task.pt" for c in ("0", "1"))
    assert cycle1.read_bytes() != cycle0.read_bytes()  # a new checkpoint

    # the next predictions come from the new network: a new model version and moved scores
    _retrieve_predictions(api, pid, "demo-cycle-1")
    after = _scores_by_id(api, pid, "demo-cycle-1")
    assert set(after) == set(before)
    assert all(after[i] is None for i in top)  # labeled now: no score to rank them by
    unlabeled = [i for i in after if i not in top]
    moved = [i for i in unlabeled if after[i] != pytest.approx(before[i], abs=1e-6)]
    assert len(moved) == len(unlabeled), (len(moved), len(unlabeled))
    after_ordered = [after[t["data"]["segal_id"]] for t in _tasks(api, pid, view=view["id"])]
    assert after_ordered[: len(unlabeled)] == sorted(after_ordered[: len(unlabeled)], reverse=True)
    seconds, driven = time.monotonic() - started["t0"], time.monotonic() - started["ready"]
    print(f"\nlive segal serve round trip: {seconds:.1f} s in all, {driven:.1f} s once Label Studio was up "
          f"({len(tasks)} tasks, retrained after {RETRAIN_EVERY} labels)")
    (run_dir.parent / "duration.txt").write_text(f"total {seconds:.1f} s, after Label Studio's start {driven:.1f} s\n")
    assert driven < LIMIT
