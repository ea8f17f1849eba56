"""Recipes: YAML in, typed dataclasses out.

Every key is checked against the dataclass that owns it: an unknown key, a wrong type or an
impossible value is a :class:`~segal.errors.UserError` naming the key's path, the file and the
fix.  The resolved recipe (defaults filled in) is written to each run directory, so a run can
always be reproduced from its own folder.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from segal.errors import UserError


@dataclass
class DataConfig:
    """Which dataset, where, and at what size the task network sees it."""

    dataset: str = "demo"
    root: str | None = None
    train_split: str = "train"
    test_split: str = "val"
    image_size: list[int] | None = None  # [H, W] the task network trains and evaluates at
    options: dict[str, Any] = field(default_factory=dict)  # adapter-specific keyword arguments


@dataclass
class ModelConfig:
    """The task network."""

    name: str = "deeplabv3plus"
    encoder: str = "resnet18"
    weights: str | None = None  # null, "imagenet" (downloads; needs network) or a local file
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """How the task network is trained in every cycle (re-initialised each cycle by default)."""

    epochs: int = 30
    steps: int | None = None  # fixed optimiser steps per cycle instead of epochs (the authors' code)
    batch_size: int = 8
    eval_batch_size: int = 16
    optimizer: Literal["adam", "sgd", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: Literal["poly", "step", "constant", "cosine"] = "poly"
    amp: Literal["auto", "on", "off"] = "auto"
    augment: bool = True
    num_workers: int = 0
    reinit: bool = True  # re-initialise the task network each cycle, as in the paper
    keep_checkpoints: bool = True


@dataclass
class ActiveConfig:
    """The active-learning protocol: sizes are fractions of the pool (float < 1) or counts (int)."""

    initial: float | int = 0.1
    budget: float | int = 0.05
    final: float | int | None = 0.4
    cycles: int | None = None  # number of acquisitions; overrides `final` when given
    strategy: str = "random"
    strategy_params: dict[str, Any] = field(default_factory=dict)
    oracle: Literal["simulated", "human"] = "simulated"
    initial_exclude_classes: list[int] = field(default_factory=list)  # biased initial pool study
    label_noise: float = 0.0  # noisy-oracle study: fraction of acquired labels corrupted


@dataclass
class Recipe:
    """A whole experiment."""

    name: str = "experiment"
    task: Literal["segmentation", "classification"] = "segmentation"
    seed: int = 0
    device: str = "auto"
    output_dir: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    active: ActiveConfig = field(default_factory=ActiveConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


# --------------------------------------------------------------------------- parsing

_FIXES = {
    "float": "write a number, e.g. 0.1",
    "int": "write a whole number, e.g. 8",
    "bool": "write true or false",
    "str": "write a string",
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"a list of {_type_name(inner)}"
    if origin is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to float)."""

    def fail() -> typing.NoReturn:
        raise UserError(
            f"key '{key}' is {value!r}, expected {_type_name(tp)}",
            path=source,
            fix=_FIXES.get(getattr(tp, "__name__", ""), f"set '{key}' to {_type_name(tp)}"),
        )

    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail()
        return from_dict(tp, value, source, prefix=f"{key}.")
    if origin is Literal:
        if value not in typing.get_args(tp):
            fail()
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key, source)
            except UserError:
                continue
        fail()
    if origin is list:
        if not isinstance(value, list):
            fail()
        (inner,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        return dict(value)
    if tp is type(None):
        if value is not None:
            fail()
        return None
    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail()
        return value  # an int stays an int: `initial: 300` is a count, `initial: 0.1` a fraction
    if tp is str:
        if not isinstance(value, str):
            fail()
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")


def from_dict(cls: type, data: dict[str, Any], source: str = "<recipe>", prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise UserError(
                f"unknown key '{prefix}{key}'",
                path=source,
                fix=f"remove it or use one of: {', '.join(sorted(names))}",
            )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}", source) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read, override and validate a recipe file."""
    path = Path(path)
    if not path.is_file():
        raise UserError("recipe file not found", path=path, fix="check the path (recipes live in recipes/)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"malformed YAML{where}: {problem}", path=path, fix="fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise UserError("a recipe must be a YAML mapping of keys", path=path, fix="see recipes/demo.yaml")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    active = data.get("active") if isinstance(data.get("active"), dict) else {}
    if ("active.strategy" in overrides and overrides["active.strategy"] != active.get("strategy")
            and "active.strategy_params" not in overrides):
        overrides["active.strategy_params"] = {}  # the recipe's parameters belong to its own strategy
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    recipe = from_dict(Recipe, data, str(path))
    validate(recipe, str(path))
    return recipe


def recipe_from_dict(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    recipe = from_dict(Recipe, data, source)
    validate(recipe, source)
    return recipe


def _positive(value: float | int | None, key: str, source: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"key '{key}' is {value}, it must be positive", path=source, fix=f"set '{key}' > 0")
    if isinstance(value, float) and value >= 1 and value != int(value):
        raise UserError(
            f"key '{key}' is {value}: a fraction must be below 1",
            path=source,
            fix="write a fraction such as 0.1 or a whole count such as 300",
        )


def validate(recipe: Recipe, source: str) -> None:
    """Value checks that do not need the data (pool-size checks happen in :func:`plan_budgets`)."""
    a, t, d = recipe.active, recipe.train, recipe.data
    _positive(a.initial, "active.initial", source)
    _positive(a.budget, "active.budget", source)
    _positive(a.final, "active.final", source)
    if a.cycles is not None and a.cycles < 0:
        raise UserError("key 'active.cycles' is negative", path=source, fix="set it to 0 or more")
    if not 0.0 <= a.label_noise <= 1.0:
        raise UserError("key 'active.label_noise' must be in [0, 1]", path=source, fix="e.g. 0.1 for 10%")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(t, key) <= 0:
            raise UserError(f"key 'train.{key}' must be positive", path=source, fix=f"set 'train.{key}' > 0")
    if t.steps is not None and t.steps <= 0:
        raise UserError("key 'train.steps' must be positive", path=source, fix="set it > 0 or null")
    if t.lr <= 0:
        raise UserError("key 'train.lr' must be positive", path=source, fix="e.g. 0.001")
    if t.num_workers < 0:
        raise UserError("key 'train.num_workers' is negative", path=source, fix="set it to 0 or more")
    if d.image_size is not None and (len(d.image_size) != 2 or min(d.image_size) <= 0):
        raise UserError("key 'data.image_size' must be [height, width]", path=source, fix="e.g. [128, 160]")


def _count(value: float | int, pool: int) -> int:
    return int(value) if isinstance(value, int) or float(value).is_integer() and value >= 1 else round(value * pool)


def plan_budgets(active: ActiveConfig, pool_size: int, source: str = "<recipe>") -> list[int]:
    """The labeled-set sizes at which the task network is evaluated: initial, then +budget per cycle."""
    initial = _count(active.initial, pool_size)
    step = _count(active.budget, pool_size)
    if initial <= 0 or step <= 0:
        raise UserError(
            f"the budget rounds to zero images on a pool of {pool_size}",
            path=source,
            fix="raise active.initial / active.budget or use counts",
        )
    if active.cycles is not None:
        sizes = [initial + k * step for k in range(active.cycles + 1)]
    else:
        final = _count(active.final, pool_size) if active.final is not None else initial
        cycles = max(0, round((final - initial) / step))  # rounding: 10% + 6×5% reaches "40%" on any pool
        sizes = [initial + k * step for k in range(cycles + 1)]
    if sizes[-1] > pool_size:
        raise UserError(
            f"the last budget needs {sizes[-1]} labeled images but the pool holds {pool_size}",
            path=source,
            fix="lower active.final / active.cycles / active.budget, or use a larger pool",
        )
    return sizes
