"""DeepLabV3+ (and friends) from segmentation-models-pytorch.

Weights are resolved in an explicit step: ``None`` (random init), a local file (weights only,
never unpickled objects), or ``"imagenet"``, which downloads the encoder weights and fails with a
clear message when offline.  A local file is either segal's own checkpoint of the whole network
(``net.*`` keys) or an encoder's ImageNet weights saved from torchvision or timm
(:mod:`segal.models.pretrained`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from segal.errors import UserError
from segal.models.base import MODELS, SAME_MODEL, WEIGHTS_MISFIT, apply_state_dict, read_state_dict
from segal.models.pretrained import load_encoder_weights


class SmpSegmenter(nn.Module):
    """An smp model with an ``embed`` for distance-based strategies and a dropout hook for MC dropout."""

    def __init__(self, net: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.net: Any = net  # an smp model: encoder, decoder, segmentation_head
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.net.encoder(x)
        decoded = self.net.decoder(features) if _decoder_takes_list(self.net) else self.net.decoder(*features)
        return self.net.segmentation_head(self.dropout(decoded))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encoder(x)[-1].mean(dim=(2, 3))


def _decoder_takes_list(net: Any) -> bool:
    import inspect

    params = list(inspect.signature(net.decoder.forward).parameters.values())
    return len(params) == 1 and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and params[0].name == "features"


def _reject_unknown_options(arch: str, encoder: str, options: dict) -> None:
    """smp passes unknown keyword arguments on to its encoders, and its own encoders ignore them: a typo
    in ``model.options`` would be dropped silently.  (timm ``tu-`` encoders do take extra arguments.)"""
    import inspect

    import segmentation_models_pytorch as smp

    cls = {"deeplabv3plus": smp.DeepLabV3Plus, "unet": smp.Unet}[arch]
    taken = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs", "encoder_name", "encoder_weights", "classes"}
    unknown = sorted(set(options) - taken)
    if unknown and not encoder.startswith("tu-"):
        raise UserError(f"model {arch!r} has no option(s) {', '.join(unknown)} (model.options)",
                        fix=f"remove them; it takes {', '.join(sorted(taken | {'dropout'}))}")


def _build_smp(arch: str, num_classes: int, encoder: str, weights: str | None, dropout: float = 0.0, **options) -> nn.Module:
    import segmentation_models_pytorch as smp

    encoder_weights = "imagenet" if weights == "imagenet" else None
    _reject_unknown_options(arch, encoder, options)
    try:
        net = smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights, classes=num_classes, **options)
    except (OSError, ConnectionError, RuntimeError) as exc:
        if encoder_weights:
            raise UserError(
                f"could not download ImageNet weights for encoder {encoder!r} ({type(exc).__name__})",
                fix="connect to the network, or set model.weights to null or to a local weights file",
            ) from None
        raise
    except KeyError:
        import difflib

        close = difflib.get_close_matches(encoder, smp.encoders.get_encoder_names(), n=3, cutoff=0.5)
        raise UserError(f"unknown encoder {encoder!r} for model.name {arch}",
                        fix=f"set model.encoder to {' or '.join(close) if close else 'resnet18'} "
                            "(all names: segmentation_models_pytorch.encoders.get_encoder_names())") from None
    model = SmpSegmenter(net, dropout=dropout)
    if weights not in (None, "imagenet"):
        load_local_weights(model, Path(weights), f"the {encoder!r} encoder of {arch}")
    return model


def load_local_weights(model: SmpSegmenter, path: Path, what: str) -> None:
    """segal's checkpoint of the whole network, or an encoder's torchvision / timm state dict."""
    state = read_state_dict(path)
    if any(k.startswith("net.") for k in state):
        apply_state_dict(model, state, path, what=WEIGHTS_MISFIT, fix=SAME_MODEL)
    else:
        load_encoder_weights(model.net.get_submodule("encoder"), state, path, what)


@MODELS.register("deeplabv3plus")
def deeplabv3plus(num_classes: int, encoder: str = "resnet18", weights: str | None = None, **options) -> nn.Module:
    return _build_smp("deeplabv3plus", num_classes, encoder, weights, **options)


@MODELS.register("unet")
def unet(num_classes: int, encoder: str = "resnet18", weights: str | None = None, **options) -> nn.Module:
    return _build_smp("unet", num_classes, encoder, weights, **options)
