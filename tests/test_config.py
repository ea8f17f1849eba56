import pytest

from segal.config import ActiveConfig, load_recipe, plan_budgets
from segal.errors import UserError


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_demo_recipe_loads():
    recipe = load_recipe("recipes/demo.yaml")
    assert recipe.data.dataset == "demo" and recipe.active.strategy == "entropy"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: x\nbogus: 1\n", "unknown key 'bogus'"),
        ("train:\n  epochs: many\n", "key 'train.epochs' is 'many'"),
        ("train:\n  batch_size: 0\n", "train.batch_size"),
        ("active:\n  initial: -3\n", "active.initial"),
        ("active:\n  budget: 1.5\n", "a fraction must be below 1"),
        ("active:\n  oracle: robot\n", "active.oracle"),
        ("data:\n  image_size: [64]\n", "data.image_size"),
        ("name: [unclosed\n", "malformed YAML at line"),
        ("- just\n- a list\n", "must be a YAML mapping"),
    ],
)
def test_bad_recipes_name_key_and_file(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(UserError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_overrides_apply(tmp_path):
    path = write(tmp_path, "name: x\n")
    recipe = load_recipe(path, {"seed": 5, "active.cycles": 2, "data.root": None})
    assert recipe.seed == 5 and recipe.active.cycles == 2 and recipe.data.root is None


def test_budget_plan_fractions_and_counts():
    assert plan_budgets(ActiveConfig(initial=0.1, budget=0.05, final=0.4), 2975) == [298, 447, 596, 745, 894, 1043, 1192]
    assert plan_budgets(ActiveConfig(initial=300, budget=150, final=1200), 2975) == [300, 450, 600, 750, 900, 1050, 1200]
    assert plan_budgets(ActiveConfig(initial=10, budget=5, cycles=3), 100) == [10, 15, 20, 25]


def test_impossible_budget():
    with pytest.raises(UserError, match="pool holds 50"):
        plan_budgets(ActiveConfig(initial=40, budget=20, cycles=2), 50)
    with pytest.raises(UserError, match="rounds to zero"):
        plan_budgets(ActiveConfig(initial=0.001, budget=0.05), 100)
