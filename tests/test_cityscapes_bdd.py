"""Cityscapes and BDD100K end to end on small fixtures in their official layouts.

segal's mIoU is checked against the official ``cityscapesscripts`` pixel-level evaluator, both on
hand-made predictions and on the predictions a real (tiny) run exports; the shipped recipes are run
through the CLI for two cycles with random and VAAL acquisition.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from cityscapesscripts.helpers.labels import id2label, labels

from segal.cli import main
from segal.data import DATASETS
from segal.data.cityscapes import LABEL_TO_TRAIN
from segal.metrics import ConfusionMatrix

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
H, W = 32, 64
# the 19 evaluated classes, as label ids, and every storable label id (license plate, -1, is not)
EVAL_IDS = sorted(lb.id for lb in labels if not lb.ignoreInEval and lb.id >= 0)
ALL_IDS = sorted(lb.id for lb in labels if lb.id >= 0)
VOID_IDS = [i for i in ALL_IDS if i not in EVAL_IDS]


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), arr)
    return path


def _blocks(rng: np.random.Generator, values: list[int], h: int = H, w: int = W, block: int = 8,
            every: bool = False) -> np.ndarray:
    """A label map of ``block``-pixel squares, so a network has something learnable; ``every`` puts
    each value in at least one square."""
    coarse = rng.choice(values, size=(h // block, w // block))
    if every:
        assert coarse.size >= len(values)
        coarse.flat[: len(values)] = rng.permutation(values)
    return np.kron(coarse, np.ones((block, block), dtype=np.int64)).astype(np.uint8)


def _image_for(labels_map: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An RGB image whose colour follows the label id (plus noise)."""
    ids = labels_map.astype(np.int64)
    base = np.stack([(ids * 37) % 256, (ids * 91) % 256, (ids * 53) % 256], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


# ids absent from the Cityscapes fixture's ground truth: 31 (train) gets only false positives,
# 33 (bicycle) appears nowhere, so both conventions must give IoU 0 and NaN (skipped) for them
FP_ONLY_ID, ABSENT_ID = 31, 33
GT_IDS = [i for i in ALL_IDS if i not in (FP_ONLY_ID, ABSENT_ID)]


def make_cityscapes(root: Path, split: str, n: int, seed: int, h: int = H, w: int = W) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = []
    for k in range(n):
        city = ("aachen", "bochum", "frankfurt")[k % 3]
        stem = f"{city}_{k:06d}_000019"
        gt = _blocks(rng, GT_IDS, h, w, every=k == 0)
        _png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", gt)
        _png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _image_for(gt, rng))
        ids.append(stem)
    return ids


def make_bdd(root: Path, split: str, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = []
    for k in range(n):
        stem = f"{seed:02x}{k:02x}a1b2-c3d4e5f6"
        mask = _blocks(rng, list(range(19)) + [255], every=k == 0)
        path = root / "images" / "10k" / split / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), cv2.cvtColor(_image_for(mask, rng), cv2.COLOR_RGB2BGR))
        _png(root / "labels" / "sem_seg" / "masks" / split / f"{stem}.png", mask)
        ids.append(stem)
    return ids


# ---------------------------------------------------------------- the official evaluator
def official_miou(pred_files: list[Path], gt_files: list[Path], tmp: Path) -> tuple[float, dict]:
    """Class-level mean IoU of ``cityscapesscripts``' pixel-level evaluator, as it prints it."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev

    args = ev.args
    args.quiet, args.evalInstLevelScore, args.evalPixelAccuracy = True, False, False
    args.JSONOutput, args.exportFile = False, str(tmp / "official.json")
    result = ev.evaluateImgLists([str(p) for p in pred_files], [str(g) for g in gt_files], args)
    scores = result["classScores"]
    return ev.getScoreAverage(scores, args), scores


def official_predictions_for(gt_files: list[Path], prediction_dir: Path) -> list[Path]:
    """Match predictions to ground truth the evaluator's own way (``CITYSCAPES_RESULTS`` search)."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev

    ev.args.predictionPath, ev.args.predictionWalk = str(prediction_dir), None
    try:
        return [Path(ev.getPrediction(ev.args, str(g))) for g in gt_files]
    finally:
        ev.args.predictionPath, ev.args.predictionWalk = None, None


