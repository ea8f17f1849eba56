"""Contracts driven by the registries: every registered strategy, dataset adapter and model is tested
the moment it is registered, on tiny inputs (as timm tests every model in its registry).

* A strategy returns exactly ``budget`` unique unlabeled indices with finite scores, the same ones
  under the same seed; a task-agnostic one (``needs_model = False``) never touches the task network
  (it gets a tripwire) nor the committee hooks.  Deliberately broken strategies, registered here for
  the length of one test, fail the contract.
* An adapter yields well-typed (image, target, id) with stable unique ids, and names the file when a
  mask is missing.  Each adapter needs a fixture builder in ``ADAPTER_FIXTURES``: a new adapter
  without one fails until it gets one.
* A model maps ``B×3×H×W`` to ``B×C×H×W`` logits (segmentation) or ``B×C`` (classification).
"""

from __future__ import annotations

import contextlib
import math
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segal.data import DATASETS
from segal.errors import UserError
from segal.models import MODELS
from segal.strategies import STRATEGIES, make_strategy
from segal.strategies.base import AcquisitionContext, Selection, Strategy
from tests.test_datasets import make_bdd, make_camvid, make_cityscapes, make_folder
from tests.test_datasets_classification import make_caltech, make_cifar100, make_imagenet
from tests.test_strategies_baselines import make_ctx

# ---------------------------------------------------------------------- strategies

# Parameters that keep each strategy to a fraction of a second on the 24-image pools of make_ctx;
# a strategy not named here runs with its defaults.
FAST_PARAMS: dict[str, dict] = {
    "coreset": {"chunk": 5},
    "mc_dropout": {"T": 3},
    "ensemble_varratio": {"M": 2},
    "qbc": {"M": 2},
    "suggestive_annotation": {"K": 2},
    "vaal": {"image_size": 16, "z_dim": 4, "width": 4, "steps": 3, "batch_size": 8},
}


class Tripwire:
    """Stands in for the task network and the committee hooks: any use fails the test."""

    def __init__(self, what: str):
        object.__setattr__(self, "_what", what)

    def _trip(self, how: str):
        raise AssertionError(f"a task-agnostic strategy used the {object.__getattribute__(self, '_what')} ({how})")

    def __getattribute__(self, name: str):
        object.__getattribute__(self, "_trip")(f".{name}")

    def __call__(self, *args, **kwargs):
        object.__getattribute__(self, "_trip")("called")

    def __bool__(self):
        object.__getattribute__(self, "_trip")("truth value")


def contract_ctx(name: str, task: str, workdir: Path) -> AcquisitionContext:
    ctx, _ = make_ctx(task, workdir)
    if not STRATEGIES.get(name).needs_model:
        ctx.model = Tripwire("task network")  # type: ignore[assignment]
        ctx.build_model = Tripwire("build_model hook")  # type: ignore[assignment]
        ctx.train_model = Tripwire("train_model hook")  # type: ignore[assignment]
    return ctx


def check_strategy_contract(name: str, task: str, tmp_path: Path) -> Selection:
    """The contract itself (also run against the broken strategies below)."""
    build = lambda: make_strategy(name, FAST_PARAMS.get(name, {}), "<contract test>")  # noqa: E731
    ctx = contract_ctx(name, task, tmp_path / "first")
    selection = build().select(ctx)
    chosen = np.asarray(selection.indices)
    assert chosen.dtype.kind in "iu", f"{name}: indices of dtype {chosen.dtype}"
    assert len(chosen) == ctx.budget, f"{name}: {len(chosen)} indices for a budget of {ctx.budget}"
    assert len(np.unique(chosen)) == len(chosen), f"{name}: an index is chosen twice"
    assert np.isin(chosen, ctx.unlabeled).all(), f"{name}: a chosen index is not unlabeled"
    if selection.scores is not None:
        assert len(selection.scores) == ctx.budget, f"{name}: {len(selection.scores)} scores"
        assert all(math.isfinite(float(s)) for s in selection.scores), f"{name}: a score is not finite"
    again = build().select(contract_ctx(name, task, tmp_path / "again"))  # fresh networks, nothing cached
    assert np.array_equal(np.asarray(again.indices), chosen), f"{name}: another choice under the same seed"
    return selection


@pytest.mark.parametrize("task", ["segmentation", "classification"])
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_registered_strategy_keeps_the_contract(name, task, tmp_path):
    check_strategy_contract(name, task, tmp_path)


