"""The human oracle of a region-level run through the CLI: acquire → export → import → acquire.

20 demo scenes of 32×48 cut into 16-pixel patches (6 regions of 256 pixels each, region ``r`` of an
image is the square at row ``r // 3``, column ``r % 3``); a cycle queries 5% of the pool's pixels, six
patches.  The annotators' answers are written by hand, so every stored and trained-on pixel is known.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from segal.cli import main
from segal.errors import UserError
from segal.pool import PoolState
from segal.region_loop import RegionSteps
from segal.regions.cache import RegionCache
from segal.regions.human import (
    REGIONS_FILE,
    PendingImage,
    dumps,
    image_entry,
    merge_labels,
    paint_dominant,
    region_boxes,
    regions_document,
    take_pending,
)
from segal.regions.labels import dominant_labels
from segal.regions.state import PENDING, load_region_labels
from segal.runs import open_run
from tests.test_regions_loop import PATCH, H, W, region_recipe
from tests.tiny import TinySeg

CLASSES = 8  # the demo dataset's


def pattern(seed: int) -> np.ndarray:
    """An annotator's mask that differs from any prediction and from the ground truth."""
    return ((np.arange(H * W).reshape(H, W) // 5 + seed) % CLASSES).astype(np.uint8)


def test_boxes_masks_and_merges_by_hand():
    region_map = np.array([[0, 0, 1, 1, 1],
                           [0, 2, 2, 1, 1],
                           [3, 3, 2, 2, 1]], dtype=np.int32)
    boxes, pixels = region_boxes(region_map, np.array([2, 0, 5]))  # region 5 has no pixel here
    assert boxes.tolist() == [[1, 1, 3, 2], [0, 0, 2, 2], [0, 0, 0, 0]] and pixels.tolist() == [4, 3, 0]
    image = PendingImage(0, "a", (3, 5), np.array([0, 2]))
    assert image.to_label(region_map).sum() == 7
    painted = np.array([[4, 255, 9, 9, 9],  # one void pixel inside region 0 stays void; region 1 is not asked
                        [4, 5, 5, 9, 9],
                        [9, 9, 255, 5, 9]], dtype=np.uint8)
    taken = take_pending(Path("m.png"), image, region_map, painted, 255)
    assert taken.tolist() == [[4, 255, 255, 255, 255], [4, 5, 5, 255, 255], [255, 255, 255, 5, 255]]
    painted[region_map == 2] = 255
    with pytest.raises(UserError, match="leaves 1 pending regions unlabeled .* first is region 2"):
        take_pending(Path("m.png"), image, region_map, painted, 255)
    dominant = paint_dominant(region_map, {0: 1, 2: 6}, 255)
    assert dominant.tolist() == [[1, 1, 255, 255, 255], [1, 6, 6, 255, 255], [255, 255, 6, 6, 255]]
    earlier = np.where(region_map == 3, 7, 255).astype(np.uint8)
    once = merge_labels(earlier, dominant, image.to_label(region_map), 255)
    assert once.tolist() == [[1, 1, 255, 255, 255], [1, 6, 6, 255, 255], [7, 7, 6, 6, 255]]
    np.testing.assert_array_equal(merge_labels(once, dominant, image.to_label(region_map), 255), once)  # re-run
    doc = regions_document([image_entry(image, region_map)], TinySeg.classes, "t")
    assert json.loads(dumps(doc)) == doc and doc["images"][0]["regions"][1] == {
        "region": 2, "bbox": [1, 1, 3, 2], "pixels": 4, "class": None}


@pytest.fixture
def human_run(tmp_path):
    data = region_recipe(tmp_path, oracle="precise", cycles=2)
    data["active"]["oracle"] = "human"
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["acquire", str(path), "--quiet"]) == 0
    return path, tmp_path / "run"


def region_state(run_dir: Path):
    state = PoolState.load(run_dir / "state.json")
    return state, load_region_labels(state, run_dir / "state.json", RegionCache.open(run_dir / "regions").offsets)


def pending_by_id(run_dir: Path) -> dict[str, np.ndarray]:
    """Image id → H×W bool of its pending regions' pixels, from the region labels and the grid by hand."""
    run = open_run(run_dir)
    _, labels = region_state(run_dir)
    out = {}
    for i in labels.images_pending().tolist():
        local = np.flatnonzero(labels.status[labels.offsets[i]:labels.offsets[i + 1]] == PENDING)
        area = np.zeros((H, W), bool)
        for r in local.tolist():
            y, x = divmod(r, W // PATCH)
            area[y * PATCH:(y + 1) * PATCH, x * PATCH:(x + 1) * PATCH] = True
        out[run.pool.image_id(i)] = area
    return out


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """state.json, the region labels file and every stored label, byte for byte."""
    files = [run_dir / "state.json", *run_dir.glob("regions-labels-*.npy"), *sorted((run_dir / "labels").glob("*"))]
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in files}


def stored(run_dir: Path, image_id: str) -> np.ndarray:
    return cv2.imread(str(run_dir / "labels" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)


def test_acquire_with_a_human_oracle_marks_the_queried_regions_pending(human_run):
    _, run_dir = human_run
    state, labels = region_state(run_dir)
    queries = json.loads((run_dir / "cycles" / "0" / "queries.json").read_text())
    assert state.stage == "await_labels" and state.cycle == 0 and not state.pending
    assert labels.pending_regions().tolist() == sorted(queries["regions"]) and len(queries["regions"]) == 6
    assert labels.images_pending().tolist() == queries["indices"]
    assert state.regions["pending"] == 6
    assert main(["acquire", str(run_dir), "--quiet"]) == 0  # waiting: nothing changes
    assert region_state(run_dir)[1] == labels


def test_png_round_trip_takes_only_the_pending_pixels_and_trains_on_them(human_run, tmp_path):
    recipe, run_dir = human_run
    out = tmp_path / "export"
    assert main(["export", str(run_dir), "--format", "png", "--out", str(out)]) == 0
    areas = pending_by_id(run_dir)
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == sorted(areas)
    for image_id, area in areas.items():  # the pre-annotation and the to-label layer cover the pending regions
        exported = cv2.imread(str(out / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        assert ((exported != 255) == area).all()
        np.testing.assert_array_equal(cv2.imread(str(out / "to_label" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED),
                                      area.astype(np.uint8) * 255)
    doc = json.loads((out / REGIONS_FILE).read_text())
    assert doc["format"] == "segal-regions" and doc["version"] == 1 and len(doc["classes"]) == CLASSES
    _, labels = region_state(run_dir)
    run = open_run(run_dir)
    for entry in doc["images"]:
        i = next(k for k in range(len(run.pool)) if run.pool.image_id(k) == entry["id"])
        local = np.flatnonzero(labels.status[labels.offsets[i]:labels.offsets[i + 1]] == PENDING).tolist()
        assert (entry["width"], entry["height"]) == (W, H)
        assert entry["regions"] == [{"region": r, "bbox": [r % 3 * PATCH, r // 3 * PATCH, PATCH, PATCH],
                                     "pixels": PATCH * PATCH, "class": None} for r in local]

    for n, image_id in enumerate(areas):  # annotators paint the whole image, not only the area asked for
        cv2.imwrite(str(out / "masks" / f"{image_id}.png"), pattern(n))
    assert main(["import", str(run_dir), str(out / "masks")]) == 0
    state, after = region_state(run_dir)
    assert state.stage == "train" and state.cycle == 1 and after.num_pending == 0
    assert (after.status[labels.pending_regions()] == 1).all()
    for n, (image_id, area) in enumerate(areas.items()):
        np.testing.assert_array_equal(stored(run_dir, image_id), np.where(area, pattern(n), 255))

    # what cycle 1 trains on: the annotators' pixels inside the pending regions, nothing else of those images
    run = open_run(run_dir)
    steps = RegionSteps(run, progress=None)  # type: ignore[arg-type]
    steps.resume(state)
    view = steps.training_view(1)
    for n, (image_id, area) in enumerate(areas.items()):
        i = next(k for k in range(len(run.pool)) if run.pool.image_id(k) == image_id)
        expected = np.where(area, pattern(n), 255)
        if i in state.labeled[0]:  # an initial whole image keeps its ground truth (cannot be pending)
            pytest.fail("an initial image had pending regions")
        np.testing.assert_array_equal(view.load_target(i), expected)
    initial = state.labeled[0][0]
    np.testing.assert_array_equal(view.load_target(initial), run.pool.load_target(initial))

    assert main(["import", str(run_dir), str(out / "masks")]) == 2  # twice: refused, nothing changes
    assert main(["acquire", str(recipe), "--quiet"]) == 0  # trains on them, acquires, waits again
    state, labels2 = region_state(run_dir)
    assert state.stage == "await_labels" and state.cycle == 1 and labels2.num_pending > 0
    m = json.loads((run_dir / "cycles" / "1" / "metrics.json").read_text())
    assert m["cost"]["regions_labeled"] == 4 * 6 + 6 and m["cost"]["pixels_labeled"] == (4 * 6 + 6) * PATCH * PATCH


def test_second_cycle_merges_with_the_first_imports(human_run, tmp_path):
    recipe, run_dir = human_run
    merged: dict[str, np.ndarray] = {}
    for cycle in (0, 1):
        out = tmp_path / f"export{cycle}"
        assert main(["export", str(run_dir), "--format", "png", "--out", str(out)]) == 0
        for image_id, area in pending_by_id(run_dir).items():
            cv2.imwrite(str(out / "masks" / f"{image_id}.png"), pattern(cycle))
            merged[image_id] = np.where(area, pattern(cycle), merged.get(image_id, np.full((H, W), 255, np.uint8)))
        assert main(["import", str(run_dir), str(out / "masks")]) == 0
        assert main(["acquire", str(run_dir), "--quiet"]) == 0
    assert PoolState.load(run_dir / "state.json").stage == "done"
    for image_id, expected in merged.items():
        np.testing.assert_array_equal(stored(run_dir, image_id), expected)


def test_cvat_mask_round_trip_stores_the_pre_annotation_inside_the_area(human_run, tmp_path):
    _, run_dir = human_run
    assert main(["export", str(run_dir), "--format", "png", "--out", str(tmp_path / "png")]) == 0
    assert main(["export", str(run_dir), "--format", "cvat-mask", "--out", str(tmp_path / "cvat")]) == 0
    assert (tmp_path / "cvat" / REGIONS_FILE).is_file()
    areas = pending_by_id(run_dir)
    assert main(["import", str(run_dir), str(tmp_path / "cvat" / "cvat-mask.zip")]) == 0  # accepted as exported
    for image_id in areas:
        prediction = cv2.imread(str(tmp_path / "png" / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(stored(run_dir, image_id), prediction)


def test_a_coco_export_folder_imports_whole_its_regions_json_is_not_taken_for_annotations(human_run, tmp_path):
    _, run_dir = human_run
    assert main(["export", str(run_dir), "--format", "png", "--out", str(tmp_path / "png")]) == 0
    assert main(["export", str(run_dir), "--format", "coco", "--out", str(tmp_path / "coco")]) == 0
    assert (tmp_path / "coco" / REGIONS_FILE).is_file()
    assert main(["import", str(run_dir), str(tmp_path / "coco")]) == 0  # the folder, not its annotation file
    images = [entry["id"] for entry in json.loads((tmp_path / "coco" / REGIONS_FILE).read_text())["images"]]
    assert images
    for image_id in images:
        prediction = cv2.imread(str(tmp_path / "png" / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(stored(run_dir, image_id), prediction)


def test_dominant_labels_json_round_trip(human_run, tmp_path):
    recipe, run_dir = human_run
    out = tmp_path / "export"
    assert main(["export", str(run_dir), "--format", "labelstudio", "--out", str(out)]) == 0
    run = open_run(run_dir)
    names = run.pool.classes.names
    doc = json.loads((out / REGIONS_FILE).read_text())
    expected = {}
    for entry in doc["images"]:  # a script fills one class per region: the ground truth's majority
        i = next(k for k in range(len(run.pool)) if run.pool.image_id(k) == entry["id"])
        gt = run.pool.load_target(i)
        grid = RegionCache.open(run_dir / "regions").region_map(i)
        local = np.asarray([r["region"] for r in entry["regions"]])
        classes = dominant_labels(grid, gt, local)
        mask = np.full((H, W), 255, np.uint8)
        for region, c in zip(entry["regions"], classes.tolist(), strict=True):
            region["class"] = names[c]
            mask[grid == region["region"]] = c
        if not expected:  # the annotator says the first region shows no class: it stays void, yet counts as labeled
            entry["regions"][0]["class"] = "void"
            mask[grid == entry["regions"][0]["region"]] = 255
            void_region = (entry["id"], entry["regions"][0]["region"])
        expected[entry["id"]] = mask
    filled = tmp_path / "filled.json"  # any name: the file says what it is
    filled.write_text(json.dumps(doc))
    assert main(["import", str(run_dir), str(filled)]) == 0
    for image_id, mask in expected.items():
        np.testing.assert_array_equal(stored(run_dir, image_id), mask)
    run = open_run(run_dir)
    image = next(k for k in range(len(run.pool)) if run.pool.image_id(k) == void_region[0])
    labels = load_region_labels(PoolState.load(run_dir / "state.json"), run_dir / "state.json",
                                RegionCache.open(run_dir / "regions").offsets)
    assert void_region[1] in labels.labeled_regions(image).tolist()
    run.close()
    assert main(["acquire", str(recipe), "--quiet"]) == 0
    assert PoolState.load(run_dir / "state.json").cycle == 1


def _edit_json(out: Path, run_dir: Path, change) -> Path:
    doc = json.loads((out / REGIONS_FILE).read_text())
    for entry in doc["images"]:
        for region in entry["regions"]:
            region["class"] = "road" if "road" in doc["classes"] else doc["classes"][0]
    change(doc, region_state(run_dir)[1], open_run(run_dir).pool)
    path = out / REGIONS_FILE
    path.write_text(json.dumps(doc))
    return path


def _not_pending(doc, labels, pool):
    entry = doc["images"][0]
    i = next(k for k in range(len(pool)) if pool.image_id(k) == entry["id"])
    status = labels.status[labels.offsets[i]:labels.offsets[i + 1]]
    entry["regions"][0]["region"] = int(np.flatnonzero(status != PENDING)[0])


def _not_queried(doc, labels, pool):
    queried = set(labels.images_pending().tolist())
    other = next(k for k in range(len(pool)) if k not in queried)
    doc["images"][0]["id"] = pool.image_id(other)


BAD_JSON = {
    "out of range": (lambda doc, labels, pool: doc["images"][0]["regions"][0].update(region=6), "is out of range"),
    "region not pending": (_not_pending, "was not queried (not pending)"),
    "image not queried": (_not_queried, "was not queried (not pending)"),
    "unknown class": (lambda doc, labels, pool: doc["images"][0]["regions"][0].update({"class": "dragon"}),
                      "unknown class name 'dragon'"),
    "no class": (lambda doc, labels, pool: doc["images"][-1]["regions"][-1].update({"class": None}),
                 "has no class"),
    "region missing": (lambda doc, labels, pool: doc["images"][0]["regions"].pop(), "have no entry"),
}


@pytest.fixture(scope="module")
def second_cycle(tmp_path_factory):
    """A run waiting in cycle 1, with cycle 1's export; cycle 0's labels were imported (they must survive)."""
    root = tmp_path_factory.mktemp("second")
    data = region_recipe(root, cycles=2)
    data["active"]["oracle"] = "human"
    (root / "recipe.yaml").write_text(yaml.safe_dump(data))
    run_dir = root / "run"
    assert main(["acquire", str(root / "recipe.yaml"), "--quiet"]) == 0
    assert main(["export", str(run_dir), "--format", "png", "--out", str(root / "first")]) == 0
    assert main(["import", str(run_dir), str(_edit_json(root / "first", run_dir, lambda *a: None))]) == 0
    assert main(["acquire", str(run_dir), "--quiet"]) == 0
    assert main(["export", str(run_dir), "--format", "png", "--out", str(root / "export")]) == 0
    return root


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_bad_dominant_labels_change_nothing(second_cycle, tmp_path, capsys, case):
    run_dir, out = tmp_path / "run", tmp_path / "export"
    shutil.copytree(second_cycle / "run", run_dir)
    shutil.copytree(second_cycle / "export", out)
    change, message = BAD_JSON[case]
    before = snapshot(run_dir)
    assert any(name.startswith("labels/") for name in before)
    capsys.readouterr()
    path = _edit_json(out, run_dir, change)
    assert main(["import", str(run_dir), str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(path) in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert snapshot(run_dir) == before
    assert not list(run_dir.glob(".import-*"))


def test_a_mask_that_leaves_a_pending_region_void_is_refused(human_run, tmp_path, capsys):
    _, run_dir = human_run
    out = tmp_path / "export"
    assert main(["export", str(run_dir), "--format", "png", "--out", str(out)]) == 0
    areas = pending_by_id(run_dir)
    victim = sorted(areas)[0]
    mask = np.where(areas[victim], 1, 255).astype(np.uint8)
    ys, xs = np.nonzero(areas[victim])
    mask[ys[0]:ys[0] + PATCH, xs[0]:xs[0] + PATCH] = 255  # the first pending region left unpainted
    cv2.imwrite(str(out / "masks" / f"{victim}.png"), mask)
    before = snapshot(run_dir)
    capsys.readouterr()
    assert main(["import", str(run_dir), str(out / "masks")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"the mask of {victim!r} leaves 1 pending regions unlabeled" in err and len(err.splitlines()) == 1
    assert snapshot(run_dir) == before


def test_a_lost_label_file_is_an_error(human_run, tmp_path, capsys):
    recipe, run_dir = human_run
    out = tmp_path / "export"
    assert main(["export", str(run_dir), "--format", "png", "--out", str(out)]) == 0
    assert main(["import", str(run_dir), str(out / "masks")]) == 0  # the pre-annotation, accepted as it is
    victim = sorted((run_dir / "labels").glob("*.png"))[0]
    victim.unlink()
    capsys.readouterr()
    assert main(["acquire", str(recipe), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is missing" in err and victim.name in err and len(err.splitlines()) == 1


def test_a_region_run_keeps_its_oracle(human_run, tmp_path, capsys):
    recipe, run_dir = human_run
    data = yaml.safe_load(recipe.read_text())
    data["active"]["oracle"] = "simulated"
    recipe.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main(["acquire", str(recipe), "--quiet"]) == 2
    assert "active.oracle" in capsys.readouterr().err


def test_python_api_round_trip(tmp_path):
    """The same loop from Python: ActiveLoop stops with pending regions, export_pending / import_labels."""
    from segal.config import recipe_from_dict
    from segal.human import export_pending, import_labels
    from segal.loop import ActiveLoop
    from segal.runs import start_run

    data = region_recipe(tmp_path, cycles=1)
    data["active"]["oracle"] = "human"
    with start_run(recipe_from_dict(data), "<test>") as run:
        ActiveLoop(run).run_loop()
    run_dir = tmp_path / "run"
    main_file = export_pending(run_dir, "coco", tmp_path / "coco")
    assert main_file.name == "instances_default.json"
    doc = json.loads((tmp_path / "coco" / REGIONS_FILE).read_text())
    for entry in doc["images"]:
        for region in entry["regions"]:
            region["class"] = doc["classes"][1]
    filled = tmp_path / "coco" / REGIONS_FILE
    filled.write_text(json.dumps(doc))
    assert import_labels(run_dir, filled) == len(doc["images"])
    for image_id, area in pending_by_id(run_dir).items():
        raise AssertionError(f"{image_id} still pending ({area.sum()} pixels)")
    for entry in doc["images"]:
        np.testing.assert_array_equal(stored(run_dir, entry["id"]) == 1, stored(run_dir, entry["id"]) != 255)
        assert (stored(run_dir, entry["id"]) == 1).sum() == PATCH * PATCH * len(entry["regions"])
    with start_run(recipe_from_dict(data), "<test>") as run:
        ActiveLoop(run).run_loop()
    assert PoolState.load(run_dir / "state.json").stage == "done"
