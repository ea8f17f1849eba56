"""Device and mixed-precision choices, in one place so every loop agrees."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from segal.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; an unavailable CUDA device is a user error, not a crash."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}", fix="use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available", fix="use --device cpu")
    return device


def amp_dtype(device: torch.device) -> torch.dtype:
    """float16 on CUDA (with a grad scaler), bfloat16 on CPU (about 2× faster training here)."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast(device: torch.device, enabled: bool):
    """Autocast context for the device, or a no-op when AMP is off."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device))


def amp_enabled(setting: str, device: torch.device) -> bool:
    """``auto`` turns AMP on for CUDA only.

    bfloat16 autocast on CPU was measured *slower* on this project's 2-core x86 machines without
    AVX512-BF16 (DeepLabV3+ R18, batch 8: 1.46 s/iter fp32 vs 2.43 s/iter bf16 at 176×240), so CPU
    users opt in with ``amp: on`` where their processor has native bfloat16.
    """
    if setting == "on":
        return True
    if setting == "off":
        return False
    return device.type == "cuda"


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """A gradient scaler for float16 on CUDA; disabled (a pass-through) elsewhere."""
    return torch.amp.GradScaler(device.type, enabled=enabled and device.type == "cuda")


@dataclass(frozen=True)
class Compute:
    """Where and at what size the networks run: built once per run (``Run.compute``) and handed to
    training, evaluation and acquisition, instead of the same five arguments passed by hand."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    image_size: Sequence[int] | None = None  # [H, W] network input; None keeps each image's size
    amp: bool = False  # autocast (see amp_enabled)
    batch_size: int = 16  # inference batch: evaluation and pool scoring (training uses train.batch_size)
    num_workers: int = 0  # DataLoader worker processes

    def __post_init__(self):
        object.__setattr__(self, "device", torch.device(self.device))  # accept "cpu", "cuda:0"
