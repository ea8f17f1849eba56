"""Recipes: YAML in, typed dataclasses out.

Every key is checked against the dataclass that owns it: an unknown key, a wrong type or an
impossible value is a :class:`~segal.errors.UserError` naming the key's path, the file and the
fix.  The resolved recipe (defaults filled in) is written to each run directory, so a run can
always be reproduced from its own folder.
"""

from __future__ import annotations

import dataclasses
import math
import os
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
    cache: bool = False  # train from a memory-mapped copy at ≤2× image_size (segal.data.train_cache)


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
    min_steps: int = 0  # floor under epochs: steps = max(min_steps, ceil(epochs × labeled / batch_size))
    batch_size: int = 8
    eval_batch_size: int = 16
    optimizer: Literal["adam", "sgd", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: Literal["poly", "step", "constant", "cosine"] = "poly"
    amp: Literal["auto", "on", "off"] = "auto"  # YAML reads a bare on/off as true/false: both are accepted
    augment: bool = True
    num_workers: int = 0
    reinit: bool = True  # as in the paper; false = warm start from the previous cycle's network (a deviation)
    # A warm-started cycle fine-tunes: ceil(warm_epochs × labeled / batch_size) steps, no floor (null: as any cycle)
    warm_epochs: int | None = None
    keep_checkpoints: bool = True  # false: keep only the latest cycle's task.pt (saves disk; `evaluate` sees one)


@dataclass
class ActiveConfig:
    """The active-learning protocol: a size written as a float is a fraction of the pool (``0.1``, and
    ``1.0`` = all of it), one written as an int is a count of images (``300``).

    ``unit`` is what is acquired (whole images, or the regions of the ``regions:`` section); ``cost`` is
    what ``budget`` and ``final`` count: images, labeled pixels (a float: a share of the pool's pixels)
    or annotator clicks (a float: a share of the clicks that would label the whole pool).  ``initial``
    always counts whole images, so image- and region-level runs can start from the same labeled set.
    """

    initial: float | int = 0.1
    budget: float | int = 0.05
    final: float | int | None = 0.4
    cycles: int | None = None  # number of acquisitions; overrides `final` when given
    strategy: str = "random"
    strategy_params: dict[str, Any] = field(default_factory=dict)
    oracle: Literal["simulated", "human"] = "simulated"
    initial_exclude_classes: list[int] = field(default_factory=list)  # biased initial pool study
    label_noise: float = 0.0  # noisy-oracle study: fraction of acquired labels corrupted
    unit: Literal["image", "region"] = "image"
    cost: Literal["images", "pixels", "clicks"] = "images"


@dataclass
class RegionsConfig:
    """The regions a region-level run acquires (``active.unit: region``): computed once per pool image."""

    method: Literal["slic", "grid"] = "slic"  # superpixels (scikit-image SLIC), or a square patch grid
    segments: int = 400  # SLIC: about this many superpixels per image
    compactness: float = 10.0  # SLIC: higher = squarer superpixels, lower = closer to colour edges
    patch: int = 32  # grid: the patch side, in pixels at `resolution`
    resolution: list[int] | None = None  # [H, W] the regions are computed at; null = the pool's mask size
    oracle: Literal["precise", "dominant"] = "precise"  # a region's true pixels, or its majority class (one click)


@dataclass
class ServeConfig:
    """``segal serve`` (the Label Studio ML backend): when new annotations trigger a retraining."""

    retrain_every: int | None = None  # new labels per retraining; null = the per-cycle budget (active.budget)


@dataclass
class LogConfig:
    """What a run records for people besides its own files; never part of its results."""

    tensorboard: bool = False  # TensorBoard event files in <run dir>/tensorboard (the `tensorboard` extra)


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
    serve: ServeConfig = field(default_factory=ServeConfig)
    log: LogConfig = field(default_factory=LogConfig)
    regions: RegionsConfig | None = None  # required by active.unit: region, refused otherwise

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
        return from_dict(typing.cast(type, tp), value, source, prefix=f"{key}.")
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and {"on", "off"} <= set(choices):
            return "on" if value else "off"  # YAML 1.1 reads a bare `on` / `off` as a boolean
        if isinstance(value, bool) or value not in choices:
            fail()
        return value
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, float) and not math.isfinite(value) and float in typing.get_args(tp):
            return _coerce(value, float, key, source)  # the "finite number" message, not "float or int"
        sections = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        if isinstance(value, dict) and sections:  # an optional section: its own key's error, not "X or null"
            return _coerce(value, sections[0], key, source)
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
        if not math.isfinite(value):  # `.nan` passes every `<= 0` check, `.inf` trains to NaN
            raise UserError(f"key '{key}' is {value!r}, expected a finite number", path=source,
                            fix=f"set '{key}' to a number such as 0.1")
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


