"""Small layers and tensor helpers shared by the model families."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair, _triple


def scaled(channels: int, width_mult: float, minimum: int = 4) -> int:
    """``channels`` scaled by ``width_mult`` (rounded, never below ``minimum``)."""
    return max(minimum, int(round(channels * width_mult)))


def pad_time_to(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Repeat the first/last frame of (B, C, T, H, W) until T >= ``frames`` (centred)."""
    missing = frames - x.shape[2]
    if missing <= 0:
        return x
    before = missing // 2
    first, last = x[:, :, :1], x[:, :, -1:]
    return torch.cat([first.expand(-1, -1, before, -1, -1), x, last.expand(-1, -1, missing - before, -1, -1)], dim=2)


def fit_time(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Exactly ``frames`` time steps: the centre ``frames`` of a longer clip, a padded shorter one."""
    t = x.shape[2]
    if t > frames:
        start = (t - frames) // 2
        return x[:, :, start : start + frames]
    return pad_time_to(x, frames)


def centre_frame(x: torch.Tensor) -> torch.Tensor:
    """The middle frame of (B, C, T, H, W) as (B, C, H, W)."""
    return x[:, :, x.shape[2] // 2]


def stack_flow(x: torch.Tensor) -> torch.Tensor:
    """Fold flow (B, 2, L, H, W) into (B, 2L, H, W) ordered x1, y1, x2, y2, ... (Simonyan & Zisserman)."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b, c * t, h, w)


class Conv3dBNReLU(nn.Module):
    """Conv3d (no bias) + BatchNorm3d + ReLU: torchvision's ``BasicConv2d`` inflated to 3D."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
    ):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class PadTimeConv3d(nn.Conv3d):
    """Conv3d that first repeats edge frames when the clip is shorter than its temporal kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_time_to(x, self.kernel_size[0]))


def pad_to_window(x: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """Repeat edge values of the trailing dims of ``x`` until each is at least its ``window`` size."""
    pads: list[int] = []
    for size, k in zip(reversed(x.shape[-len(window) :]), reversed(window)):
        missing = max(0, k - size)
        pads += [missing // 2, missing - missing // 2]
    return F.pad(x, pads, mode="replicate") if any(pads) else x


class MaxPool2dMinSize(nn.MaxPool2d):
    """MaxPool2d that accepts inputs smaller than its window (edges repeated; the max is unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_to_window(x, _pair(self.kernel_size)))


class MaxPool3dMinSize(nn.MaxPool3d):
    """MaxPool3d that accepts clips/frames smaller than its window (edges repeated; the max is unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_to_window(x, _triple(self.kernel_size)))


class FCHead(nn.Module):
    """Pool to a fixed grid, flatten, hidden FC+ReLU layers with dropout, then the classifier.

    The adaptive pool is an identity at the paper's input size and lets any T/H/W through.
    """

    def __init__(self, channels: int, grid: Sequence[int], hidden: Sequence[int], num_classes: int, dropout: float):
        super().__init__()
        pool = nn.AdaptiveAvgPool3d if len(grid) == 3 else nn.AdaptiveAvgPool2d
        self.pool = pool(tuple(grid))
        layers: list[nn.Module] = []
        width = channels * math.prod(grid)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        self.hidden = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)
        self.num_features = width

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits, or with ``pre_logits`` the ``num_features`` activations the classifier reads."""
        x = self.hidden(torch.flatten(self.pool(x), 1))
        return x if pre_logits else self.fc(x)


class FCHeadNet(nn.Module):
    """Base of the networks whose classifier is an :class:`FCHead` at ``self.head``: subclasses define
    ``forward_features``; the head contract and ``forward`` follow from it."""

    head: FCHead

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(features, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def side_by_side_pre_logits(streams: Sequence[nn.Module], features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each stream's pooled features (``forward_head(f, pre_logits=True)``) concatenated along channels."""
    return torch.cat([s.forward_head(f, pre_logits=True) for s, f in zip(streams, features)], dim=1)


def init_conv_linear(module: nn.Module) -> None:
    """Kaiming-normal (fan-in) conv weights and hidden FC weights, N(0, 0.01) classifier weights,
    zero biases, unit BatchNorm.

    Fan-in scaling keeps the activation variance constant through the ReLU stack, so the
    networks without BatchNorm (C3D, the Karpathy and two-stream towers) train from scratch;
    small weights everywhere would shrink the signal ~100x by the logits.
    """
    hidden = {id(m) for h in module.modules() if isinstance(h, FCHead) for m in h.hidden.modules()}
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and id(m) in hidden:
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


__all__ = [
    "Conv3dBNReLU",
    "FCHead",
    "FCHeadNet",
    "MaxPool2dMinSize",
    "MaxPool3dMinSize",
    "PadTimeConv3d",
    "centre_frame",
    "fit_time",
    "init_conv_linear",
    "pad_time_to",
    "pad_to_window",
    "scaled",
    "side_by_side_pre_logits",
    "stack_flow",
]
