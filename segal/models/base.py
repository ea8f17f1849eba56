"""Task-network registry.

A model builder is ``build(num_classes: int, **options) -> nn.Module``.  Segmentation networks map
``B×3×H×W`` to logits ``B×C×H×W``; classifiers map to ``B×C``.  A network may offer
``embed(x) -> B×D`` (pooled penultimate features) for core-set and similar strategies; when it
does not, :func:`segal.models.embed` falls back to global-pooled logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from segal.registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-image feature vectors for distance-based strategies."""
    if hasattr(model, "embed"):
        return model.embed(x)
    out = model(x)
    return out.flatten(2).mean(-1) if out.ndim == 4 else out
