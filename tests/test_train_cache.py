"""The training-input cache: the same batches as the uncached path, rebuilt when the size or the data change."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.config import recipe_from_dict
from segal.data.base import ClassSet, Dataset
from segal.data.loaders import make_loader
from segal.data.train_cache import TrainingCache, cache_shape, fit
from segal.loop import ActiveLoop
from segal.runs import start_run
from tests.tiny import TinySeg, tiny_recipe


class Fitted(Dataset):
    """The uncached reference: the cache's one resize done on every load instead of once."""

    def __init__(self, dataset: Dataset, shape: tuple[int, int]):
        self.dataset, self.shape, self.task, self.classes = dataset, shape, dataset.task, dataset.classes

    def __len__(self):
        return len(self.dataset)

    def image_id(self, i):
        return self.dataset.image_id(i)

    def load_image(self, i):
        return fit(self.dataset.load_image(i), None, self.shape, self.task)[0]

    def load_target(self, i):
        return fit(self.dataset.load_image(i), self.dataset.load_target(i), self.shape, self.task)[1]


class TinyClasses(Dataset):
    task = "classification"
    classes = ClassSet(("a", "b"), ((0, 0, 0), (255, 255, 255)))

    def __len__(self):
        return 12

    def image_id(self, i):
        return f"c{i}"

    def load_image(self, i):
        return np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8)

    def load_target(self, i):
        return i % 2


def batches(dataset, size, seed=3, batch_size=4):
    loader = make_loader(dataset, np.arange(len(dataset)), size=size, batch_size=batch_size, train=True,
                         with_targets=True, seed=seed, drop_last=True)
    return [tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in b) for b in loader]


def assert_same(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        for s, t in zip(x, y, strict=True):
            assert torch.equal(s, t)


def test_cache_shape_is_twice_the_working_size_at_most():
    assert cache_shape("segmentation", [96, 128], [360, 480]) == (192, 256)
    assert cache_shape("segmentation", [64, 96], [64, 96]) == (64, 96)  # the demo: nothing shrunk
    assert cache_shape("segmentation", [64, 96], [100, 150]) == (100, 150)
    assert cache_shape("classification", [32, 32], [40, 40]) == (32, 32)


def test_cached_batches_equal_the_uncached_pipeline_where_it_shrinks(tmp_path):
    pool = TinySeg(16, salt=0, size=48)  # 48×48 images, trained at 16×16: stored at 32×32
    cache = TrainingCache(pool, [16, 16], tmp_path)
    assert cache.shape == (32, 32) and cache.fill_ratio() == 0
    reference = batches(Fitted(pool, (32, 32)), [16, 16])
    assert_same(batches(cache, [16, 16]), reference)  # filling
    assert cache.fill_ratio() == 1
    assert_same(batches(cache, [16, 16]), reference)  # read back from the memory map
    reopened = TrainingCache(pool, [16, 16], tmp_path)
    assert reopened.fill_ratio() == 1  # a later cycle or a resumed run does not decode again
    assert_same(batches(reopened, [16, 16]), reference)
    assert not torch.equal(batches(reopened, [16, 16], seed=4)[0][0], reference[0][0])  # the seed matters


def test_cached_batches_equal_the_old_pipeline_where_nothing_shrinks(tmp_path):
    pool = TinySeg(16, salt=0, size=32)
    assert_same(batches(TrainingCache(pool, [32, 32], tmp_path / "seg"), [32, 32]), batches(pool, [32, 32]))
    classes = TinyClasses()  # classification stores exactly the Resize its transform starts with
    assert_same(batches(TrainingCache(classes, [32, 32], tmp_path / "cls"), [32, 32]), batches(classes, [32, 32]))


def test_a_new_size_or_new_data_rebuilds_the_cache(tmp_path):
    pool = TinySeg(16, salt=0, size=48)
    cache = TrainingCache(pool, [16, 16], tmp_path)
    batches(cache, [16, 16])
    assert cache.fill_ratio() == 1
    other_size = TrainingCache(pool, [20, 20], tmp_path)
    assert other_size.shape == (40, 40) and other_size.fill_ratio() == 0
    assert other_size.load_image(0).shape == (40, 40, 3)

    changed = TinySeg(16, salt=7, size=48)  # the same ids, other pixels
    changed.image_id = pool.image_id
    rebuilt = TrainingCache(changed, [16, 16], tmp_path)
    assert rebuilt.fill_ratio() == 0
    assert np.array_equal(rebuilt.load_image(3), fit(changed.load_image(3), None, (32, 32), "segmentation")[0])

    (tmp_path / "train-32x32" / "images.npy").write_bytes(b"torn")  # a damaged file is a cache miss
    again = TrainingCache(changed, [16, 16], tmp_path)
    assert again.fill_ratio() == 0 and np.array_equal(again.load_image(3), rebuilt.load_image(3))


@pytest.mark.slow
def test_a_cached_run_equals_the_uncached_run_where_nothing_shrinks(tmp_path):
    results = {}
    for cache in (False, True):
        data = tiny_recipe(tmp_path / str(cache))
        data["data"]["cache"] = cache
        run = start_run(recipe_from_dict(data), "<test>")
        ActiveLoop(run).run_loop()
        state = json.loads(run.state_path.read_text())
        results[cache] = (state["labeled"], [json.loads((run.cycle_dir(k) / "metrics.json").read_text())["miou"]
                                             for k in range(3)])
        assert (run.dir / "cache" / "train-32x32" / "meta.json").exists() == cache
    assert results[True] == results[False]
