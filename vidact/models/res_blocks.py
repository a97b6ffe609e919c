"""Residual blocks and stages shared by SlowFast and X3D (PySlowFast's layout and names).

A residual block is ``branch1`` (1x1x1 projection + BN, only when the shape changes) plus
``branch2``, a bottleneck: ``a`` (Tx1x1) -> ``b`` (Tx3x3, optionally channel-wise, optional
squeeze-excitation) -> ``c`` (1x1x1). Module names follow PySlowFast (``a``, ``a_bn``, ``b``,
``b_bn``, ``se``, ``c``, ``c_bn``, ``branch1``, ``branch1_bn``) so its checkpoints map key for key.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """Channels ``width * multiplier`` rounded to a multiple of ``divisor`` (PySlowFast X3D's rule)."""
    if not multiplier:
        return int(width)
    width *= multiplier
    min_width = min_width or divisor
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def round_repeats(repeats: int, multiplier: float) -> int:
    """Blocks ``repeats * multiplier`` rounded up (PySlowFast's depth rule)."""
    if not multiplier:
        return repeats
    return int(math.ceil(multiplier * repeats))


def batch_norm(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class PointwiseConv3d(nn.Conv3d):
    """1x1x1 ``Conv3d`` computed as a matrix product over channels (same parameters and state dict).

    conv3d's CPU kernels are slow for 1x1x1 filters (50 ms vs 0.2 ms for an SE layer in
    benchmarks/models.py's profile). On CUDA cuDNN's own 1x1x1 convolution is used: the
    broadcast matmul's weight gradient sums a per-clip copy of the weight gradient. Spatial
    stride is a slice.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int | tuple[int, int, int] = 1, bias: bool = False):
        super().__init__(in_channels, out_channels, 1, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cuda":
            return super().forward(x)
        if self.stride != (1, 1, 1):
            st, sh, sw = self.stride
            x = x[:, :, ::st, ::sh, ::sw]
        w = self.weight.view(self.out_channels, self.in_channels)
        if x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
            return F.linear(x.permute(0, 2, 3, 4, 1), w, self.bias).permute(0, 4, 1, 2, 3)
        b, _, t, h, wd = x.shape
        y = torch.matmul(w, x.reshape(b, self.in_channels, t * h * wd))
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1)
        return y.view(b, self.out_channels, t, h, wd)


class SqueezeExcitation(nn.Module):
    """Channel gate: global average pool, 1x1x1 reduce + ReLU, 1x1x1 expand + sigmoid, scale."""

    def __init__(self, channels: int, ratio: float):
        super().__init__()
        hidden = round_width(channels, ratio)
        self.avg_pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = PointwiseConv3d(channels, hidden, bias=True)
        self.fc1_act = nn.ReLU(inplace=True)
        self.fc2 = PointwiseConv3d(hidden, channels, bias=True)
        self.fc2_sig = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2_sig(self.fc2(self.fc1_act(self.fc1(self.avg_pool(x)))))
        return x * s


class Bottleneck(nn.Module):
    """1x1x1 (or Tx1x1) -> 3x3 (Tx3x3, grouped) -> 1x1x1, each followed by BN; stride on ``b``.

    ``temporal_kernel_a`` / ``temporal_kernel_b``: the temporal extent of ``a`` (SlowFast's
    ResNet) or of ``b`` (X3D). ``groups_b == inner`` makes ``b`` channel-wise; ``se_ratio > 0``
    adds squeeze-excitation after ``b_bn``; ``b_act`` is ``relu`` or ``swish``.
    """

    def __init__(
        self,
        dim_in: int,
        dim_inner: int,
        dim_out: int,
        stride: int = 1,
        temporal_kernel_a: int = 1,
        temporal_kernel_b: int = 1,
        groups_b: int = 1,
        se_ratio: float = 0.0,
        b_act: str = "relu",
    ):
        super().__init__()
        ka, kb = temporal_kernel_a, temporal_kernel_b
        self.a = (
            PointwiseConv3d(dim_in, dim_inner)
            if ka == 1
            else nn.Conv3d(dim_in, dim_inner, (ka, 1, 1), padding=(ka // 2, 0, 0), bias=False)
        )
        self.a_bn = batch_norm(dim_inner)
        self.a_relu = nn.ReLU(inplace=True)
        self.b = nn.Conv3d(
            dim_inner,
            dim_inner,
            (kb, 3, 3),
            stride=(1, stride, stride),
            padding=(kb // 2, 1, 1),
            groups=groups_b,
            bias=False,
        )
        self.b_bn = batch_norm(dim_inner)
        self.se = SqueezeExcitation(dim_inner, se_ratio) if se_ratio > 0 else None
        self.b_relu = nn.SiLU() if b_act == "swish" else nn.ReLU(inplace=True)
        self.c = PointwiseConv3d(dim_inner, dim_out)
        self.c_bn = batch_norm(dim_out)
        self.c_bn.is_final_bn = True  # zero-initialised so each block starts as an identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.b_bn(self.b(x))
        if self.se is not None:
            x = self.se(x)
        x = self.b_relu(x)
        return self.c_bn(self.c(x))


class ResBlock(nn.Module):
    """``relu(branch1(x) + branch2(x))``; ``branch1`` projects when channels or stride change."""

    def __init__(self, dim_in: int, dim_out: int, stride: int, branch2: nn.Module):
        super().__init__()
        if dim_in != dim_out or stride != 1:
            self.branch1 = PointwiseConv3d(dim_in, dim_out, stride=(1, stride, stride))
            self.branch1_bn = batch_norm(dim_out)
        else:
            self.branch1 = None
            self.branch1_bn = None
        self.branch2 = branch2
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1 is None else self.branch1_bn(self.branch1(x))
        return self.relu(shortcut + self.branch2(x))


def res_stage(
    depth: int,
    dim_in: int,
    dim_inner: int,
    dim_out: int,
    stride: int,
    se_every_other: float = 0.0,
    temporal_blocks: int | None = None,
    temporal_kernel_a: int = 1,
    **bottleneck_kw,
) -> nn.Sequential:
    """``depth`` residual blocks; the first carries the stride. SE (ratio ``se_every_other``)
    goes on blocks 1, 3, 5, ... (PySlowFast's ``(i + 1) % 2``). Only the first
    ``temporal_blocks`` blocks (all when None) keep ``temporal_kernel_a``; later ones use 1."""
    blocks = []
    for i in range(depth):
        d_in, s = (dim_in, stride) if i == 0 else (dim_out, 1)
        se = se_every_other if (i + 1) % 2 else 0.0
        ka = temporal_kernel_a if temporal_blocks is None or i < temporal_blocks else 1
        blocks.append(
            ResBlock(
                d_in,
                dim_out,
                s,
                Bottleneck(d_in, dim_inner, dim_out, s, se_ratio=se, temporal_kernel_a=ka, **bottleneck_kw),
            )
        )
    return nn.Sequential(*blocks)


def init_weights(model: nn.Module, zero_init_final_bn: bool = True, fc_std: float = 0.01) -> None:
    """PySlowFast's initialisation: He-normal convs, unit BN (zero for each block's last BN
    when ``zero_init_final_bn``), classifier N(0, ``fc_std``) with zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            final = zero_init_final_bn and getattr(m, "is_final_bn", False)
            nn.init.constant_(m.weight, 0.0 if final else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=fc_std)
            nn.init.zeros_(m.bias)
