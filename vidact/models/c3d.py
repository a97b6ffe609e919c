"""Tran et al. (ICCV 2015), "Learning Spatiotemporal Features with 3D Convolutional Networks" (C3D).

Eight 3x3x3 convolutions conv1a..conv5b with 64-128-256-256-512-512-512-512 filters, pool1 1x2x2 and
pool2..pool5 2x2x2 (pool5 pads H and W by one, as in the released model), fc6/fc7 4096; input
3x16x112x112. At that input: 38.5 G multiply-adds and 78.4 M parameters with a 101-class head.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from vidact.models.blocks import FCHead, FCHeadNet, MaxPool3dMinSize, init_conv_linear, scaled
from vidact.models.registry import InputSpec, register_model

__all__ = ["C3D", "c3d", "c3d_bn"]

WIDTHS = (("1a", 64), ("2a", 128), ("3a", 256), ("3b", 256), ("4a", 512), ("4b", 512), ("5a", 512), ("5b", 512))
POOL_AFTER = {"1a": "pool1", "2a": "pool2", "3b": "pool3", "4b": "pool4", "5b": "pool5"}


def _pool(name: str) -> nn.MaxPool3d:
    if name == "pool1":
        return MaxPool3dMinSize((1, 2, 2), (1, 2, 2))
    if name == "pool5":
        return MaxPool3dMinSize((2, 2, 2), (2, 2, 2), padding=(0, 1, 1))
    return MaxPool3dMinSize((2, 2, 2), (2, 2, 2))


class C3D(FCHeadNet):
    """C3D on (B, C, T, H, W); an adaptive pool to 1x4x4 (identity at 16x112x112) precedes fc6."""

    def __init__(
        self,
        num_classes: int = 101,
        in_channels: int = 3,
        dropout: float = 0.5,
        width_mult: float = 1.0,
        batch_norm: bool = False,
    ):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for name, width in WIDTHS:
            out = scaled(width, width_mult)
            layers[f"conv{name}"] = nn.Conv3d(channels, out, 3, padding=1, bias=not batch_norm)
            if batch_norm:
                layers[f"bn{name}"] = nn.BatchNorm3d(out)
            layers[f"relu{name}"] = nn.ReLU(inplace=True)
            if name in POOL_AFTER:
                layers[POOL_AFTER[name]] = _pool(POOL_AFTER[name])
            channels = out
        self.features = nn.Sequential(layers)
        fc = scaled(4096, width_mult)
        self.head = FCHead(channels, (1, 4, 4), (fc, fc), num_classes, dropout)
        self.num_features = self.head.num_features
        init_conv_linear(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model(
    "c3d",
    input=InputSpec(3, 16, 112, 1, "rgb"),
    family="c3d",
    description="Tran et al. 2015: eight 3x3x3 convs, fc6/fc7 4096",
)
def c3d(num_classes: int = 101, in_channels: int = 3, dropout: float = 0.5, width_mult: float = 1.0) -> C3D:
    return C3D(num_classes, in_channels, dropout, width_mult)


@register_model(
    "c3d-bn",
    input=InputSpec(3, 16, 112, 1, "rgb"),
    family="c3d",
    description="C3D with BatchNorm after every conv (MMAction2's norm_cfg=BN); trains from scratch",
)
def c3d_bn(num_classes: int = 101, in_channels: int = 3, dropout: float = 0.5, width_mult: float = 1.0) -> C3D:
    return C3D(num_classes, in_channels, dropout, width_mult, batch_norm=True)
