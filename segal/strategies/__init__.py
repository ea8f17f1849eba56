"""Acquisition strategies: one module each, all registered in :data:`STRATEGIES`, built by :func:`make_strategy`."""

import dataclasses
from collections.abc import Mapping
from typing import Any

from segal.config import from_dict
from segal.errors import UserError
from segal.strategies import (  # noqa: F401  (registration)
    coreset,
    ensemble,
    mc_dropout,
    qbc,
    random,
    region_class_balanced,
    region_random,
    region_uncertainty,
    region_vaal,
    suggestive,
    uncertainty,
    vaal,  # noqa: F401  (registration)
)
from segal.strategies.base import STRATEGIES, AcquisitionContext, Selection, Strategy
from segal.strategies.region_base import REGION_STRATEGIES, RegionStrategy


def make_strategy(name: str, params: Mapping[str, Any], source: str,
                  prefix: str = "active.strategy_params.") -> Strategy:
    """Strategy ``name`` with ``params`` checked by its ``Params`` (types, unknown keys, and values in
    ``__post_init__``), so a bad recipe fails when it is read, before anything is trained or written."""
    cls = STRATEGIES.get(name)
    taken = [f.name for f in dataclasses.fields(cls.Params)]
    unknown = sorted(set(params) - set(taken))
    if unknown:
        raise UserError(f"unknown key '{prefix}{unknown[0]}': strategy {name!r} has no such parameter", path=source,
                        fix=f"remove it; {name} takes " + (", ".join(sorted(taken)) if taken else "no parameters"))
    try:
        checked = from_dict(cls.Params, dict(params), source, prefix=prefix)
    except UserError as exc:
        if str(exc).startswith(f"{source}: "):
            raise
        raise UserError(str(exc), path=source) from None  # a value check in Params names no file
    return cls(checked)


def make_region_strategy(name: str, params: Mapping[str, Any], source: str) -> RegionStrategy:
    """The region-level variant of strategy ``name`` (``active.unit: region``), its ``params`` checked as
    :func:`make_strategy` checks them; a strategy without one is a UserError naming those that have one."""
    if name not in REGION_STRATEGIES:
        raise UserError(f"strategy {name!r} has no region-level variant yet (active.unit is 'region')", path=source,
                        fix=f"with active.unit: region use one of {', '.join(REGION_STRATEGIES.names())}")
    cls = REGION_STRATEGIES.get(name)
    taken = [f.name for f in dataclasses.fields(cls.Params)]
    unknown = sorted(set(params) - set(taken))
    if unknown:
        raise UserError(f"unknown key 'active.strategy_params.{unknown[0]}': region strategy {name!r} has no such "
                        "parameter", path=source,
                        fix=f"remove it; {name} takes " + (", ".join(sorted(taken)) if taken else "no parameters"))
    try:
        checked = from_dict(cls.Params, dict(params), source, prefix="active.strategy_params.")
    except UserError as exc:
        if str(exc).startswith(f"{source}: "):
            raise
        raise UserError(str(exc), path=source) from None  # a value check in Params names no file
    return cls(checked)


def check_strategy_params(name: str, params: Mapping[str, Any], source: str, sets: Mapping[str, Any]) -> Strategy:
    """:func:`make_strategy`, but an error caused by a ``--set active.strategy_params.KEY`` names that
    ``--set`` instead of the recipe file (the recipe's own parameters alone are checked to tell which)."""
    prefix = "active.strategy_params."
    whole = "active.strategy_params" in sets  # --set active.strategy_params={...} replaces them all
    from_sets = ["active.strategy_params"] if whole else sorted(
        k for k in sets if k.startswith(prefix) and k[len(prefix):] in params)
    try:
        return make_strategy(name, params, source)
    except UserError:
        if not from_sets:
            raise
        own = {} if whole else {k: v for k, v in params.items() if prefix + k not in from_sets}
        try:
            make_strategy(name, own, source)
        except UserError:
            pass  # the recipe's own parameters are already wrong: name the recipe
        else:
            make_strategy(name, params, f"--set {', '.join(from_sets)}")
        raise


def label_first(strategy: str, score: float) -> float:
    """A recorded score turned so that higher means "label first" for every strategy, because annotation
    tools sort one way: VAAL's P(labeled) (lowest acquired) becomes P(unlabeled) = 1 − P(labeled)."""
    cls = STRATEGIES.get(strategy) if strategy in STRATEGIES else None
    return 1.0 - score if cls is not None and cls.lowest_first else score


__all__ = ["REGION_STRATEGIES", "STRATEGIES", "AcquisitionContext", "RegionStrategy", "Selection", "Strategy",
           "check_strategy_params", "label_first", "make_region_strategy", "make_strategy"]
