"""A real Label Studio server accepts segal's export and its JSON export imports back to the same masks.

The second test is a region run's round trip through the CLI: ``segal acquire`` (``active.unit: region``,
``active.oracle: human``) → ``segal export --format labelstudio`` → Label Studio → an annotation submitted
through the API → Label Studio's JSON export → ``segal import`` → ``segal acquire`` trains the next cycle.

Needs the ``label-studio`` executable (its own venv is fine): set ``SEGAL_LABEL_STUDIO`` to it or put it
on PATH; skipped otherwise.  The server runs on a free loopback port with a throwaway data dir and the
legacy ``Token`` auth enabled (``--enable-legacy-api-token``, off by default since 1.17).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from segal.cli import main
from segal.data.base import ClassSet
from segal.interchange import ExportItem, export_batch, import_masks
from segal.interchange.base import TO_LABEL_NAME
from segal.interchange.brush_rle import mask_to_rle, rle_to_mask
from segal.interchange.labelstudio import CONFIG_FILE, FROM_NAME, LOCAL_ROOT_ENV, MARKER_FROM_NAME
from segal.pool import PoolState
from segal.regions.human import REGIONS_FILE
from tests.test_regions_loop import PATCH, H, W, region_recipe

TOKEN = "segal-live-test-token-0123456789"
READY_TIMEOUT = float(os.environ.get("SEGAL_LABEL_STUDIO_READY_S", 180))  # first start migrates a fresh database
# "traffic sign" has a space: Label Studio must keep it intact in the config, predictions and export.
CLASSES = ClassSet(("road", "traffic sign", "sky"), ((128, 64, 128), (220, 220, 0), (70, 130, 180)))


def _executable() -> str:
    exe = os.environ.get("SEGAL_LABEL_STUDIO") or shutil.which("label-studio")
    if not exe or not Path(exe).is_file():
        pytest.skip("label-studio not found (set SEGAL_LABEL_STUDIO to its executable or put it on PATH)")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """Just enough of the REST API, with urllib and the legacy token."""

    def __init__(self, base: str) -> None:
        self.base = base

    def request(self, method: str, path: str, body: object = None, timeout: float = 60.0) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Token {TOKEN}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}") from None

    def json(self, method: str, path: str, body: object = None) -> object:
        return json.loads(self.request(method, path, body))


@pytest.fixture
def label_studio(tmp_path: Path) -> Iterator[Client]:
    exe = _executable()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "ls-data"
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(tmp_path),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        # No error reporting to Sentry: nothing leaves the machine, and Label Studio 1.23's call into
        # sentry-sdk 3 (which dropped its ``send_default_pii`` option) is never made.
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
    }
    env.pop("HOST", None)
    cmd = [exe, "start", "--no-browser", "--internal-host", "127.0.0.1", "--host", base, "--port", str(port),
           "--data-dir", str(data_dir), "--username", "u@example.com", "--password", "segal-live-pw-1",
           "--user-token", TOKEN, "--enable-legacy-api-token", "--log-level", "WARNING"]
    log = (tmp_path / "label-studio.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"label-studio exited with {proc.returncode}:\n{_tail(tmp_path)}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"label-studio not ready after {READY_TIMEOUT:.0f} s:\n{_tail(tmp_path)}")
            time.sleep(1.0)
        yield Client(base)
    finally:
        _stop(proc)
        log.close()


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "label-studio.log").read_text(errors="replace")[-3000:]


def _stop(proc: subprocess.Popen) -> None:
    """The whole process group: ``label-studio start`` may leave children behind."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _items() -> list[ExportItem]:
    rng = np.random.default_rng(11)
    out = []
    for k, (h, w) in enumerate([(37, 53), (24, 30)]):
        coarse = rng.integers(0, len(CLASSES) + 1, (h // 4 + 1, w // 4 + 1))
        mask = np.repeat(np.repeat(coarse, 4, 0), 4, 1)[:h, :w].astype(np.uint8)
        mask[mask == len(CLASSES)] = 255
        mask.ravel()[: len(CLASSES) + 1] = [*range(len(CLASSES)), 255]  # every class and ignore
        mask[-1, -1] = 1  # single-pixel speck
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out.append(ExportItem(id=f"live_{k:02d}", image=image, image_path=None, prediction=mask, score=0.25 + k / 3))
    return out


@pytest.mark.slow
def test_label_studio_round_trip(label_studio: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    api = label_studio
    items = _items()
    by_id = {item.id: item for item in items}
    monkeypatch.setenv(LOCAL_ROOT_ENV, str(tmp_path))  # as the annotator's server sees it: local-files URLs
    out = tmp_path / "export"
    tasks_json = export_batch("labelstudio", out, items, CLASSES, task_name="live-cycle-1")

    project = api.json("POST", "/api/projects", {"title": "segal live", "label_config": (out / CONFIG_FILE).read_text()})
    pid = project["id"]
    labels = api.json("GET", f"/api/projects/{pid}")["parsed_label_config"]["tag"]["labels"]
    assert labels == list(CLASSES.names)

    imported = api.json("POST", f"/api/projects/{pid}/import", json.loads(tasks_json.read_text()))
    assert imported["task_count"] == len(items)
    assert imported["prediction_count"] == len(items)

    # segal's image URLs are served once a local-files storage covers the export's images folder.
    api.json("POST", "/api/storages/localfiles", {"project": pid, "title": "segal", "path": str(out / "images"),
                                                  "use_blob_urls": True})

    tasks = api.json("GET", f"/api/tasks?project={pid}&fields=all&page_size=100")["tasks"]
    assert sorted(t["data"]["segal_id"] for t in tasks) == sorted(by_id)
    for task in tasks:
        item = by_id[task["data"]["segal_id"]]
        served = api.request("GET", task["data"]["image"])
        assert served == (out / "images" / f"{item.id}.png").read_bytes()
        (prediction,) = api.json("GET", f"/api/predictions?task={task['id']}")
        assert prediction["score"] == pytest.approx(item.score)  # the acquisition score, to order tasks by
        h, w = item.prediction.shape
        painted = np.full((h, w), 255, np.uint8)
        for r in prediction["result"]:
            assert (r["type"], r["original_height"], r["original_width"]) == ("brushlabels", h, w)
            painted[rle_to_mask(r["value"]["rle"], h, w)] = CLASSES.names.index(r["value"]["brushlabels"][0])
        np.testing.assert_array_equal(painted, item.prediction, err_msg=item.id)
        # the annotator accepts the pre-annotation unchanged
        api.json("POST", f"/api/tasks/{task['id']}/annotations",
                 {"result": prediction["result"], "was_cancelled": False, "ground_truth": False})

    export = api.request("GET", f"/api/projects/{pid}/export?exportType=JSON", timeout=120)
    path = tmp_path / "label-studio-export.json"
    path.write_bytes(export)
    got = import_masks(path, CLASSES, {item.id: item.prediction.shape for item in items})
    assert sorted(got) == sorted(by_id)
    for item in items:
        np.testing.assert_array_equal(got[item.id], item.prediction, err_msg=item.id)


def _frame(area: np.ndarray) -> np.ndarray:
    """By hand: the pixels outside ``area`` with an ``area`` pixel among their 8 neighbours (1-pixel outline)."""
    h, w = area.shape
    padded = np.pad(area, 1)
    near = np.zeros_like(area)
    for dy in range(3):
        for dx in range(3):
            near |= padded[dy:dy + h, dx:dx + w]
    return near & ~area


@pytest.mark.slow
def test_label_studio_region_round_trip(label_studio: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    api = label_studio
    data = region_recipe(tmp_path, oracle="precise", cycles=2)
    data["active"]["oracle"] = "human"
    recipe, run_dir, out = tmp_path / "recipe.yaml", tmp_path / "run", tmp_path / "export"
    recipe.write_text(yaml.safe_dump(data))
    assert main(["acquire", str(recipe), "--quiet"]) == 0  # trains cycle 0, queries regions, waits for labels
    monkeypatch.setenv(LOCAL_ROOT_ENV, str(tmp_path))
    assert main(["export", str(run_dir), "--format", "labelstudio", "--out", str(out)]) == 0

    areas: dict[str, np.ndarray] = {}  # image id → its pending regions' pixels, from regions.json's boxes
    for entry in json.loads((out / REGIONS_FILE).read_text())["images"]:
        area = np.zeros((entry["height"], entry["width"]), bool)
        for region in entry["regions"]:
            x, y, w, h = region["bbox"]
            area[y:y + h, x:x + w] = True
        assert area.sum() == sum(r["pixels"] for r in entry["regions"])  # grid patches: boxes are exact
        areas[entry["id"]] = area
    num_regions = sum(len(e["regions"]) for e in json.loads((out / REGIONS_FILE).read_text())["images"])
    assert areas and num_regions == int(0.05 * 20 * H * W) // (PATCH * PATCH)

    project = api.json("POST", "/api/projects", {"title": "segal regions", "label_config": (out / CONFIG_FILE).read_text()})
    pid = project["id"]
    parsed = api.json("GET", f"/api/projects/{pid}")["parsed_label_config"]
    names = list(parsed[FROM_NAME]["labels"])
    assert parsed[MARKER_FROM_NAME]["labels"] == [TO_LABEL_NAME] and TO_LABEL_NAME not in names
    imported = api.json("POST", f"/api/projects/{pid}/import", json.loads((out / "tasks.json").read_text()))
    assert imported["task_count"] == imported["prediction_count"] == len(areas)
    api.json("POST", "/api/storages/localfiles", {"project": pid, "title": "segal", "path": str(out / "images"),
                                                  "use_blob_urls": True})

    painted: dict[str, int] = {}
    tasks = api.json("GET", f"/api/tasks?project={pid}&fields=all&page_size=100")["tasks"]
    assert sorted(t["data"]["segal_id"] for t in tasks) == sorted(areas)
    for n, task in enumerate(tasks):
        image_id = task["data"]["segal_id"]
        area = areas[image_id]
        (image_file,) = (out / "images").glob(f"{image_id}.*")
        assert api.request("GET", task["data"]["image"]) == image_file.read_bytes()
        (prediction,) = api.json("GET", f"/api/predictions?task={task['id']}")
        markers = [r for r in prediction["result"] if r["from_name"] == MARKER_FROM_NAME]
        (marker,) = markers  # kept by Label Studio as exported: read-only, the outline just outside the area
        assert marker["readonly"] is True and marker["value"]["brushlabels"] == [TO_LABEL_NAME]
        np.testing.assert_array_equal(rle_to_mask(marker["value"]["rle"], H, W), _frame(area), err_msg=image_id)
        for r in prediction["result"]:  # the pre-annotation lies inside the area only
            if r is not marker:
                assert not (rle_to_mask(r["value"]["rle"], H, W) & ~area).any(), image_id
        # the annotator paints one class over the whole image (more than asked); the outline stays in the result
        painted[image_id] = n % len(names)
        stroke = {"id": f"stroke{n}", "from_name": FROM_NAME, "to_name": "image", "type": "brushlabels",
                  "original_width": W, "original_height": H, "image_rotation": 0,
                  "value": {"format": "rle", "rle": mask_to_rle(np.ones((H, W), bool)),
                            "brushlabels": [names[painted[image_id]]]}}
        api.json("POST", f"/api/tasks/{task['id']}/annotations",
                 {"result": [marker, stroke], "was_cancelled": False, "ground_truth": False})

    export = tmp_path / "label-studio-export.json"
    export.write_bytes(api.request("GET", f"/api/projects/{pid}/export?exportType=JSON", timeout=120))
    assert main(["import", str(run_dir), str(export)]) == 0
    for image_id, area in areas.items():  # only the queried regions' pixels are taken, in the painted class
        stored = cv2.imread(str(run_dir / "labels" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(stored, np.where(area, painted[image_id], 255).astype(np.uint8), err_msg=image_id)
    state = PoolState.load(run_dir / "state.json")
    assert (state.stage, state.cycle) == ("train", 1)

    assert main(["acquire", str(recipe), "--quiet"]) == 0  # trains cycle 1 on them, then queries again
    state = PoolState.load(run_dir / "state.json")
    assert (state.stage, state.cycle) == ("await_labels", 1)
    cost = json.loads((run_dir / "cycles" / "1" / "metrics.json").read_text())["cost"]
    initial_regions = data["active"]["initial"] * (H // PATCH) * (W // PATCH)
    assert cost["regions_labeled"] == initial_regions + num_regions
    assert cost["pixels_labeled"] == (initial_regions + num_regions) * PATCH * PATCH
