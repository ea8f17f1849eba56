"""Acquisition strategies: one module each, all registered in :data:`STRATEGIES`."""

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

__all__ = ["STRATEGIES", "AcquisitionContext", "Selection", "Strategy"]