# --------------------------------------------------------------------------- reading YAML

MAX_YAML_BYTES = 1 << 20  # a recipe is a page of text; anything larger is the wrong file
MAX_YAML_NODES = 100_000  # nodes after alias expansion: a billion-laughs file expands to 10^9
MAX_YAML_DEPTH = 50  # no recipe nests deeper than a handful of levels


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int, first_line: int):
        super().__init__(key, line, first_line)
        self.key, self.line, self.first_line = key, line, first_line


class _TooLarge(Exception):
    pass


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key written twice: PyYAML keeps the last one silently, which
    drops a whole section when the user wrote, say, two ``train:`` blocks."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` may be overridden key by key, as YAML intends
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:
                    continue  # an unhashable key: PyYAML's own error follows
                if first != key_node.start_mark.line + 1:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1, first)
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(root: yaml.Node) -> None:
    """Count nodes as if every alias were expanded (aliases share one node object, so memoise by id):
    linear in the file, and it refuses an alias bomb before anything walks or copies it."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_YAML_DEPTH:
            raise _TooLarge(f"nested deeper than {MAX_YAML_DEPTH} levels")
        if id(node) in sizes:
            return sizes[id(node)]
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(v, depth + 1) for v in node.value)
        else:
            total = 1
        if total > MAX_YAML_NODES:
            raise _TooLarge(f"expands to more than {MAX_YAML_NODES:,} values (aliases repeated inside aliases)")
        sizes[id(node)] = total
        return total

    size(root, 0)


def parse_yaml(text: str, source: object, what: str = "recipe") -> Any:
    """Parse YAML text like ``yaml.safe_load``; duplicate keys, alias bombs and absurd nesting are
    :class:`UserError` naming ``source`` (a file, or ``--set KEY``)."""
    loader = _RecipeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node)
        return loader.construct_document(node)
    except _DuplicateKey as exc:
        raise UserError(f"key '{exc.key}' is written twice (line {exc.first_line} and line {exc.line}); "
                        "YAML would silently keep only the second", path=source,
                        fix=f"merge the two '{exc.key}' entries into one") from None
    except _TooLarge as exc:
        raise UserError(f"the {what} {exc}", path=source, fix=f"write the {what} out plainly, without nested aliases") from None
    except RecursionError:
        raise UserError(f"the {what} is nested too deeply to read", path=source,
                        fix=f"flatten it: a {what} needs only a few levels") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"malformed YAML{where}: {problem}", path=source, fix="fix the YAML syntax") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path, what: str = "recipe") -> Any:
    """Read a user's YAML file: a folder, a missing, huge or non-UTF-8 file is one clear error."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"is a folder, not a {what} file", path=path,
                        fix=f"pass the {what} YAML file itself, e.g. recipes/demo.yaml")
    if not path.is_file():
        raise UserError(f"{what} file not found", path=path, fix="check the path (recipes live in recipes/)")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise UserError(f"is {path.stat().st_size / 2**20:.1f} MiB, too large for a {what}", path=path,
                        fix=f"pass the {what} YAML file (a few kB), not a data file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark (Windows editors) is fine
    except UnicodeDecodeError as exc:
        raise UserError(f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})", path=path,
                        fix="save the file as UTF-8 (in most editors: Save with Encoding → UTF-8)") from None
    return parse_yaml(text, path, what)


