"""ImageNet-pretrained encoders from a local file: a torchvision or timm state dict onto an encoder.

Real users start from pretrained encoders, and the file they have is rarely segal's own checkpoint:
it is ``torchvision.models.resnet18(weights=...).state_dict()`` or timm's ``resnet18`` saved with
``torch.save``.  smp's ResNet encoders subclass torchvision's ``ResNet`` and timm names a ResNet's
tensors the same way, so the key names match once wrappers are accounted for: a ``module.``
(DataParallel) or ``encoder.``/``backbone.``/``model.`` prefix in the file, and ``model.`` in
front of the network inside smp's timm-universal (``tu-…``) encoders.  Keys the encoder has no
place for (the classifier ``fc.*``) are left out and reported in one log line; an encoder tensor
the file lacks, or one of another shape, is refused: a half-loaded encoder would train, quietly worse.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from segal.errors import UserError

log = logging.getLogger(__name__)

FILE_PREFIXES = ("", "net.encoder.", "encoder.", "backbone.", "model.")  # what a saved encoder may sit under
ENCODER_PREFIXES = ("", "model.")  # smp's timm-universal encoders hold the timm network as `.model`
FROM_IMAGENET = ("save a torchvision or timm model of the same architecture, e.g. "
                 "torch.save(torchvision.models.resnet18(weights='IMAGENET1K_V1').state_dict(), 'resnet18.pt')")
_reported: set[tuple[str, str]] = set()  # a network is rebuilt every cycle: say it once per file


def _optional(key: str) -> bool:
    """BatchNorm's step counter: absent from many published files, and unused in eval and by momentum BN."""
    return key.endswith("num_batches_tracked")


@dataclass
class EncoderWeights:
    """The file's tensors under the encoder's own names, and the file's keys that were left out."""

    state: dict[str, torch.Tensor]
    left_out: list[str]


def match_encoder_state(target: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: object,
                        what: str) -> EncoderWeights:
    """Rename ``state``'s keys onto ``target``'s (an encoder's ``state_dict()``, shapes only are read);
    every one of ``target``'s tensors must be found, with its shape."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}  # saved from DataParallel / DDP
    best: dict[str, str] = {}  # encoder key -> file key
    strip = add = ""
    for file_prefix in FILE_PREFIXES:
        for encoder_prefix in ENCODER_PREFIXES:
            mapped = {encoder_prefix + k[len(file_prefix):]: k for k in state
                      if k.startswith(file_prefix) and encoder_prefix + k[len(file_prefix):] in target}
            if len(mapped) > len(best):
                best, strip, add = mapped, file_prefix, encoder_prefix
    if not best:
        mine, theirs = next(iter(target), "?"), next(iter(state), "?")
        raise UserError(f"no tensor in these weights fits {what} (its keys look like {mine!r}, the file's like "
                        f"{theirs!r})", path=source, fix=FROM_IMAGENET)
    for key, file_key in best.items():
        if tuple(state[file_key].shape) != tuple(target[key].shape):
            raise UserError(f"weights do not fit {what}: {file_key!r} is {list(state[file_key].shape)}, the encoder's "
                            f"{key!r} is {list(target[key].shape)}", path=source,
                            fix="use weights of the same architecture (resnet18 for encoder resnet18, …)")
    missing = [k for k in target if k not in best and not _optional(k)]
    if missing:
        raise UserError(f"these weights hold only {len(best)} of the {len(target)} tensors of {what} (no {missing[0]!r}"
                        f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''})", path=source,
                        fix="use weights of the same architecture (resnet18 for encoder resnet18, …)")
    used = set(best.values())
    left_out = sorted(k for k in state if k not in used)
    stages = {k[len(add):].split(".")[0] for k in target}  # conv1, bn1, layer1, …
    extra = [k for k in left_out if k.startswith(strip) and k[len(strip):].split(".")[0] in stages]
    if extra:  # e.g. resnet34's layer1.2.* on a resnet18 encoder: a deeper network of the same family
        raise UserError(f"weights do not fit {what}: they hold tensors it has no place for ({_listing(extra, 2)}), "
                        "so they are of a larger architecture", path=source,
                        fix="use weights of the same architecture (resnet18 for encoder resnet18, …)")
    return EncoderWeights({k: state[f] for k, f in best.items()}, left_out)


def load_encoder_weights(encoder: nn.Module, state: Mapping[str, torch.Tensor], source: Path, what: str) -> None:
    """Load a torchvision / timm state dict into ``encoder`` (see :func:`match_encoder_state`), and log
    once which of the file's keys were left out."""
    matched = match_encoder_state(encoder.state_dict(), state, source, what)
    encoder.load_state_dict(matched.state, strict=False)  # only optional counters can be missing here
    report = (f"{source}: loaded {len(matched.state)} tensors into {what}"
              + (f"; left out {len(matched.left_out)} keys it has no place for ({_listing(matched.left_out)})"
                 if matched.left_out else ""))
    if (str(source), report) not in _reported:
        _reported.add((str(source), report))
        log.warning(report)


def _listing(keys: list[str], shown: int = 4) -> str:
    return ", ".join(keys[:shown]) + (f", … {len(keys) - shown} more" if len(keys) > shown else "")


def looks_like_resnet(state: Mapping[str, torch.Tensor]) -> bool:
    """A torchvision / timm ResNet state dict (four stages, a ``conv1`` stem), as opposed to a DRN's eight."""
    keys = {k.removeprefix("module.") for k in state}
    return "conv1.weight" in keys and any(k.startswith("layer4.") for k in keys) and not any(
        k.startswith("layer5.") for k in keys)
