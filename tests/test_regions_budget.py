import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segal.config import ActiveConfig, RegionsConfig, from_dict, load_recipe, to_dict
from segal.config import Recipe as RecipeConfig
from segal.errors import UserError
from segal.regions.budget import (
    CostLedger,
    cost_ledgers,
    cycle_budget,
    per_image,
    plan_cost,
    select_under_budget,
    selection_cost,
    unit_costs,
)
from segal.regions.state import RegionLabels

# --------------------------------------------------------------------------- greedy selection


def test_greedy_skips_what_no_longer_fits_and_fills_the_budget():
    # score order: 10 (0.9, cost 4), 12 (0.9, cost 5: tie, larger id), 14 (0.7, 3), 11 (0.5, 2), 13 (0.1, 1)
    # budget 8: take 10 (4 left), skip 12, take 14 (1 left), skip 11, take 13 (0 left)
    chosen = select_under_budget([10, 11, 12, 13, 14], [0.9, 0.5, 0.9, 0.1, 0.7], [4, 2, 5, 1, 3], 8)
    assert chosen.tolist() == [10, 14, 13]


def test_ties_break_by_id_whatever_the_input_order():
    a = select_under_budget([5, 3, 9, 1], [1.0, 1.0, 1.0, 1.0], [1, 1, 1, 1], 2)
    b = select_under_budget([9, 1, 3, 5], [1.0, 1.0, 1.0, 1.0], [1, 1, 1, 1], 2)
    assert a.tolist() == b.tolist() == [1, 3]


def test_the_best_candidate_is_taken_when_none_fits():
    assert select_under_budget([3, 1, 2], [0.2, 0.8, 0.8], [10, 10, 10], 5).tolist() == [1]


def test_exact_fill_zero_costs_and_a_fractional_budget():
    assert select_under_budget([0, 1, 2], [3.0, 2.0, 1.0], [2, 3, 5], 10).tolist() == [0, 1, 2]
    assert select_under_budget([0, 1, 2], [3.0, 2.0, 1.0], [0, 9, 0], 1).tolist() == [0, 2]
    assert select_under_budget([0, 1], [2.0, 1.0], [4, 4], 7.9).tolist() == [0]  # 8 pixels do not fit in 7.9
    assert select_under_budget([0, 1], [2.0, 1.0], [0.5, 0.25], 0.75).tolist() == [0, 1]  # float costs
    assert select_under_budget([], [], [], 5).tolist() == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (([0, 1], [1.0, np.nan], [1, 1], 2), "finite"),
        (([0, 1], [1.0, 2.0], [1, -1], 2), "≥ 0"),
        (([0, 1], [1.0, 2.0], [1, 1], 0), "positive"),
        (([0, 1], [1.0], [1, 1], 2), "1 scores"),
        (([0, 0], [1.0, 2.0], [1, 1], 2), "duplicate"),
    ],
)
def test_impossible_selection_inputs_are_bugs(args, needle):
    with pytest.raises(ValueError, match=needle):
        select_under_budget(*args)


def _reference(candidates, scores, cost, budget):
    """The rule written as a plain loop."""
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i]))
    left, chosen = budget, []
    for i in order:
        if cost[i] <= left:
            chosen.append(candidates[i])
            left -= cost[i]
    return chosen or [candidates[order[0]]]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_greedy_matches_the_plain_loop_and_never_overspends(data):
    n = data.draw(st.integers(1, 40))
    candidates = data.draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n, unique=True))
    scores = data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=n, max_size=n))
    cost = data.draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    budget = data.draw(st.integers(1, 200))
    chosen = select_under_budget(candidates, scores, cost, budget).tolist()
    assert chosen == _reference(candidates, scores, cost, budget)
    spent = sum(cost[candidates.index(c)] for c in chosen)
    assert spent <= budget or len(chosen) == 1
    left = budget - spent
    assert all(cost[i] > left for i, c in enumerate(candidates) if c not in chosen)  # nothing more fits