# --------------------------------------------------------------------------- overrides

def parse_set(pairs: list[str]) -> dict[str, Any]:
    """``["active.initial=0.05", "train.amp=on"]`` → ``{"active.initial": 0.05, "train.amp": True}``:
    each value is a YAML scalar (or flow list/mapping), typed and checked later like the file's."""
    sets: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"--set {pair!r} is not KEY=VALUE", fix="write a dotted recipe key, e.g. --set active.initial=0.05")
        sets[key] = parse_yaml(value, f"--set {key}", what="value")
    return sets


def _field_type(dotted: str, source: str) -> Any:
    """The annotation a dotted recipe key must satisfy, or ``Any`` inside a free-form mapping such as
    ``active.strategy_params`` (whose owner checks it: the strategy's or the model's parameters)."""
    cls: Any = Recipe
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        hints = typing.get_type_hints(cls)
        if part not in hints:
            raise UserError(f"unknown key '{here}'", path=source, fix=f"use one of: {', '.join(sorted(hints))}")
        tp = hints[part]
        if i == len(parts) - 1:
            return tp
        if typing.get_origin(tp) in (typing.Union, types.UnionType):  # an optional section such as `regions`
            tp = next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), tp)
        if dataclasses.is_dataclass(tp):
            cls = tp
        elif typing.get_origin(tp) is dict:
            return Any
        else:
            raise UserError(f"key '{here}' is a single value, it holds no key '{parts[i + 1]}'", path=source,
                            fix=f"write --set {here}=VALUE")
    return cls


def apply_sets(data: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
    """Write ``--set`` values into recipe ``data`` (in place), each checked against its key's type first,
    so that an error names the ``--set`` that caused it rather than the file."""
    for dotted, value in sets.items():
        source = f"--set {dotted}"
        tp = _field_type(dotted, source)
        _coerce(value, tp, dotted, source)
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[leaf] = value
    return data


# The recipe keys that name files or folders (None and "imagenet" are no paths).
RECIPE_PATHS = ("data.root", "model.weights")


def resolve_recipe_path(value: str, key: str, base: Path, cwd_fallback: bool = False,
                        warnings: list[str] | None = None) -> str:
    """``value`` of path key ``key`` as an absolute path: ``~`` expanded, a relative one joined to ``base``.

    A recipe's paths (``data.root``, ``model.weights``) are read from the recipe file's folder (as
    docker-compose reads its paths), so that a recipe works from any current folder; a path typed on
    the command line (``--data-root``, ``--set KEY``) from the current folder, as a shell user expects.
    With ``cwd_fallback``, a recipe path that is missing there but present under the current folder
    (how segal read it before) is used, with a warning.  The absolute result is what the run
    directory's ``recipe.yaml`` keeps, so that copy resolves the same wherever it is read.
    """
    expanded = Path(value).expanduser()
    resolved = Path(os.path.abspath(base / expanded))
    if cwd_fallback and not expanded.is_absolute() and not resolved.exists() and expanded.exists():
        legacy = Path(os.path.abspath(expanded))
        if warnings is not None:
            warnings.append(f"{key} {value!r} is not in the recipe's folder ({resolved} does not exist): using "
                            f"{legacy}, relative to the current folder — write {key} relative to the recipe "
                            "file, or absolute")
        return str(legacy)
    return str(resolved)


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None, sets: dict[str, Any] | None = None,
                warnings: list[str] | None = None, root_base: Path | None = None) -> Recipe:
    """Read, override and validate a recipe file.

    ``overrides`` are the CLI's own flags (``None`` = not given); ``sets`` are ``--set`` values, applied
    last.  Switching strategy drops the recipe's ``strategy_params`` (they belong to its own strategy);
    what was dropped is appended to ``warnings`` for the CLI to show.  A relative ``data.root`` is made
    absolute, and so is a local ``model.weights`` (:func:`resolve_recipe_path`): from the file's, against
    ``root_base`` (default: the file's folder); from the command line, against the current folder.
    """
    path = Path(path)
    data = read_yaml_file(path)
    if data is None:
        raise UserError("the recipe is empty", path=path, fix="write a recipe (see recipes/demo.yaml), or `{}` for all defaults")
    if not isinstance(data, dict):
        raise UserError("a recipe must be a YAML mapping of keys", path=path, fix="see recipes/demo.yaml")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    sets = dict(sets or {})
    active: dict[str, Any] = data["active"] if isinstance(data.get("active"), dict) else {}
    old_strategy = active.get("strategy", ActiveConfig.strategy)
    new_strategy = sets.get("active.strategy", overrides.get("active.strategy", old_strategy))
    if (new_strategy != old_strategy and "active.strategy_params" not in overrides
            and "active.strategy_params" not in sets and isinstance(active.get("strategy_params"), dict)):
        dropped = active.pop("strategy_params")  # the recipe's parameters belong to its own strategy
        if dropped and warnings is not None:
            warnings.append(
                f"strategy {new_strategy} replaces the recipe's {old_strategy}: its active.strategy_params "
                f"({', '.join(f'{k}={v}' for k, v in dropped.items())}) are dropped — pass what {new_strategy} "
                "needs with --set active.strategy_params.KEY=VALUE")
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    apply_sets(data, sets)
    for key in RECIPE_PATHS:
        parent, leaf = key.split(".")
        section = data.get(parent)
        if not isinstance(section, dict) or not isinstance(section.get(leaf), str) or section[leaf] == "imagenet":
            continue
        typed = key in overrides or key in sets or parent in sets
        section[leaf] = resolve_recipe_path(section[leaf], key, Path.cwd() if typed else (root_base or path.parent),
                                            cwd_fallback=not typed and root_base is None, warnings=warnings)
    recipe = from_dict(Recipe, data, str(path))
    validate(recipe, str(path))
    return recipe


