"""Acquisition strategies: one module each, all registered in :data:`STRATEGIES`, built by :func:`make_strategy`."""

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
    suggestive,
    uncertainty,
    vaal,  # noqa: F401  (registration)
)
from segal.strategies.base import STRATEGIES, AcquisitionContext, Selection, Strategy


def make_strategy(name: str, params: Mapping[str, Any], source: str,
                  prefix: str = "active.strategy_params.") -> Strategy:
    """Strategy ``name`` with ``params`` checked by its ``Params`` (types, unknown keys, and values in
    ``__post_init__``), so a bad recipe fails when it is read, before anything is trained or written."""
    cls = STRATEGIES.get(name)
    try:
        checked = from_dict(cls.Params, dict(params), source, prefix=prefix)
    except UserError as exc:
        if str(exc).startswith(f"{source}: "):
            raise
        raise UserError(str(exc), path=source) from None  # a value check in Params names no file
    return cls(checked)


__all__ = ["STRATEGIES", "AcquisitionContext", "Selection", "Strategy", "make_strategy"]
