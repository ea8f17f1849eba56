"""Click-budget region runs: the plan is made under the run's lock (a refused run writes nothing), and
precise clicks are cached next to the region maps (equal to a fresh count; recomputed when stale)."""

from __future__ import annotations

import numpy as np
import pytest

import segal.regions.click_cache as click_cache
from segal.config import recipe_from_dict
from segal.data.base import DatasetView
from segal.errors import UserError
from segal.regions.cache import RegionCache
from segal.regions.click_cache import FILE, cached_precise_clicks
from segal.regions.maps import RegionSpec
from segal.regions.training import region_clicks
from segal.runs import Run, start_run
from tests.test_regions_loop import region_recipe
from tests.test_run_lock import kill, start_holder


def click_recipe(tmp_path, **active):
    return recipe_from_dict(region_recipe(tmp_path, **{"cost": "clicks", **active}))


def test_a_click_budget_that_rounds_to_zero_is_refused_and_leaves_no_folder(tmp_path):
    recipe = click_recipe(tmp_path, budget=1e-9)
    with pytest.raises(UserError, match="rounds to zero"):
        start_run(recipe, "<test>")
    assert not (tmp_path / "run").exists()


def test_a_refused_click_plan_in_an_existing_folder_removes_the_region_maps_it_built(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="rounds to zero"):
        start_run(click_recipe(tmp_path, budget=1e-9), "<test>")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock", "notes.txt"]


def test_a_refused_precise_plan_to_final_also_removes_the_whole_image_clicks_it_counted(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="rounds to zero"):  # final is checked after the whole images are counted
        start_run(click_recipe(tmp_path, budget=0.05, final=1e-9, cycles=None), "<test>")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock", "notes.txt"]


def test_a_second_writer_of_a_click_run_stops_at_the_lock_before_building_regions(tmp_path):
    (tmp_path / "run").mkdir()
    holder = start_holder(tmp_path / "run")  # another process is starting the same run
    try:
        with pytest.raises(UserError, match=f"PID {holder.pid}"):
            start_run(click_recipe(tmp_path), "<test>")
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]  # no regions/, no recipe.yaml
    finally:
        kill(holder)


def test_an_accepted_click_run_plans_its_budget_in_clicks_of_the_built_maps(tmp_path):
    with start_run(click_recipe(tmp_path, budget=0.05), "<test>") as run:
        cache = RegionCache.open(run.dir / "regions")
        total = int(region_clicks(run.pool, cache, "precise").sum())
        assert run.region_plan().pool_total == total
        assert run.new_state().budgets == [k * int(0.05 * total) for k in range(3)]
        assert (run.dir / "recipe.yaml").exists() and (run.dir / "regions" / FILE).exists()


def test_a_precise_click_run_without_cycles_plans_final_from_the_initial_images_whole_clicks(tmp_path):
    """The ledger charges the initial images their whole-image clicks (segal.image_costs); the plan must start
    from the same figure, else a run with ``final`` and no ``cycles`` stops short of it."""
    from segal.image_costs import ImageCosts

    with start_run(click_recipe(tmp_path, budget=0.05, final=0.3, cycles=None), "<test>") as run:
        plan = run.region_plan()
        assert (run.dir / "cache" / "image_costs.json").exists()  # counted once, kept for resumes and the ledger
        whole = ImageCosts(run.pool, run.dir / "cache").block(np.arange(len(run.pool)))["clicks"]
        start = whole * 4 / len(run.pool)  # 4 initial images, at the pool's mean whole-image clicks
        assert start < 4 / len(run.pool) * plan.pool_total  # whole images cost fewer clicks than their regions
        assert plan.cycles == max(0, round((int(0.3 * plan.pool_total) - start) / plan.per_cycle))


def _pool_and_cache(tmp_path):
    run = Run(tmp_path / "run", click_recipe(tmp_path))
    return run.pool, RegionCache.build(run.pool, run.region_spec, tmp_path / "regions")


def test_cached_precise_clicks_equal_a_fresh_count_and_are_read_back_without_counting(tmp_path, monkeypatch):
    pool, cache = _pool_and_cache(tmp_path)
    fresh = region_clicks(pool, cache, "precise")
    assert fresh.sum() > 4 * cache.num_regions  # not all one-class patches: a real count
    np.testing.assert_array_equal(cached_precise_clicks(pool, cache), fresh)
    assert (tmp_path / "regions" / FILE).exists()

    def no_counting(*args, **kwargs):
        raise AssertionError("counted again")

    monkeypatch.setattr(click_cache, "region_clicks", no_counting)
    again = cached_precise_clicks(pool, RegionCache.open(tmp_path / "regions"))
    np.testing.assert_array_equal(again, fresh)
    assert again.dtype == np.int64


class ShiftedMasks(DatasetView):
    """The pool with every mask's class ids rotated by one: other ground truth, so other clicks."""

    def load_target(self, index: int):
        target = np.asarray(self.pool.load_target(index)).copy()
        target[target != 255] = (target[target != 255] + 1) % len(self.classes)
        target[:, : target.shape[1] // 3] = 0  # and a new boundary in every image
        return target


def test_a_stale_or_damaged_clicks_cache_is_counted_again(tmp_path):
    pool, cache = _pool_and_cache(tmp_path)
    cached_precise_clicks(pool, cache)
    changed = ShiftedMasks(pool)
    expected = region_clicks(changed, cache, "precise")
    assert not np.array_equal(expected, region_clicks(pool, cache, "precise"))
    np.testing.assert_array_equal(cached_precise_clicks(changed, cache), expected)  # other masks: recounted
    np.testing.assert_array_equal(cached_precise_clicks(changed, cache), expected)  # and stored under their key
    path = tmp_path / "regions" / FILE
    with np.load(path) as stored:  # hand-edited: one region's clicks changed, the key and digest kept
        edited = {name: stored[name] for name in stored.files}
    edited["clicks"][0] += 1
    np.savez(path.with_suffix(".tmp.npz"), **edited)
    path.with_suffix(".tmp.npz").replace(path)
    np.testing.assert_array_equal(cached_precise_clicks(changed, cache), expected)
    path.write_bytes(path.read_bytes()[:100])  # torn
    np.testing.assert_array_equal(cached_precise_clicks(changed, cache), expected)
    rebuilt = RegionCache.build(pool, RegionSpec(method="grid", patch=8), tmp_path / "regions")  # other maps, same folder
    assert rebuilt.num_regions != cache.num_regions
    np.testing.assert_array_equal(cached_precise_clicks(pool, rebuilt), region_clicks(pool, rebuilt, "precise"))
