"""Dilated Residual Networks (Yu, Koltun, Funkhouser, CVPR 2017) for semantic segmentation.

The backbone follows the paper: a ResNet whose last two stages keep output stride 8 by dilating
(2, then 4) instead of striding, and two extra stages (dilation 2, then 1) that remove gridding
artifacts.  DRN-C starts with a 7×7 conv and residual blocks; DRN-D replaces the first two
residual stages with plain conv stacks and the last two stages with conv stacks without residuals.

Module and parameter names (``conv1``/``bn1`` or ``layer0``, ``layer1`` … ``layer8``) are those of
the authors' ImageNet checkpoints (github.com/fyu/drn ``drn.py``), so a checkpoint loads into the
segmentation model as it is: its ``fc.*`` is dropped, everything else fits without renaming.

The head is the DRNSeg design: a 1×1 conv classifier on the stride-8 features, then upsampling to
the input size.  The authors upsample with a fixed (not learned) bilinear ``ConvTranspose2d``; we
use ``F.interpolate(mode="bilinear")``, which computes nearly the same map, has no parameters and
also gives the exact input size when it is not a multiple of 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segal.errors import UserError
from segal.models.base import MODELS, apply_state_dict, download_state_dict, read_state_dict, reject_options
from segal.models.pretrained import looks_like_resnet

CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
# The authors' checkpoint host (fyu/drn moved it from tigress-web.princeton.edu/~fy/drn/models/).
WEBROOT = "http://dl.yf.io/drn/"


@dataclass(frozen=True)
class DRNSpec:
    """One DRN variant: design (``C``/``D``), residual block, and the number of units per stage."""

    arch: str
    bottleneck: bool
    layers: tuple[int, int, int, int, int, int, int, int]
    checkpoint: str


VARIANTS: dict[str, DRNSpec] = {
    "drn_c_26": DRNSpec("C", False, (1, 1, 2, 2, 2, 2, 1, 1), "drn_c_26-ddedf421.pth"),
    "drn_c_42": DRNSpec("C", False, (1, 1, 3, 4, 6, 3, 1, 1), "drn_c_42-9d336e8c.pth"),
    "drn_c_58": DRNSpec("C", True, (1, 1, 3, 4, 6, 3, 1, 1), "drn_c_58-0a53a92c.pth"),
    "drn_d_22": DRNSpec("D", False, (1, 1, 2, 2, 2, 2, 1, 1), "drn_d_22-4bd2f8ea.pth"),
    "drn_d_38": DRNSpec("D", False, (1, 1, 3, 4, 6, 3, 1, 1), "drn_d_38-eebb45f0.pth"),
    "drn_d_54": DRNSpec("D", True, (1, 1, 3, 4, 6, 3, 1, 1), "drn_d_54-0e0534ff.pth"),
    "drn_d_105": DRNSpec("D", True, (1, 1, 3, 4, 23, 3, 1, 1), "drn_d_105-12b40979.pth"),
}


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs; ``residual=False`` gives DRN-C's de-gridding stages (skip connection removed)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: tuple[int, int] = (1, 1),
                 downsample: nn.Module | None = None, residual: bool = True):  # fmt: skip
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation[0])
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, 1, dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1×1 → dilated 3×3 → 1×1 (×4 channels); always residual, as in the authors' DRN-C-58/D-54/D-105."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: tuple[int, int] = (1, 1),
                 downsample: nn.Module | None = None, residual: bool = True):  # fmt: skip
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class DRN(nn.Module):
    """The DRN backbone without pooling and ``fc``: ``B×3×H×W`` → ``B×512×H/8×W/8``."""

    def __init__(self, spec: DRNSpec):
        super().__init__()
        if spec.arch not in ("C", "D"):
            raise ValueError(f"DRN arch must be 'C' or 'D', not {spec.arch!r}")
        self.arch = spec.arch
        self.out_channels = CHANNELS[-1]
        self._cin = CHANNELS[0]
        block: type[BasicBlock] | type[Bottleneck] = Bottleneck if spec.bottleneck else BasicBlock
        n = spec.layers
        if spec.arch == "C":
            self.conv1 = nn.Conv2d(3, CHANNELS[0], 7, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(CHANNELS[0])
            self.relu = nn.ReLU(inplace=True)
            self.layer1 = self._blocks(BasicBlock, CHANNELS[0], n[0], stride=1)
            self.layer2 = self._blocks(BasicBlock, CHANNELS[1], n[1], stride=2)
        else:
            self.layer0 = nn.Sequential(
                nn.Conv2d(3, CHANNELS[0], 7, padding=3, bias=False),
                nn.BatchNorm2d(CHANNELS[0]),
                nn.ReLU(inplace=True),
            )
            self.layer1 = self._convs(CHANNELS[0], n[0], stride=1)
            self.layer2 = self._convs(CHANNELS[1], n[1], stride=2)
        self.layer3 = self._blocks(block, CHANNELS[2], n[2], stride=2)
        self.layer4 = self._blocks(block, CHANNELS[3], n[3], stride=2)
        # Stages 5 and 6 dilate instead of striding: output stride stays 8.
        self.layer5 = self._blocks(block, CHANNELS[4], n[4], dilation=2)
        self.layer6 = self._blocks(block, CHANNELS[5], n[5], dilation=4)
        # Stages 7 and 8 undo the gridding of dilation: no skip connections.
        if spec.arch == "C":
            self.layer7 = self._blocks(BasicBlock, CHANNELS[6], n[6], dilation=2, residual=False)
            self.layer8 = self._blocks(BasicBlock, CHANNELS[7], n[7], dilation=1, residual=False)
        else:
            self.layer7 = self._convs(CHANNELS[6], n[6], dilation=2)
            self.layer8 = self._convs(CHANNELS[7], n[7], dilation=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _blocks(
        self, block, planes: int, count: int, stride: int = 1, dilation: int = 1, residual: bool = True
    ) -> nn.Sequential:
        cout = planes * block.expansion
        downsample = None
        if stride != 1 or self._cin != cout:
            downsample = nn.Sequential(
                nn.Conv2d(self._cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        units = [block(self._cin, planes, stride, (dilation, dilation), downsample, residual)]
        units += [block(cout, planes, 1, (dilation, dilation), None, residual) for _ in range(count - 1)]
        self._cin = cout
        return nn.Sequential(*units)

    def _convs(self, channels: int, count: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        modules: list[nn.Module] = []
        for i in range(count):
            modules += [
                _conv3x3(self._cin, channels, stride if i == 0 else 1, dilation),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            self._cin = channels
        return nn.Sequential(*modules)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x))) if self.arch == "C" else self.layer0(x)
        for stage in (
            self.layer1,
            self.layer2,
            self.layer3,
            self.layer4,
            self.layer5,
            self.layer6,
            self.layer7,
            self.layer8,
        ):
            x = stage(x)
        return x


class DRNSeg(DRN):
    """DRN backbone + 1×1 conv classifier at stride 8 + bilinear upsampling to the input size.

    A subclass (not a wrapper) so that backbone parameter names equal the ImageNet checkpoint's.
    """

    def __init__(self, spec: DRNSpec, num_classes: int, dropout: float = 0.0):
        super().__init__(spec)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.seg = nn.Conv2d(self.out_channels, num_classes, 1)
        nn.init.kaiming_normal_(self.seg.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.seg.bias)  # type: ignore[arg-type]  # Conv2d has a bias unless bias=False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.seg(self.dropout(self.features(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def load_backbone(model: DRNSeg, state: dict[str, torch.Tensor], source: object) -> None:
    """Load an ImageNet DRN checkpoint: every backbone key must fit; ``fc.*`` is ignored, ``seg.*`` kept.

    A torchvision / timm ResNet file is refused by name: DRN's stem (16 channels, no max-pool) and its
    eight stages are not ResNet's, so no mapping of the key names would give a pretrained DRN."""
    if looks_like_resnet(state):
        raise UserError(
            "these are ResNet weights (torchvision / timm key names): DRN's stem and stages differ from "
            "ResNet's, so they do not load into a DRN",
            path=source,
            fix="set model.weights: imagenet (the DRN authors' checkpoint), or use model.name: deeplabv3plus "
                "with model.encoder: resnet18 / resnet34 / resnet50 for torchvision or timm weights",
        )
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = apply_state_dict(model, backbone, source, strict=False)
    missing = [k for k in missing if not k.startswith("seg.")]
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise UserError(
            f"weights do not fit this DRN backbone ({detail})",
            path=source,
            fix="use the authors' checkpoint of the same variant, or weights saved from this model",
        )


