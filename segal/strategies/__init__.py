"""Acquisition strategies: one module each, all registered in :data:`STRATEGIES`."""

from segal.strategies import random, uncertainty  # noqa: F401  (registration)
from segal.strategies.base import STRATEGIES, AcquisitionContext, Selection, Strategy

__all__ = ["STRATEGIES", "AcquisitionContext", "Selection", "Strategy"]