def test_the_tripwire_trips():
    wire = Tripwire("task network")
    for use in (lambda: wire.eval(), lambda: wire(torch.zeros(1)), lambda: bool(wire)):
        with pytest.raises(AssertionError, match="task-agnostic strategy used the task network"):
            use()


@contextlib.contextmanager
def registered(name: str, cls: type[Strategy]) -> Iterator[None]:
    """``cls`` in STRATEGIES under ``name`` for the length of the block only."""
    STRATEGIES.register(name)(cls)
    cls.name = name
    try:
        yield
    finally:
        del STRATEGIES._items[name]


class _Duplicates(Strategy):
    def select(self, ctx):
        return Selection(indices=np.repeat(ctx.unlabeled[:1], ctx.budget))


class _Labeled(Strategy):
    def select(self, ctx):
        return Selection(indices=ctx.labeled[: ctx.budget])


class _OneShort(Strategy):
    def select(self, ctx):
        return Selection(indices=ctx.unlabeled[: ctx.budget - 1])


class _NanScores(Strategy):
    def select(self, ctx):
        return Selection(indices=ctx.unlabeled[: ctx.budget], scores=np.full(ctx.budget, np.nan))


class _Unseeded(Strategy):
    def select(self, ctx):
        return Selection(indices=np.random.default_rng().choice(ctx.unlabeled, ctx.budget, replace=False))


class _PeeksAtTheModel(Strategy):
    needs_model = False  # claims to be task-agnostic

    def select(self, ctx):
        if ctx.model is not None:
            ctx.model.eval()
        return Selection(indices=ctx.unlabeled[: ctx.budget])


@pytest.mark.parametrize("broken, why", [
    (_Duplicates, "chosen twice"), (_Labeled, "not unlabeled"), (_OneShort, "for a budget of"),
    (_NanScores, "not finite"), (_Unseeded, "same seed"), (_PeeksAtTheModel, "used the task network"),
])
def test_a_broken_strategy_registered_here_fails_the_contract(broken, why, tmp_path):
    with registered("_broken", broken):
        assert "_broken" in sorted(STRATEGIES)  # what the parametrised contract test iterates over
        with pytest.raises(AssertionError, match=why):
            check_strategy_contract("_broken", "segmentation", tmp_path)
    assert "_broken" not in STRATEGIES


@pytest.mark.parametrize("name, params, message", [
    ("vaal", {"image_size": 40}, "not a multiple of 16"),
    ("vaal", {"holdout": 1.5}, "holdout"),
    ("vaal", {"steps": 0}, "must be positive"),
    ("coreset", {"chunk": 0}, "chunk must be"),
    ("qbc", {"M": 1}, "M ≥ 2"),
    ("vaal", {"image_sise": 32}, "unknown key 'active.strategy_params.image_sise'"),
])
def test_bad_parameters_fail_when_the_strategy_is_built(name, params, message):
    with pytest.raises(UserError, match=message) as err:
        make_strategy(name, params, "recipe.yaml")
    assert str(err.value).startswith("recipe.yaml: ")  # names the file


