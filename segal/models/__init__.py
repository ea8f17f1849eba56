"""Task networks, registered by name in :data:`MODELS`."""

from segal.models import classifiers, deeplab, drn  # noqa: F401  (registration)
from segal.models.base import MODELS, embed

__all__ = ["MODELS", "embed"]
