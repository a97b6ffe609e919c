"""Carreira & Zisserman (CVPR 2017), "Quo Vadis, Action Recognition?" (I3D): Inflated Inception-v1.

Every 2D kernel of Inception-v1 (GoogLeNet with BatchNorm) becomes a cube: conv1 7x7x7 stride 2, 3x3 -> 3x3x3,
1x1 -> 1x1x1; the first two max-pools keep time (1x3x3, stride 1x2x2), the pool before Mixed_4b is 3x3x3
stride 2 and the one before Mixed_5b 2x2x2 stride 2. Module names, spatial padding and ceil-mode pooling
follow torchvision's ``googlenet`` so that :func:`inflate_2d_weights` maps its state dict key by key.
Default input 64x224x224; ``i3d-flow`` takes 2-channel flow and ``i3d-two-stream`` sums both streams' logits.
The paper's head (2x7x7 average pool, 1x1x1 logits conv, logits averaged over time) is a global average
pool and a linear layer here: the same map except that the two end frames are not half-weighted, and any
clip shape passes through.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from vidact.errors import CheckpointError
from vidact.models.blocks import Conv3dBNReLU, MaxPool3dMinSize, scaled, side_by_side_pre_logits
from vidact.models.registry import InputSpec, register_model

__all__ = [
    "I3D",
    "I3DTwoStream",
    "Inception3d",
    "i3d",
    "i3d_flow",
    "i3d_two_stream",
    "inflate_2d_weights",
]

# in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5" (3x3 as in torchvision/TF-slim), pool proj
INCEPTION = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class Inception3d(nn.Module):
    """An inflated Inception module: four branches concatenated along channels."""

    def __init__(
        self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int
    ):
        super().__init__()
        self.branch1 = Conv3dBNReLU(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(
            Conv3dBNReLU(in_channels, ch3x3red, 1), Conv3dBNReLU(ch3x3red, ch3x3, 3, padding=1)
        )
        self.branch3 = nn.Sequential(
            Conv3dBNReLU(in_channels, ch5x5red, 1), Conv3dBNReLU(ch5x5red, ch5x5, 3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool3d(3, 1, padding=1, ceil_mode=True), Conv3dBNReLU(in_channels, pool_proj, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class I3D(nn.Module):
    """Inflated Inception-v1 on (B, C, T, H, W); global average pool, dropout, linear classifier."""

    def __init__(self, num_classes: int = 400, in_channels: int = 3, dropout: float = 0.5, width_mult: float = 1.0):
        super().__init__()

        def w(c: int) -> int:
            return scaled(c, width_mult)

        self.conv1 = Conv3dBNReLU(in_channels, w(64), 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool3d((1, 3, 3), (1, 2, 2), ceil_mode=True)
        self.conv2 = Conv3dBNReLU(w(64), w(64), 1)
        self.conv3 = Conv3dBNReLU(w(64), w(192), 3, padding=1)
        self.maxpool2 = nn.MaxPool3d((1, 3, 3), (1, 2, 2), ceil_mode=True)
        for name, cfg in INCEPTION.items():
            if name == "inception4a":
                self.maxpool3 = MaxPool3dMinSize(3, 2, ceil_mode=True)
            if name == "inception5a":
                self.maxpool4 = MaxPool3dMinSize(2, 2, ceil_mode=True)
            setattr(self, name, Inception3d(*(w(c) for c in cfg)))
        _, ch1x1, _, ch3x3, _, ch5x5, pool_proj = INCEPTION["inception5b"]
        self.num_features = w(ch1x1) + w(ch3x3) + w(ch5x5) + w(pool_proj)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():  # torchvision googlenet's init: truncated normal convs and linear
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.inception3b(self.inception3a(x))
        x = self.maxpool3(x)
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            x = getattr(self, name)(x)
        x = self.maxpool4(x)
        return self.inception5b(self.inception5a(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(features), 1)
        return x if pre_logits else self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class I3DTwoStream(nn.Module):
    """RGB and flow I3D on ``[rgb (B,3,T,H,W), flow (B,2,T',H,W)]``; logits are summed."""

    def __init__(self, num_classes: int = 400, dropout: float = 0.5, width_mult: float = 1.0):
        super().__init__()
        self.rgb = I3D(num_classes, 3, dropout, width_mult)
        self.flow = I3D(num_classes, 2, dropout, width_mult)
        self.num_features = self.rgb.num_features + self.flow.num_features

    def forward_features(self, x: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rgb.forward_features(x[0]), self.flow.forward_features(x[1])

    def forward_head(self, features: tuple[torch.Tensor, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Summed logits, or with ``pre_logits`` both streams' pooled features side by side."""
        if pre_logits:
            return side_by_side_pre_logits((self.rgb, self.flow), features)
        return self.rgb.forward_head(features[0]) + self.flow.forward_head(features[1])

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def inflate_2d_weights(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict for the I3D ``model`` from a 2D GoogLeNet state dict (torchvision layout).

    Each k x k kernel is repeated over the target's temporal extent t and divided by t, so a clip of
    identical frames gives the 2D net's response on that frame. A first conv with other than 3 input
    channels (flow) gets the mean over RGB in every channel. BatchNorm is copied; the classifier is copied
    when its shape matches and kept from ``model`` otherwise; extra 2D keys (aux classifiers) are ignored.
    """
    inflated = {}
    for key, target in model.state_dict().items():
        if key not in state_dict:
            raise CheckpointError(f"2D state dict has no {key!r} (expected torchvision googlenet layout)")
        source = state_dict[key].detach().to(target.dtype)
        if target.dim() == 5 and source.dim() == 4:
            if source.shape[1] != target.shape[1]:
                source = source.mean(1, keepdim=True).expand(-1, target.shape[1], -1, -1)
            t = target.shape[2]
            source = source.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
        if source.shape != target.shape:
            if key.startswith("fc."):
                inflated[key] = target.clone()
                continue
            raise CheckpointError(f"{key}: 2D shape {tuple(state_dict[key].shape)} cannot become {tuple(target.shape)}")
        inflated[key] = source.clone()
    return inflated


def _two_stream_input(batch: int, frames: int | None, size: int | None) -> list[torch.Tensor]:
    """RGB and flow clips of the same length (64 frames by default)."""
    t, s = frames or 64, size or 224
    return [torch.randn(batch, 3, t, s, s), torch.randn(batch, 2, t, s, s)]


@register_model(
    "i3d",
    input=InputSpec(3, 64, 224, 1, "rgb"),
    family="i3d",
    description="Carreira & Zisserman 2017: inflated Inception-v1, RGB",
)
def i3d(num_classes: int = 400, in_channels: int = 3, dropout: float = 0.5, width_mult: float = 1.0) -> I3D:
    return I3D(num_classes, in_channels, dropout, width_mult)


@register_model(
    "i3d-flow", input=InputSpec(2, 64, 224, 1, "flow"), family="i3d", description="I3D on 2-channel optical flow"
)
def i3d_flow(num_classes: int = 400, in_channels: int = 2, dropout: float = 0.5, width_mult: float = 1.0) -> I3D:
    return I3D(num_classes, in_channels, dropout, width_mult)


@register_model(
    "i3d-two-stream",
    input=InputSpec(3, 64, 224, 1, "rgb+flow"),
    family="i3d",
    description="RGB I3D + flow I3D, logits summed",
    make_input=_two_stream_input,
)
def i3d_two_stream(
    num_classes: int = 400, in_channels: int = 3, dropout: float = 0.5, width_mult: float = 1.0
) -> I3DTwoStream:
    if in_channels != 3:
        raise ValueError("i3d-two-stream takes 3-channel RGB and 2-channel flow; in_channels must be 3")
    return I3DTwoStream(num_classes, dropout, width_mult)