def test_a_bad_vaal_image_size_stops_the_run_before_anything_is_written(tmp_path):
    """It used to surface in VAAL's select(), after cycle 0 had trained."""
    import tests.tiny  # noqa: F401  (registers tiny-seg)
    from segal.config import recipe_from_dict
    from segal.runs import start_run
    from tests.tiny import tiny_recipe

    raw = tiny_recipe(tmp_path, strategy="vaal", strategy_params={"image_size": 40})
    recipe = recipe_from_dict(raw, "recipe.yaml")
    with pytest.raises(UserError, match="multiple of 16"):
        start_run(recipe, "recipe.yaml")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------- dataset adapters


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _rgb(seed: int, h: int = 12, w: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        rows = np.stack([_rgb(10 * b + k, 32, 32).transpose(2, 0, 1).reshape(-1) for k in range(2)])
        (folder / name).write_bytes(pickle.dumps({b"labels": [b % 10, (b + 3) % 10], b"data": rows,
                                                  b"filenames": [b"a.png", b"b.png"]}, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))


def _classfolder(root: Path) -> None:
    for cls in ("cat", "dog"):
        for k in range(2):
            _png(root / "train" / cls / f"{k}.png", _rgb(k))


def _images(root: Path) -> None:
    for k in range(3):
        _png(root / "sub" / f"{k}.png", _rgb(k))


@dataclass
class AdapterFixture:
    make: Callable[[Path], object]  # writes a tiny dataset in the adapter's official layout under root
    split: str = "train"
    options: dict | None = None
    mask: str | None = None  # one mask file, relative to root: deleting it must be a clear error
    needs_root: bool = True


ADAPTER_FIXTURES: dict[str, AdapterFixture] = {
    "camvid": AdapterFixture(lambda r: make_camvid(r, "train", 3), mask="trainannot/0001TP_000000.png"),
    "cityscapes": AdapterFixture(lambda r: make_cityscapes(r, "train"),
                                 mask="gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"),
    "bdd100k": AdapterFixture(lambda r: make_bdd(r, "train"), mask="labels/sem_seg/masks/train/0000a1b2-c3d4e5f6.png"),
    "folder": AdapterFixture(lambda r: make_folder(r, "train", 2), mask="masks/train/img0.png"),
    "demo": AdapterFixture(lambda r: None, options={"size": [32, 32], "n_train": 4, "n_test": 2}, needs_root=False),
    "images": AdapterFixture(_images, split="all"),
    "cifar10": AdapterFixture(_cifar10),
    "cifar100": AdapterFixture(make_cifar100),
    "caltech256": AdapterFixture(make_caltech, options={"test_per_class": 20}),
    "imagenet": AdapterFixture(make_imagenet),
    "classfolder": AdapterFixture(_classfolder),
}


def open_adapter(name: str, root: Path):
    fixture = ADAPTER_FIXTURES.get(name)
    assert fixture is not None, f"dataset {name!r} is registered but has no fixture in ADAPTER_FIXTURES"
    return DATASETS.get(name)(str(root) if fixture.needs_root else None, fixture.split, **(fixture.options or {}))


@pytest.mark.parametrize("name", sorted(n for n in DATASETS if n != "tiny-seg"))
def test_every_registered_adapter_yields_typed_samples_with_stable_ids(name, tmp_path):
    fixture = ADAPTER_FIXTURES.get(name)
    assert fixture is not None, f"dataset {name!r} is registered but has no fixture in ADAPTER_FIXTURES"
    fixture.make(tmp_path)
    data = open_adapter(name, tmp_path)
    assert len(data) > 0
    ids = [data.image_id(i) for i in range(len(data))]
    assert all(isinstance(i, str) and i for i in ids), ids
    assert len(set(ids)) == len(ids), f"{name}: ids are not unique"
    assert [open_adapter(name, tmp_path).image_id(i) for i in range(len(data))] == ids, f"{name}: ids not stable"
    for i in range(min(len(data), 3)):
        image = data.load_image(i)
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8, (name, type(image))
        assert image.ndim == 3 and image.shape[2] == 3, (name, image.shape)
        if data.task == "images":  # unlabeled images for task-agnostic acquisition: no target at all
            with pytest.raises(UserError):
                data.load_target(i)
            continue
        target = data.load_target(i)
        k = len(data.classes)
        if data.task == "segmentation":
            assert isinstance(target, np.ndarray) and target.dtype == np.uint8, (name, type(target))
            assert target.shape == image.shape[:2], (name, target.shape, image.shape)
            valid = target[target != data.classes.ignore_index]
            assert valid.size == 0 or int(valid.max()) < k, (name, np.unique(target))
        else:
            assert data.task == "classification", (name, data.task)
            assert isinstance(target, int | np.integer) and 0 <= int(target) < k, (name, target)


@pytest.mark.parametrize("name", sorted(n for n, f in ADAPTER_FIXTURES.items() if f.mask))
def test_every_mask_adapter_names_a_missing_mask(name, tmp_path):
    fixture = ADAPTER_FIXTURES[name]
    fixture.make(tmp_path)
    (tmp_path / fixture.mask).unlink()
    with pytest.raises(UserError) as err:
        data = open_adapter(name, tmp_path)
        for i in range(len(data)):  # an adapter may check lazily; the mask must still be named
            data.load_target(i)
    assert Path(fixture.mask).stem.split("_gtFine")[0] in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_every_adapter_fixture_is_of_a_registered_adapter():
    assert set(ADAPTER_FIXTURES) <= set(DATASETS)


# ---------------------------------------------------------------------- models

CLASSIFIERS = {"resnet18", "vgg16_bn"}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_gives_logits_of_the_right_shape(name):
    torch.manual_seed(0)
    model = MODELS.get(name)(3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
    if name in CLASSIFIERS:
        assert out.shape == (2, 3), (name, out.shape)
    else:
        assert out.shape == (2, 3, 32, 32), (name, out.shape)
    assert torch.isfinite(out).all()
