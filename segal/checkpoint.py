"""Checkpoints: one way to save, load and apply network weights.

Saving goes through :func:`segal.fileio.atomic_write_bytes` (a crash leaves the old file or the new
one); loading always uses ``weights_only=True``, so a checkpoint never unpickles arbitrary objects;
and a file that is corrupt, foreign or of another shape is a :class:`UserError` naming it, never a
traceback.  Used by the engine (task networks and resumable training state), the committee
strategies (members), VAAL (its VAE and discriminator) and the models (user-supplied weights).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segal.errors import UserError
from segal.fileio import atomic_write_bytes

RECOMPUTE = "delete it to recompute this step"


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """``torch.save`` of tensors (and plain values) to ``path``, atomically; only rank 0 writes."""
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, *, what: str = "checkpoint", fix: str = RECOMPUTE) -> Any:
    """What :func:`save_checkpoint` (or ``torch.save``) wrote, weights only, on the CPU."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — corrupt or foreign files are the same user-facing problem
        raise UserError(f"cannot read {what} ({type(exc).__name__})", path=path, fix=fix) from None


def apply_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: object, *, strict: bool = True,
                     what: str = "checkpoint does not fit this model",
                     fix: str = "it was saved for another model or class count: delete it or fix the recipe") -> Any:
    """``model.load_state_dict`` with a mismatch reported as a user error naming ``source``.

    Returns torch's ``(missing_keys, unexpected_keys)`` for non-strict callers.
    """
    try:
        return model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise UserError(f"{what} ({' '.join(lines[:2])[:300]})", path=source, fix=fix) from None
