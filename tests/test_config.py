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
        ("active:\n  budget: 1.5\n", "a float is a fraction of the pool, in (0, 1]"),
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


def test_a_float_is_a_fraction_an_int_a_count():
    """`final: 1.0` is the whole pool (it was read as one image, i.e. zero acquisitions)."""
    assert plan_budgets(ActiveConfig(initial=10, budget=30, final=1.0), 100) == [10, 40, 70, 100]
    assert plan_budgets(ActiveConfig(initial=8, budget=6, final=1.0), 24) == [8, 14, 20, 24]  # last step takes the rest
    assert plan_budgets(ActiveConfig(initial=0.5, budget=0.25, final=1.0), 8) == [4, 6, 8]
    with pytest.raises(UserError, match="below active.initial"):
        plan_budgets(ActiveConfig(initial=10, budget=5, final=1), 100)  # an int is a count: 1 image


def test_amp_on_off_as_yaml_booleans(tmp_path):
    """The README's `amp: on` is YAML's `true`; it means "on", not an error."""
    assert load_recipe(write(tmp_path, "train:\n  amp: on\n")).train.amp == "on"
    assert load_recipe(write(tmp_path, "train:\n  amp: off\n")).train.amp == "off"
    assert load_recipe(write(tmp_path, "train:\n  amp: 'auto'\n")).train.amp == "auto"


def test_set_overrides_are_typed_and_applied_last(tmp_path):
    from segal.config import parse_set

    path = write(tmp_path, "active:\n  strategy: vaal\n  strategy_params: {steps: 7000, z_dim: 64}\n")
    sets = parse_set(["active.initial=0.05", "active.strategy_params.steps=100", "train.amp=on", "train.steps=null",
                      "data.image_size=[64, 96]"])
    recipe = load_recipe(path, {"train.epochs": 3, "seed": None}, sets)
    a = recipe.active
    assert a.initial == 0.05 and a.strategy_params == {"steps": 100, "z_dim": 64}
    assert recipe.train.amp == "on" and recipe.train.steps is None and recipe.train.epochs == 3
    assert recipe.data.image_size == [64, 96]


def test_set_steps_reaches_vaal():
    from segal.config import parse_set
    from segal.strategies import make_strategy

    recipe = load_recipe("recipes/demo.yaml", {"active.strategy": "vaal"}, parse_set(["active.strategy_params.steps=100"]))
    assert make_strategy(recipe.active.strategy, recipe.active.strategy_params, "r").params.steps == 100


def test_switching_strategy_says_what_it_dropped(tmp_path):
    path = write(tmp_path, "active:\n  strategy: vaal\n  strategy_params: {steps: 7000, z_dim: 64}\n")
    warnings: list[str] = []
    recipe = load_recipe(path, {"active.strategy": "entropy"}, warnings=warnings)
    assert recipe.active.strategy_params == {}
    assert len(warnings) == 1 and "steps=7000" in warnings[0] and "z_dim=64" in warnings[0]
    warnings.clear()
    load_recipe(path, {"active.strategy": "vaal"}, warnings=warnings)  # same strategy: nothing dropped
    assert warnings == []


@pytest.mark.parametrize(("text", "needle"), [
    ("train:\n  lr: .nan\n", "expected a finite number"),
    ("train:\n  lr: .inf\n", "expected a finite number"),
    ("active:\n  initial: .nan\n", "expected a finite number"),
    ("train:\n  momentum: 1.0\n", "train.momentum"),
    ("seed: -3\n", "'seed'"),
    ("active:\n  final: 2.0\n", "a float is a fraction"),
    ("train: {lr: 0.1}\nname: a\ntrain: {lr: 0.2}\n", "'train' is written twice (line 1 and line 3)"),
    ("", "the recipe is empty"),
])
def test_more_bad_recipes(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert needle in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    path = write(tmp_path, "active:\n  strategy: vaal\n  strategy_params:\n    <<: {steps: 3, z_dim: 8}\n    steps: 4\n")
    assert load_recipe(path).active.strategy_params == {"steps": 4, "z_dim": 8}