def _segal_miou(pairs) -> tuple[float, np.ndarray]:
    """segal's metric on (prediction label ids, ground-truth train ids) pairs."""
    cm = ConfusionMatrix(19)
    for pred_label_ids, gt_train in pairs:
        pred_train = LABEL_TO_TRAIN[pred_label_ids]
        assert (pred_train >= 0).all() and (pred_train < 19).all()
        cm.update(torch.from_numpy(gt_train.astype(np.int64)), torch.from_numpy(pred_train.astype(np.int64)))
    return cm.miou(), cm.iou()


def test_miou_equals_official_cityscapes_evaluator(tmp_path):
    make_cityscapes(tmp_path, "val", 3, seed=5)
    ds = DATASETS.get("cityscapes")(str(tmp_path), "val")
    gt_files = sorted((tmp_path / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    assert [g.name.replace("_gtFine_labelIds.png", "") for g in gt_files] == sorted(ds.ids)
    rng = np.random.default_rng(11)
    pred_dir, pred_files, pairs = tmp_path / "pred", [], []
    for index in range(len(ds)):
        _, gt_train, image_id = ds[index]
        stored = cv2.imread(str(ds.mask_paths[index]), cv2.IMREAD_UNCHANGED)
        # a segal-like prediction: only the 19 evaluated label ids; 30% of pixels corrupted, void
        # pixels predicted as anything, and some pixels predicted as the class missing from the GT
        pred = np.where(np.isin(stored, EVAL_IDS), stored, rng.choice(EVAL_IDS, stored.shape)).astype(np.uint8)
        noise = rng.random(stored.shape) < 0.3
        pred[noise] = rng.choice([i for i in EVAL_IDS if i != ABSENT_ID], int(noise.sum()))
        pred[index, :4] = FP_ONLY_ID
        pred[pred == ABSENT_ID] = EVAL_IDS[0]
        pred_files.append(_png(pred_dir / image_id[: image_id.index("_")] / f"{image_id}_pred.png", pred))
        pairs.append((pred, gt_train))
    # the evaluator sees every stored id, void ones included
    stored_ids = set(np.unique(np.concatenate([cv2.imread(str(g), cv2.IMREAD_UNCHANGED).ravel() for g in gt_files])))
    assert set(VOID_IDS) <= stored_ids and len(stored_ids) == len(ALL_IDS) - 2

    assert official_predictions_for(gt_files, pred_dir) == pred_files
    theirs, class_scores = official_miou(pred_files, gt_files, tmp_path)
    ours, iou = _segal_miou(pairs)
    assert math.isfinite(theirs) and 0.2 < theirs < 0.95
    assert ours == pytest.approx(theirs, abs=1e-6)
    # per class, in train-id order: a class with only false positives is 0 in both, a class absent
    # from both prediction and ground truth is NaN in both and left out of both means
    for train_id, lb in enumerate(sorted((lb for lb in labels if not lb.ignoreInEval and lb.id >= 0),
                                         key=lambda lb: lb.trainId)):
        official = class_scores[lb.name]
        if lb.id == ABSENT_ID:
            assert math.isnan(official) and math.isnan(iou[train_id])
        else:
            assert iou[train_id] == pytest.approx(official, abs=1e-9), lb.name
    assert class_scores[id2label[FP_ONLY_ID].name] == 0.0


def test_void_predictions_count_as_false_negatives_officially(tmp_path):
    """segal's networks never predict void, but the official evaluator accepts it: a void-id prediction
    on a valid pixel is a false negative of the true class and a false positive of nothing.  The exact
    relation: official mIoU = mean IoU of the first 19 classes of a 20-class matrix whose 20th column
    collects the void predictions."""
    make_cityscapes(tmp_path, "val", 2, seed=6)
    ds = DATASETS.get("cityscapes")(str(tmp_path), "val")
    gt_files = sorted((tmp_path / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    rng = np.random.default_rng(3)
    cm = ConfusionMatrix(20)
    pred_files = []
    for index in range(len(ds)):
        _, gt_train, image_id = ds[index]
        pred = rng.choice(EVAL_IDS + VOID_IDS, gt_train.shape).astype(np.uint8)
        pred_files.append(_png(tmp_path / "pred" / f"{image_id}_pred.png", pred))
        pred_train = np.where(LABEL_TO_TRAIN[pred] == 255, 19, LABEL_TO_TRAIN[pred])
        cm.update(torch.from_numpy(gt_train.astype(np.int64)), torch.from_numpy(pred_train.astype(np.int64)))
    theirs, _ = official_miou(pred_files, gt_files, tmp_path)
    assert float(np.nanmean(cm.iou()[:19])) == pytest.approx(theirs, abs=1e-9)


def test_confusion_matrix_rejects_out_of_range_predictions():
    cm = ConfusionMatrix(19)
    with pytest.raises(ValueError, match="outside 0..18"):  # 19·0 + 255 would land in cell (13, 8)
        cm.update(torch.tensor([0]), torch.tensor([255]))
    assert cm.matrix.sum() == 0


# ---------------------------------------------------------------- tiny recipe runs through the CLI
def _tiny_recipe(name: str, tmp: Path, strategy: str, keep_params: bool = False) -> Path:
    """The shipped recipe with only the sizes shrunk; everything else (model, optimiser, VAAL mode) kept."""
    data = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    data["model"]["weights"] = None
    data["train"].update(batch_size=2, eval_batch_size=2, num_workers=0)
    data["active"].update(initial=4, budget=2)
    if strategy == "vaal":
        data["active"]["strategy_params"].update(image_size=32, z_dim=8, width=8, steps=3, batch_size=4, mode="paper")
    elif not keep_params:
        del data["active"]["strategy_params"]  # VAAL's parameters are unknown keys to other strategies
    path = tmp / f"{name}-{strategy}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def acquire(name: str, root: Path, out: Path, strategy: str, cycles: int = 2, keep_params: bool = False) -> int:
    recipe = _tiny_recipe(name, out.parent, strategy, keep_params)
    return main(["acquire", str(recipe), "--data-root", str(root), "--output-dir", str(out), "--device", "cpu",
                 "--steps", "2", "--image-size", str(H // 2), str(W // 2), "--cycles", str(cycles), "--strategy", strategy,
                 "--quiet"])


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("data")
    cs, bdd = base / "cityscapes", base / "bdd100k"
    return {
        "cityscapes": (cs, make_cityscapes(cs, "train", 10, seed=1), make_cityscapes(cs, "val", 3, seed=2)),
        "bdd100k": (bdd, make_bdd(bdd, "train", 10, seed=1), make_bdd(bdd, "val", 3, seed=2)),
    }


@pytest.fixture(scope="module")
def random_runs(fixtures, tmp_path_factory):
    """One random-acquisition run per dataset, made on first use and shared by the tests that read runs."""
    runs: dict[str, tuple[int, Path]] = {}

    def get(name: str) -> tuple[int, Path]:
        if name not in runs:
            out = tmp_path_factory.mktemp(name) / "run"
            runs[name] = (acquire(name, fixtures[name][0], out, "random"), out)
        return runs[name]

    return get


def _check_run(code: int, run_dir: Path, train_ids: list[str], strategy: str) -> None:
    assert code == 0
    cycles = sorted(int(p.parent.name) for p in run_dir.glob("cycles/*/metrics.json"))
    assert cycles == [0, 1, 2]
    labeled = []
    for c in cycles:
        m = json.loads((run_dir / "cycles" / str(c) / "metrics.json").read_text())
        assert m["labeled"] == 4 + 2 * c and m["test_size"] == 3 and m["strategy"] == strategy
        assert 0.0 <= m["miou"] <= 1.0 and len(m["per_class_iou"]) == 19
    for c in (0, 1):
        q = json.loads((run_dir / "cycles" / str(c) / "queries.json").read_text())
        assert q["strategy"] == strategy and len(q["ids"]) == 2 and set(q["ids"]) <= set(train_ids)
        labeled += q["ids"]
    assert len(set(labeled)) == 4  # no image acquired twice
    assert not (run_dir / "cycles" / "2" / "queries.json").exists()


@pytest.mark.parametrize("strategy", ["random", "vaal"])
@pytest.mark.parametrize("dataset", ["cityscapes", "bdd100k"])
def test_recipe_two_cycles_on_fixture(dataset, strategy, fixtures, random_runs, tmp_path):
    root, train_ids, _ = fixtures[dataset]
    if strategy == "random":
        code, out = random_runs(dataset)
    else:
        out = tmp_path / "run"
        code = acquire(dataset, root, out, strategy)
    _check_run(code, out, train_ids, strategy)
    if strategy == "vaal":
        diag = json.loads((out / "cycles" / "0" / "queries.json").read_text())["diagnostics"]
        assert diag["mode"] == "paper" and diag["z_dim"] == 8 and diag["image_size"] == 32


def test_strategy_flag_on_a_vaal_recipe(fixtures, tmp_path):
    assert acquire("cityscapes", fixtures["cityscapes"][0], tmp_path / "run", "random", cycles=0, keep_params=True) == 0


@pytest.fixture(scope="module")
def predictions(random_runs, tmp_path_factory):
    """``segal evaluate RUN --predictions DIR`` on a dataset's random run, made on first use."""
    folders: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in folders:
            code, run_dir = random_runs(name)
            assert code == 0
            pred = tmp_path_factory.mktemp(f"{name}-pred")
            assert main(["evaluate", str(run_dir), "--predictions", str(pred)]) == 0
            folders[name] = pred
        return folders[name]

    return get


def test_official_evaluator_on_exported_predictions_equals_segal_miou(fixtures, random_runs, predictions, tmp_path):
    """The network runs at half the fixture's resolution; segal scores its upsampled logits against the
    full-size masks, exactly as the official evaluator scores the exported full-size predictions."""
    root = fixtures["cityscapes"][0]
    run_dir = random_runs("cityscapes")[1]
    gt_files = sorted((root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    for cycle in (0, 1, 2):
        pred_files = official_predictions_for(gt_files, predictions("cityscapes") / str(cycle))
        theirs, _ = official_miou(pred_files, gt_files, tmp_path)
        evaluated = json.loads((run_dir / "cycles" / str(cycle) / "eval_val.json").read_text())
        during_run = json.loads((run_dir / "cycles" / str(cycle) / "metrics.json").read_text())
        assert evaluated["miou"] == pytest.approx(theirs, abs=1e-6)
        assert during_run["miou"] == pytest.approx(theirs, abs=1e-6)


def test_prediction_export_encodings(fixtures, random_runs, predictions):
    """Cityscapes exports label ids (``<id>_gtFine_labelIds.png``), BDD100K exports train ids (``<id>.png``)."""
    from segal.device import Compute
    from segal.engine import predict_masks
    from segal.runs import open_run

    for name, suffix in (("cityscapes", "_gtFine_labelIds.png"), ("bdd100k", ".png")):
        _, _, val_ids = fixtures[name]
        run = open_run(random_runs(name)[1])
        model = run.load_task_model(2)
        expected = dict(predict_masks(model, run.test, np.arange(len(run.test)),
                                      compute=Compute(image_size=run.recipe.data.image_size)))
        folder = predictions(name) / "2"
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}{suffix}" for i in val_ids)
        for index in range(len(run.test)):
            stored = cv2.imread(str(folder / f"{run.test.image_id(index)}{suffix}"), cv2.IMREAD_UNCHANGED)
            assert stored.dtype == np.uint8 and stored.shape == (H, W)
            train_ids = expected[index]
            if name == "cityscapes":  # decode with cityscapesscripts' own table, not segal's
                assert set(np.unique(stored).tolist()) <= set(EVAL_IDS)
                decoded = np.vectorize(lambda v: id2label[int(v)].trainId)(stored)
                np.testing.assert_array_equal(decoded, train_ids)
            else:
                np.testing.assert_array_equal(stored, train_ids)