def build_drn(variant: str, num_classes: int, weights: str | None = None, dropout: float = 0.0) -> DRNSeg:
    """Build a DRN segmenter; ``weights``: None, ``"imagenet"`` (authors' checkpoint), or a local file.

    A local file may be a full segal state dict or an authors' ImageNet checkpoint (backbone only).
    """
    if variant not in VARIANTS:
        raise UserError(f"unknown DRN variant {variant!r}", fix=f"choose one of: {', '.join(VARIANTS)}")
    spec = VARIANTS[variant]
    model = DRNSeg(spec, num_classes, dropout=dropout)
    if weights == "imagenet":
        url = WEBROOT + spec.checkpoint
        load_backbone(model, download_state_dict(url, variant), url)
    elif weights is not None:
        path = Path(weights)
        state = read_state_dict(path)
        if "seg.weight" in state:
            apply_state_dict(model, state, path)
        else:
            load_backbone(model, state, path)
    return model


def _register(variant: str) -> None:
    def build(
        num_classes: int,
        weights: str | None = None,
        *,
        encoder: str | None = None,
        dropout: float = 0.0,
        **options,
    ) -> DRNSeg:
        reject_options(variant, options)
        return build_drn(variant, num_classes, weights, dropout)

    build.__name__ = build.__qualname__ = variant
    build.__doc__ = (
        f"{variant.upper().replace('_', '-')} segmenter (``encoder`` is ignored: the name is the variant)."
    )
    MODELS.register(variant)(build)


for _variant in VARIANTS:
    _register(_variant)


@MODELS.register("drn")
def drn(
    num_classes: int,
    weights: str | None = None,
    *,
    encoder: str = "drn_d_22",
    dropout: float = 0.0,
    **options,
) -> DRNSeg:
    """DRN with the variant given as ``model.encoder`` (e.g. ``drn_d_22``)."""
    reject_options("drn", options)
    return build_drn(encoder, num_classes, weights, dropout)