# --------------------------------------------------------------------------- costs and plans

OFFSETS = np.array([0, 3, 3, 7, 9], dtype=np.int64)
AREA = np.array([10, 20, 30, 5, 6, 7, 8, 100, 200], dtype=np.int32)
CLICKS = np.array([4, 1, 6, 3, 3, 5, 1, 9, 2], dtype=np.int64)


def make_labels():
    labels = RegionLabels.empty(OFFSETS)
    labels.add_labeled([0, 4, 5], cycle=0)
    labels.add_pending([8])
    labels.add_labeled([2], cycle=1)
    return labels


def test_per_image_sums_and_unit_costs():
    assert per_image(AREA, OFFSETS).tolist() == [60, 0, 26, 300]
    assert per_image(CLICKS, OFFSETS).tolist() == [11, 0, 12, 11]
    assert unit_costs("images", AREA).tolist() == [1] * 9
    assert unit_costs("pixels", AREA).tolist() == AREA.tolist()
    assert unit_costs("clicks", AREA, CLICKS).tolist() == CLICKS.tolist()
    with pytest.raises(ValueError, match="clicks"):
        unit_costs("clicks", AREA)


def test_ledger_counts_every_axis_through_each_cycle():
    labels = make_labels()
    first, second = cost_ledgers(labels, AREA, CLICKS, cycles=2)
    assert first == CostLedger(cycle=0, images_touched=2, regions_labeled=3, pixels_labeled=23,
                               pixel_share=23 / 386, clicks=4 + 3 + 5)
    assert second == CostLedger(cycle=1, images_touched=2, regions_labeled=4, pixels_labeled=53,
                                pixel_share=53 / 386, clicks=18)
    assert second.to_json() == {"images_touched": 2, "regions_labeled": 4, "pixels_labeled": 53,
                                "pixel_share": 53 / 386, "clicks": 18}


def test_selection_cost_counts_only_new_images():
    cost = selection_cost(make_labels(), [1, 7, 8], AREA, CLICKS)  # image 0 already touched; image 3 new
    assert (cost.new_images, cost.regions, cost.pixels, cost.clicks) == (1, 3, 320, 12)


def test_whole_image_ledger_is_the_image_level_count():
    labels = RegionLabels.whole_images(5)
    labels.add_labeled([0, 3], cycle=0)
    area = np.full(5, 172_800)  # CamVid 360×480
    ledger = CostLedger.of(labels, area, np.ones(5, dtype=np.int64), cycle=0)
    assert (ledger.images_touched, ledger.pixels_labeled, ledger.pixel_share) == (2, 345_600, 0.4)


def test_cycle_budget_fraction_of_the_pool_or_a_count():
    assert cycle_budget(0.05, 63_417_600) == 3_170_880  # 5% of CamVid's 367 × 360 × 480 pixels
    assert cycle_budget(5000, 63_417_600) == 5000
    with pytest.raises(UserError, match="rounds to zero"):
        cycle_budget(0.001, 100, source="r.yaml")


def test_camvid_plan_in_pixels():
    """10% of 367 images, then 5% of the pixels per cycle up to 30%: (19,025,280 - 6,393,600) / 3,170,880 ≈ 3.98."""
    total = 367 * 360 * 480
    plan = plan_cost(ActiveConfig(initial=0.1, budget=0.05, final=0.3, unit="region", cost="pixels"), 367, total)
    assert (plan.initial_images, plan.per_cycle, plan.cycles, plan.pool_total) == (37, 3_170_880, 4, total)
    assert plan_cost(ActiveConfig(initial=10, budget=500, cycles=7, cost="clicks"), 367, 90_000).cycles == 7
    with pytest.raises(UserError, match="below the cost of the initial images"):
        plan_cost(ActiveConfig(initial=0.5, budget=0.05, final=0.3), 367, total)


