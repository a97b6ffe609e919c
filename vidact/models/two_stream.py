"""Simonyan & Zisserman (NeurIPS 2014), "Two-Stream Convolutional Networks for Action Recognition".

Both streams are CNN-M-2048 (Chatfield et al. 2014): conv1 7x7x96 /2 - LRN - pool, conv2 5x5x256 /2 - LRN -
pool, conv3..conv5 3x3x512, pool, full6 4096, full7 2048 (224x224 input). The spatial stream sees one RGB
frame (the clip's middle frame); the temporal stream sees L=10 stacked flow fields (2L channels, x/y
interleaved) and has no second normalisation. ``TwoStream`` fuses the streams' softmax scores by
averaging or with a learned linear layer on the stacked L2-normalised scores.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from vidact.models.blocks import (
    FCHead,
    FCHeadNet,
    MaxPool2dMinSize,
    centre_frame,
    fit_time,
    init_conv_linear,
    scaled,
    side_by_side_pre_logits,
    stack_flow,
)
from vidact.models.registry import InputSpec, register_model

__all__ = [
    "CNNM2048",
    "SpatialStream",
    "TemporalStream",
    "TwoStream",
    "two_stream",
    "two_stream_spatial",
    "two_stream_temporal",
]

FLOW_FRAMES = 10  # L in the paper


class CNNM2048(FCHeadNet):
    """CNN-M-2048 on (B, C, H, W); the adaptive pool before full6 is an identity at 224x224."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dropout: float = 0.5,
        width_mult: float = 1.0,
        second_norm: bool = True,
    ):
        super().__init__()
        c1, c2, c3 = (scaled(c, width_mult) for c in (96, 256, 512))
        layers = OrderedDict(
            [
                ("conv1", nn.Conv2d(in_channels, c1, 7, stride=2)),
                ("relu1", nn.ReLU(inplace=True)),
                ("norm1", nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)),
                ("pool1", MaxPool2dMinSize(3, 2, ceil_mode=True)),
                ("conv2", nn.Conv2d(c1, c2, 5, stride=2, padding=1)),
                ("relu2", nn.ReLU(inplace=True)),
            ]
        )
        if second_norm:
            layers["norm2"] = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
        layers.update(
            [
                ("pool2", MaxPool2dMinSize(3, 2, ceil_mode=True)),
                ("conv3", nn.Conv2d(c2, c3, 3, padding=1)),
                ("relu3", nn.ReLU(inplace=True)),
                ("conv4", nn.Conv2d(c3, c3, 3, padding=1)),
                ("relu4", nn.ReLU(inplace=True)),
                ("conv5", nn.Conv2d(c3, c3, 3, padding=1)),
                ("relu5", nn.ReLU(inplace=True)),
                ("pool5", MaxPool2dMinSize(3, 2, ceil_mode=True)),
            ]
        )
        self.features = nn.Sequential(layers)
        self.head = FCHead(c3, (6, 6), (scaled(4096, width_mult), scaled(2048, width_mult)), num_classes, dropout)
        self.num_features = self.head.num_features
        init_conv_linear(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class SpatialStream(CNNM2048):
    """The appearance stream: CNN-M-2048 on the middle RGB frame of (B, 3, T, H, W)."""

    def __init__(self, num_classes: int = 101, in_channels: int = 3, dropout: float = 0.5, width_mult: float = 1.0):
        super().__init__(in_channels, num_classes, dropout, width_mult, second_norm=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(centre_frame(x))


class TemporalStream(CNNM2048):
    """The motion stream: CNN-M-2048 without norm2 on L stacked flow fields from (B, 2, T, H, W).

    A clip longer than L gives its middle L flow fields, a shorter one repeats its edge fields.
    """

    def __init__(
        self,
        num_classes: int = 101,
        in_channels: int = 2,
        dropout: float = 0.5,
        width_mult: float = 1.0,
        flow_frames: int = FLOW_FRAMES,
    ):
        super().__init__(in_channels * flow_frames, num_classes, dropout, width_mult, second_norm=False)
        self.flow_frames = flow_frames

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(stack_flow(fit_time(x, self.flow_frames)))


class TwoStream(nn.Module):
    """Spatial + temporal streams on ``[rgb (B,3,T,H,W), flow (B,2,T',H,W)]``.

    ``fusion="average"`` returns log of the mean of the two softmax distributions (so argmax and
    cross-entropy see the averaged scores); ``"linear"`` learns a layer on the stacked L2-normalised
    softmax scores (the paper's SVM, trained end to end).
    """

    def __init__(
        self,
        num_classes: int = 101,
        dropout: float = 0.5,
        width_mult: float = 1.0,
        fusion: str = "average",
        flow_frames: int = FLOW_FRAMES,
    ):
        super().__init__()
        if fusion not in ("average", "linear"):
            raise ValueError(f"fusion must be 'average' or 'linear', not {fusion!r}")
        self.fusion = fusion
        self.spatial = SpatialStream(num_classes, 3, dropout, width_mult)
        self.temporal = TemporalStream(num_classes, 2, dropout, width_mult, flow_frames)
        self.fuse = nn.Linear(2 * num_classes, num_classes) if fusion == "linear" else None
        self.num_features = self.spatial.num_features + self.temporal.num_features

    def forward_features(self, x: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, flow = x
        return self.spatial.forward_features(rgb), self.temporal.forward_features(flow)

    def forward_head(self, features: tuple[torch.Tensor, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Fused scores, or with ``pre_logits`` both streams' classifier inputs side by side."""
        if pre_logits:
            return side_by_side_pre_logits((self.spatial, self.temporal), features)
        spatial = self.spatial.forward_head(features[0])
        temporal = self.temporal.forward_head(features[1])
        if self.fuse is None:
            log_probs = torch.stack([F.log_softmax(spatial, 1), F.log_softmax(temporal, 1)])
            return torch.logsumexp(log_probs, dim=0) - math.log(2.0)
        scores = [F.normalize(F.softmax(s, 1), dim=1) for s in (spatial, temporal)]
        return self.fuse(torch.cat(scores, dim=1))

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _two_stream_input(batch: int, frames: int | None, size: int | None) -> list[torch.Tensor]:
    """One RGB frame and ``frames`` (default L=10) flow fields."""
    s = size or 224
    return [torch.randn(batch, 3, 1, s, s), torch.randn(batch, 2, frames or FLOW_FRAMES, s, s)]


@register_model(
    "two-stream",
    input=InputSpec(3, 1, 224, 1, "rgb+flow"),
    family="two-stream",
    description="Simonyan & Zisserman 2014: CNN-M-2048 spatial + temporal (L=10) streams",
    make_input=_two_stream_input,
)
def two_stream(
    num_classes: int = 101,
    in_channels: int = 3,
    dropout: float = 0.5,
    width_mult: float = 1.0,
    fusion: str = "average",
    flow_frames: int = FLOW_FRAMES,
) -> TwoStream:
    if in_channels != 3:
        raise ValueError("two-stream takes 3-channel RGB and 2-channel flow; in_channels must be 3")
    return TwoStream(num_classes, dropout, width_mult, fusion, flow_frames)


@register_model(
    "two-stream-spatial",
    input=InputSpec(3, 1, 224, 1, "rgb"),
    family="two-stream",
    description="Two-stream spatial net alone (one RGB frame)",
)
def two_stream_spatial(
    num_classes: int = 101, in_channels: int = 3, dropout: float = 0.5, width_mult: float = 1.0
) -> SpatialStream:
    return SpatialStream(num_classes, in_channels, dropout, width_mult)


@register_model(
    "two-stream-temporal",
    input=InputSpec(2, FLOW_FRAMES, 224, 1, "flow"),
    family="two-stream",
    description="Two-stream temporal net alone (L=10 stacked flow fields)",
)
def two_stream_temporal(
    num_classes: int = 101,
    in_channels: int = 2,
    dropout: float = 0.5,
    width_mult: float = 1.0,
    flow_frames: int = FLOW_FRAMES,
) -> TemporalStream:
    return TemporalStream(num_classes, in_channels, dropout, width_mult, flow_frames)