def recipe_from_dict(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    recipe = from_dict(Recipe, data, source)
    validate(recipe, source)
    return recipe


def _size(value: float | int | None, key: str, source: str) -> None:
    """A pool size: a float is a fraction in (0, 1] (1.0 = the whole pool), an int a count ≥ 1."""
    if value is None:
        return
    if isinstance(value, float):
        if not 0 < value <= 1:
            raise UserError(f"key '{key}' is {value}: a float is a fraction of the pool, in (0, 1]", path=source,
                            fix=f"write a fraction such as 0.1 (1.0 = the whole pool), or a whole count such as {max(1, round(value))}")
    elif value < 1:
        raise UserError(f"key '{key}' is {value}: a count must be at least 1", path=source,
                        fix=f"set '{key}' to a count ≥ 1 or a fraction such as 0.1")


def _at_least(value: float | int | None, low: float, key: str, source: str, fix: str, strict: bool = False) -> None:
    if value is not None and (value < low or (strict and value == low)):
        raise UserError(f"key '{key}' is {value}, it must be {'>' if strict else '≥'} {low}", path=source, fix=fix)


def validate(recipe: Recipe, source: str) -> None:
    """Value checks that do not need the data or the model (pool sizes: :func:`plan_budgets`; the
    model and the image size: :mod:`segal.preflight`).  Non-finite floats never get here (:func:`_coerce`)."""
    a, t, d = recipe.active, recipe.train, recipe.data
    _size(a.initial, "active.initial", source)
    _size(a.budget, "active.budget", source)
    _size(a.final, "active.final", source)
    _at_least(recipe.seed, 0, "seed", source, "set 'seed' to 0 or a positive whole number")
    if recipe.seed >= 2**63:
        raise UserError(f"key 'seed' is {recipe.seed}, too large", path=source, fix="use a seed below 2**63")
    _at_least(a.cycles, 0, "active.cycles", source, "set it to 0 or more")
    if not 0.0 <= a.label_noise <= 1.0:
        raise UserError("key 'active.label_noise' must be in [0, 1]", path=source, fix="e.g. 0.1 for 10%")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        _at_least(getattr(t, key), 0, f"train.{key}", source, f"set 'train.{key}' to 1 or more", strict=True)
    _at_least(t.steps, 0, "train.steps", source, "set it to 1 or more, or null", strict=True)
    _at_least(t.min_steps, 0, "train.min_steps", source, "set it to 0 (no floor) or more")
    _at_least(t.warm_epochs, 0, "train.warm_epochs", source, "set it to 1 or more, or null", strict=True)
    _at_least(t.lr, 0, "train.lr", source, "e.g. 0.001", strict=True)
    _at_least(t.weight_decay, 0, "train.weight_decay", source, "e.g. 0.0001, or 0 for none")
    if not 0 <= t.momentum < 1:
        raise UserError(f"key 'train.momentum' is {t.momentum}, it must be in [0, 1)", path=source, fix="e.g. 0.9")
    _at_least(t.num_workers, 0, "train.num_workers", source, "set it to 0 or more")
    if d.image_size is not None and (len(d.image_size) != 2 or min(d.image_size) <= 0):
        raise UserError("key 'data.image_size' must be [height, width]", path=source, fix="e.g. [128, 160]")
    _at_least(recipe.serve.retrain_every, 1, "serve.retrain_every", source, "set it to 1 or more, or null (= active.budget)")
    _validate_regions(recipe, source)


def _validate_regions(recipe: Recipe, source: str) -> None:
    """``active.unit``, ``active.cost`` and the ``regions:`` section must describe one kind of run."""
    a, r = recipe.active, recipe.regions
    if a.unit == "region" and r is None:
        raise UserError("active.unit is 'region' but the recipe has no regions: section", path=source,
                        fix="add a regions: section, e.g. `regions: {method: slic, segments: 400}`")
    if a.unit == "image" and r is not None:
        raise UserError("the regions: section is unused: active.unit is 'image'", path=source,
                        fix="set active.unit: region to acquire regions, or remove the regions: section")
    if a.unit == "region" and a.cost == "images":
        raise UserError("key 'active.cost' is 'images' but active.unit is 'region': regions are counted in "
                        "pixels or clicks", path=source, fix="set active.cost: pixels (or clicks)")
    if r is None:
        return
    _at_least(r.segments, 1, "regions.segments", source, "set it to 1 or more, e.g. 400")
    _at_least(r.compactness, 0, "regions.compactness", source, "e.g. 10.0", strict=True)
    _at_least(r.patch, 1, "regions.patch", source, "set it to 1 or more, e.g. 32")
    if r.resolution is not None and (len(r.resolution) != 2 or min(r.resolution) <= 0):
        raise UserError("key 'regions.resolution' must be [height, width]", path=source,
                        fix="e.g. [360, 480], or null for the pool's own mask size")


# `segal acquire --ceiling`: the same recipe trained once on the whole pool, no acquisition.  The
# report recognises such a run by its cycle 0 covering the pool (segal.results.RunData.is_ceiling).
CEILING_OVERRIDES: dict[str, Any] = {"active.initial": 1.0, "active.cycles": 0}


def _count(value: float | int, pool: int) -> int:
    """A float is a fraction of the pool, an int a count (see :class:`ActiveConfig`)."""
    return value if isinstance(value, int) else round(value * pool)


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
        if final < initial:
            raise UserError(
                f"active.final ({active.final!r} = {final} images) is below active.initial ({initial} images)",
                path=source, fix="raise active.final: a float is a fraction (1.0 = the whole pool), an int a count")
        cycles = max(0, round((final - initial) / step))  # rounding: 10% + 6×5% reaches "40%" on any pool
        sizes = [initial + k * step for k in range(cycles + 1)]
        if sizes[-1] > pool_size >= final:
            sizes[-1] = pool_size  # rounded up past the pool: the last acquisition takes what is left
    if sizes[-1] > pool_size:
        raise UserError(
            f"the last budget needs {sizes[-1]} labeled images but the pool holds {pool_size}",
            path=source,
            fix="lower active.final / active.cycles / active.budget, or use a larger pool",
        )
    return sizes
