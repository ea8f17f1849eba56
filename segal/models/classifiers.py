"""Classification task networks: VGG16-BN (the VAAL paper's) and ResNet-18, for 32×32 or 224×224 inputs.

Both subclass torchvision's classes, so parameter names equal torchvision's and ImageNet weights
load without renaming.

``input_size=224`` is torchvision's standard architecture.  ``input_size=32`` (CIFAR):

* ResNet-18: the usual CIFAR stem, a 3×3 stride-1 conv and no max-pool (a 7×7/2 conv plus
  max-pool would leave a 1×1 map before the last stage).
* VGG16-BN: the same features and the same 4096-4096 classifier with dropout, but pooled to 1×1
  instead of 7×7.  The VAAL code keeps torchvision's ``AdaptiveAvgPool2d(7)``, which on 32×32
  replicates the 1×1 map 49 times; a linear layer on 49 copies computes exactly what one on a
  single copy can (the weight blocks just add up), so the function class is the same while the
  first layer shrinks from 102.8M to 2.1M parameters.  ``pool=7`` restores the authors' layout.

ResNet-18's ``stem`` option overrides that pairing: ``stem="imagenet"`` keeps the 7×7/2 conv and
max-pool on 32×32 inputs.  It is about 9× cheaper to train there (386 against 42 img/s on one CPU
thread, measured) and a few points less accurate, which is what a CPU-sized CIFAR experiment needs;
on a GPU keep the CIFAR stem.

``dropout`` is the MC-dropout knob: VGG's two classifier dropouts (torchvision default 0.5);
ResNet-18 has none by default and gets a ``Dropout`` before ``fc`` when ``dropout > 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.models import vgg as tv_vgg

from segal.checkpoint import apply_state_dict
from segal.errors import UserError
from segal.models.base import (
    MODELS,
    SAME_MODEL,
    WEIGHTS_MISFIT,
    download_state_dict,
    load_weights,
    reject_options,
)

INPUT_SIZES = (32, 224)


def _check_input_size(input_size: int) -> None:
    if input_size not in INPUT_SIZES:
        raise UserError(
            f"input_size must be 32 or 224, not {input_size!r}",
            fix="set model.options.input_size to 32 or 224",
        )


class VGG16BN(tv_vgg.VGG):
    """torchvision VGG16-BN with ``embed`` and a configurable pooled size (see module docstring)."""

    def __init__(self, num_classes: int, input_size: int = 32, dropout: float = 0.5, pool: int | None = None):
        _check_input_size(input_size)
        pool = pool if pool is not None else (1 if input_size == 32 else 7)
        features = tv_vgg.make_layers(tv_vgg.cfgs["D"], batch_norm=True)
        super().__init__(features, num_classes=num_classes, init_weights=False, dropout=dropout)
        if pool != 7:
            self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
            self.classifier[0] = nn.Linear(512 * pool * pool, 4096)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's VGG init (which the VAAL code inherits): Kaiming fan-out convs, N(0, 0.01) linears.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]  # VGG convs have biases
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 4096-d input of the last linear layer."""
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:-2](x)


class ResNet18(tv_resnet.ResNet):
    """torchvision ResNet-18 with ``embed``, an optional CIFAR stem and an optional dropout before ``fc``."""

    def __init__(self, num_classes: int, input_size: int = 32, dropout: float = 0.0, stem: str = "auto"):
        _check_input_size(input_size)
        if stem not in ("auto", "cifar", "imagenet"):
            raise UserError(f"unknown ResNet-18 stem {stem!r}", fix="set model.options.stem to auto, cifar or imagenet")
        super().__init__(tv_resnet.BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        if stem == "cifar" or (stem == "auto" and input_size == 32):
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
            self.maxpool = nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 512-d global-pooled features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.embed(x)))


def _load_imagenet(model: nn.Module, tv_weights, name: str) -> None:
    """Copy every ImageNet tensor whose name and shape fit; the class layer (and a CIFAR stem) stay random."""
    state = download_state_dict(tv_weights.url, name)
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(fitting) < len(own) // 2:  # a wrong file or a renamed architecture, not a head swap
        raise UserError(
            f"ImageNet weights for {name} do not fit this model",
            path=tv_weights.url,
            fix="report this as a bug",
        )
    apply_state_dict(model, fitting, tv_weights.url, strict=False, what=WEIGHTS_MISFIT, fix=SAME_MODEL)


_M = TypeVar("_M", bound=nn.Module)


def _finish(model: _M, weights: str | None, tv_weights, name: str) -> _M:
    if weights == "imagenet":
        _load_imagenet(model, tv_weights, name)
    elif weights is not None:
        load_weights(model, Path(weights))
    return model


@MODELS.register("vgg16_bn")
def vgg16_bn(
    num_classes: int,
    weights: str | None = None,
    *,
    encoder: str | None = None,
    input_size: int = 32,
    dropout: float = 0.5,
    pool: int | None = None,
    **options,
) -> VGG16BN:
    """VGG16-BN (``encoder`` is ignored).  ``imagenet`` weights load the features (and, at 224, the hidden layers)."""
    reject_options("vgg16_bn", options)
    model = VGG16BN(num_classes, input_size=input_size, dropout=dropout, pool=pool)
    return _finish(model, weights, tv_vgg.VGG16_BN_Weights.IMAGENET1K_V1, "vgg16_bn")


@MODELS.register("resnet18")
def resnet18(
    num_classes: int,
    weights: str | None = None,
    *,
    encoder: str | None = None,
    input_size: int = 32,
    dropout: float = 0.0,
    stem: str = "auto",
    **options,
) -> ResNet18:
    """ResNet-18 (``encoder`` is ignored).  ``imagenet`` weights load all but ``fc`` (and a CIFAR stem).

    ``stem``: ``auto`` (CIFAR stem at 32, torchvision's at 224), ``cifar`` or ``imagenet``.
    """
    reject_options("resnet18", options)
    model = ResNet18(num_classes, input_size=input_size, dropout=dropout, stem=stem)
    return _finish(model, weights, tv_resnet.ResNet18_Weights.IMAGENET1K_V1, "resnet18")
