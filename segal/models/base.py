"""Task-network registry.

A model builder is ``build(num_classes: int, **options) -> nn.Module``.  Segmentation networks map
``B×3×H×W`` to logits ``B×C×H×W``; classifiers map to ``B×C``.  A network may offer
``embed(x) -> B×D`` (pooled penultimate features) for core-set and similar strategies; when it
does not, :func:`segal.models.embed` falls back to global-pooled logits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from segal.checkpoint import apply_state_dict, load_checkpoint
from segal.errors import UserError
from segal.registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")
SAVE_STATE_DICT = "pass a state_dict saved with torch.save"
WEIGHTS_MISFIT = "weights do not fit this model"
SAME_MODEL = "use weights saved from the same model and classes"


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-image feature vectors for distance-based strategies."""
    own = getattr(model, "embed", None)
    if callable(own):
        return own(x)
    out = model(x)
    return out.flatten(2).mean(-1) if out.ndim == 4 else out


def reject_options(model_name: str, options: Mapping[str, object]) -> None:
    """Unknown ``model.options`` are a recipe typo, not a ``TypeError`` deep in a constructor."""
    if options:
        raise UserError(
            f"model {model_name!r} has no option(s) {', '.join(sorted(options))}",
            fix="remove them from model.options",
        )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file, weights only (never unpickled objects)."""
    if not path.is_file():
        raise UserError("weights file not found", path=path, fix="check model.weights")
    state = load_checkpoint(path, what="weights", fix=SAVE_STATE_DICT)
    if isinstance(state, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict):
        raise UserError("weights file holds no state dict", path=path, fix=SAVE_STATE_DICT)
    return state


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a state dict (weights only) from ``path`` into ``model``; mismatches are user errors."""
    apply_state_dict(model, read_state_dict(path), path, what=WEIGHTS_MISFIT, fix=SAME_MODEL)


def download_state_dict(url: str, what: str) -> dict[str, torch.Tensor]:
    """Download (or take from the torch hub cache) a weights-only state dict; offline is a user error."""
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=True)
    except (OSError, RuntimeError) as exc:  # URLError/HTTPError are OSErrors; RuntimeError: corrupt download
        raise UserError(
            f"could not download {what} ImageNet weights from {url} ({type(exc).__name__})",
            fix="connect to the network, or download the file and set model.weights to its local path",
        ) from None