def test_a_precise_click_plan_starts_from_what_the_initial_images_cost_whole():
    """CamVid's SLIC regions cost 2,802,646 clicks summed, the 37 initial images 44,000 labeled whole (what the
    ledger charges): up to 40% at 5% a cycle that is (1,121,058 - 44,000) / 140,132 ≈ 7.7 → 8 cycles; their
    share of the summed clicks (282,555) would plan (1,121,058 - 282,555) / 140,132 ≈ 6.0 → 6, and the run
    would stop at about 32% of the clicks."""
    active = ActiveConfig(initial=37, budget=0.05, final=0.4, unit="region", cost="clicks")
    assert plan_cost(active, 367, 2_802_646, initial_cost=44_000).cycles == 8
    assert plan_cost(active, 367, 2_802_646).cycles == 6


# --------------------------------------------------------------------------- the recipe


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_image_level_run(tmp_path):
    recipe = load_recipe(write(tmp_path, "name: x\n"))
    assert (recipe.active.unit, recipe.active.cost, recipe.regions) == ("image", "images", None)


def test_a_region_recipe_loads_and_round_trips(tmp_path):
    recipe = load_recipe(write(tmp_path, "active: {unit: region, cost: pixels}\nregions: {method: grid, patch: 16}\n"))
    assert recipe.regions == RegionsConfig(method="grid", patch=16)
    assert recipe.regions.segments == 400 and recipe.regions.oracle == "precise" and recipe.regions.resolution is None
    assert from_dict(RecipeConfig, to_dict(recipe)) == recipe  # the run directory's recipe.yaml reads back
    assert from_dict(RecipeConfig, to_dict(load_recipe(write(tmp_path, "name: x\n")))).regions is None
    sets = {"active.unit": "region", "active.cost": "clicks", "regions.oracle": "dominant"}
    assert load_recipe(write(tmp_path, "name: x\n"), sets=sets).regions == RegionsConfig(oracle="dominant")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("active: {unit: region, cost: pixels}\n", "has no regions: section"),
        ("regions: {method: slic}\n", "the regions: section is unused"),
        ("active: {unit: region}\nregions: {}\n", "key 'active.cost' is 'images'"),
        ("active: {unit: patch}\n", "key 'active.unit' is 'patch'"),
        ("active: {cost: dollars}\n", "key 'active.cost' is 'dollars'"),
        ("active: {unit: region, cost: pixels}\nregions: {bogus: 1}\n", "unknown key 'regions.bogus'"),
        ("active: {unit: region, cost: pixels}\nregions: {segments: 0}\n", "regions.segments"),
        ("active: {unit: region, cost: pixels}\nregions: {method: seeds}\n", "key 'regions.method' is 'seeds'"),
        ("active: {unit: region, cost: pixels}\nregions: {oracle: human}\n", "key 'regions.oracle'"),
        ("active: {unit: region, cost: pixels}\nregions: {resolution: [360]}\n", "regions.resolution"),
        ("active: {unit: region, cost: pixels}\nregions: {compactness: 0}\n", "regions.compactness"),
        ("active: {unit: region, cost: pixels}\nregions: [slic]\n", "key 'regions' is ['slic']"),
    ],
)
def test_bad_region_recipes_name_key_and_file(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert needle in str(err.value) and str(path) in str(err.value) and "fix:" in str(err.value)
    assert "\n" not in str(err.value)


def test_ledger_charges_the_initial_labels_as_a_whole_when_told_their_cost():
    """A precise run's initial images are labeled whole: their cost replaces their regions' (4 + 3 + 5)."""
    labels = make_labels()
    first, second = (CostLedger.of(labels, AREA, CLICKS, cycle, initial_clicks=7) for cycle in (0, 1))
    assert (first.clicks, second.clicks) == (7, 18 - 12 + 7)
    assert first.pixels_labeled == 23 and second.regions_labeled == 4  # the other axes are untouched
