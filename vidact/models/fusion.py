"""Karpathy et al. (CVPR 2014), "Large-scale Video Classification with Convolutional Neural Networks".

One AlexNet-style tower C(96,11,3)-N-P-C(256,5,1)-N-P-C(384,3,1)-C(384,3,1)-C(256,3,1)-P-FC4096-FC4096
(input 170x170, LRN "N", non-overlapping 2x2 max-pooling "P"), fused over time four ways:

- ``single-frame``: the tower on each frame (features averaged over frames);
- ``early-fusion``: conv1 spans T=10 frames (a valid 10x11x11 convolution);
- ``late-fusion``: one shared tower on two frames 15 apart, merged at the first FC layer;
- ``slow-fusion``: conv1 T=4 stride 2, conv2 and conv3 T=2 stride 2 over a 10-frame clip.

``multires=True`` adds the paper's fovea (centre crop at full resolution) and context (whole frame at
half resolution) streams, each a tower without its last pooling layer, concatenated before FC6; at the
paper's 178x178 input both streams end in 7x7x256 maps. The tower's padding (conv1 5, conv2 2, conv3-5 1)
makes a 170x170 frame end in the same 7x7x256 map; an adaptive pool before FC6 lets any size through,
and clips shorter than a temporal kernel get their edge frames repeated.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from vidact.models.blocks import FCHead, FCHeadNet, PadTimeConv3d, init_conv_linear, scaled
from vidact.models.registry import InputSpec, register_model

__all__ = ["FusionNet", "KarpathyTower", "single_frame", "early_fusion", "late_fusion", "slow_fusion"]

# (temporal kernel, temporal stride) of conv1, conv2, conv3 for each fusion; conv4/conv5 are 1x1 in time.
TEMPORAL_LAYOUT = {
    "single": ((1, 1), (1, 1), (1, 1)),
    "early": ((10, 1), (1, 1), (1, 1)),
    "late": ((1, 1), (1, 1), (1, 1)),
    "slow": ((4, 2), (2, 2), (2, 2)),
}


def _lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)  # Krizhevsky et al.'s constants


def _pool() -> nn.MaxPool3d:
    return nn.MaxPool3d((1, 2, 2), (1, 2, 2))


class KarpathyTower(nn.Sequential):
    """The convolutional part of the tower; ``last_pool=False`` for the multiresolution streams."""

    def __init__(self, in_channels: int, temporal, width_mult: float = 1.0, last_pool: bool = True):
        c1, c2, c3, c5 = (scaled(c, width_mult) for c in (96, 256, 384, 256))
        (k1, s1), (k2, s2), (k3, s3) = temporal
        layers = OrderedDict(
            [
                ("conv1", PadTimeConv3d(in_channels, c1, (k1, 11, 11), (s1, 3, 3), (0, 5, 5))),
                ("relu1", nn.ReLU(inplace=True)),
                ("norm1", _lrn()),
                ("pool1", _pool()),
                ("conv2", PadTimeConv3d(c1, c2, (k2, 5, 5), (s2, 1, 1), (0, 2, 2))),
                ("relu2", nn.ReLU(inplace=True)),
                ("norm2", _lrn()),
                ("pool2", _pool()),
                ("conv3", PadTimeConv3d(c2, c3, (k3, 3, 3), (s3, 1, 1), (0, 1, 1))),
                ("relu3", nn.ReLU(inplace=True)),
                ("conv4", nn.Conv3d(c3, c3, (1, 3, 3), padding=(0, 1, 1))),
                ("relu4", nn.ReLU(inplace=True)),
                ("conv5", nn.Conv3d(c3, c5, (1, 3, 3), padding=(0, 1, 1))),
                ("relu5", nn.ReLU(inplace=True)),
            ]
        )
        if last_pool:
            layers["pool5"] = _pool()
        super().__init__(layers)
        self.out_channels = c5


class FusionNet(FCHeadNet):
    """Karpathy's tower with single/early/late/slow fusion in time; input (B, C, T, H, W)."""

    def __init__(
        self,
        fusion: str = "single",
        num_classes: int = 487,
        in_channels: int = 3,
        dropout: float = 0.5,
        width_mult: float = 1.0,
        multires: bool = False,
        frames_apart: int = 15,
    ):
        super().__init__()
        if fusion not in TEMPORAL_LAYOUT:
            raise ValueError(f"fusion must be one of {', '.join(TEMPORAL_LAYOUT)}, not {fusion!r}")
        self.fusion = fusion
        self.multires = multires
        self.frames_apart = frames_apart
        streams = 2 if multires else 1
        self.towers = nn.ModuleList(
            KarpathyTower(in_channels, TEMPORAL_LAYOUT[fusion], width_mult, last_pool=not multires)
            for _ in range(streams)
        )
        channels = self.towers[0].out_channels * streams * (2 if fusion == "late" else 1)
        fc = scaled(4096, width_mult)
        self.head = FCHead(channels, (1, 7, 7), (fc, fc), num_classes, dropout)
        self.num_features = self.head.num_features
        init_conv_linear(self)

    def _streams(self, x: torch.Tensor) -> list[torch.Tensor]:
        if not self.multires:
            return [x]
        h, w = x.shape[-2:]
        top, left = (h - h // 2) // 2, (w - w // 2) // 2
        fovea = x[..., top : top + h // 2, left : left + w // 2]
        context = F.avg_pool3d(x, (1, 2, 2))
        return [fovea, context]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion == "late":  # two frames ``frames_apart`` apart (the first and the last of a short clip)
            x = x[:, :, [0, min(self.frames_apart, x.shape[2] - 1)]]
        maps = torch.cat([tower(s) for tower, s in zip(self.towers, self._streams(x))], dim=1)
        if self.fusion == "late":  # merge the two frames' maps along channels: (B, 2C, 1, h, w)
            b, c, t, h, w = maps.shape
            maps = maps.transpose(1, 2).reshape(b, t * c, 1, h, w)
        return maps


def _spec(frames: int) -> InputSpec:
    return InputSpec(channels=3, frames=frames, size=170, stride=1, modality="rgb")


@register_model(
    "single-frame",
    input=_spec(1),
    family="karpathy",
    description="Karpathy 2014 single-frame tower (per-frame features averaged)",
)
def single_frame(
    num_classes: int = 487, in_channels: int = 3, dropout: float = 0.5, width_mult: float = 1.0, multires: bool = False
) -> FusionNet:
    return FusionNet("single", num_classes, in_channels, dropout, width_mult, multires)


@register_model(
    "early-fusion", input=_spec(10), family="karpathy", description="Karpathy 2014 early fusion: conv1 spans 10 frames"
)
def early_fusion(
    num_classes: int = 487, in_channels: int = 3, dropout: float = 0.5, width_mult: float = 1.0, multires: bool = False
) -> FusionNet:
    return FusionNet("early", num_classes, in_channels, dropout, width_mult, multires)


@register_model(
    "late-fusion",
    input=_spec(16),
    family="karpathy",
    description="Karpathy 2014 late fusion: shared tower on two frames 15 apart, merged at FC6",
)
def late_fusion(
    num_classes: int = 487,
    in_channels: int = 3,
    dropout: float = 0.5,
    width_mult: float = 1.0,
    multires: bool = False,
    frames_apart: int = 15,
) -> FusionNet:
    return FusionNet("late", num_classes, in_channels, dropout, width_mult, multires, frames_apart)


@register_model(
    "slow-fusion",
    input=_spec(10),
    family="karpathy",
    description="Karpathy 2014 slow fusion: temporal extent grows 4 -> 2 -> 2 (stride 2)",
)
def slow_fusion(
    num_classes: int = 487, in_channels: int = 3, dropout: float = 0.5, width_mult: float = 1.0, multires: bool = False
) -> FusionNet:
    return FusionNet("slow", num_classes, in_channels, dropout, width_mult, multires)
