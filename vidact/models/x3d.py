"""X3D (Feichtenhofer, CVPR 2020): a 2D ResNet expanded along six axes.

Every network is a point of the factor space :class:`X3DFactors` (frames ``gamma_t``, frame
stride ``gamma_tau``, crop size ``gamma_s``, width ``gamma_w``, bottleneck ``gamma_b``, depth
``gamma_d``) built by :func:`x3d_from_factors`; the named variants are entries of
:data:`X3D_VARIANTS`. Layout as in PySlowFast's ``X3D``: a (2+1)D stem (1x3x3 conv, 5x1x1
channel-wise conv), four stages of [1, 2, 5, 3] x gamma_d bottlenecks with channel-wise 3x3x3
convs, squeeze-excitation (ratio 1/16) on every other block and swish, then ``conv5`` (1x1x1 to
gamma_b x width) and the head (pool, 1x1x1 to 2048 + ReLU, dropout, linear; in eval mode at a test
crop larger than the training crop the training pool window slides, :mod:`vidact.models.test_head`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from vidact.models.registry import InputSpec, register_model
from vidact.models.res_blocks import (
    PointwiseConv3d,
    batch_norm,
    init_weights,
    res_stage,
    round_repeats,
    round_width,
)
from vidact.models.test_head import (
    Window,
    mean_position_log_probs,
    position_features,
    slides,
    spatial_cells,
    window_pool,
)

STEM_WIDTH = 12  # X2D's stem and res2 width before gamma_w
STAGE_DEPTHS = (1, 2, 5, 3)  # X2D's blocks per stage before gamma_d
HEAD_WIDTH = 2048
SE_RATIO = 0.0625


@dataclass(frozen=True)
class X3DFactors:
    """The six X3D expansion factors; defaults are the X2D base network of the paper."""

    gamma_t: int = 1  # frames per clip
    gamma_tau: int = 1  # temporal sampling stride (frames of the source video)
    gamma_s: int = 112  # spatial crop size in pixels
    gamma_w: float = 1.0  # width multiplier of every stage
    gamma_b: float = 2.25  # bottleneck (inner) width relative to the stage width
    gamma_d: float = 1.0  # depth multiplier of every stage

    def stage_depths(self) -> list[int]:
        return [round_repeats(d, self.gamma_d) for d in STAGE_DEPTHS]

    def stem_width(self) -> int:
        return round_width(STEM_WIDTH, self.gamma_w)

    def stage_widths(self) -> list[int]:
        """Output channels of res2..res5 (PySlowFast: 12, then x2 per stage, times gamma_w)."""
        base = [STEM_WIDTH]
        for _ in range(3):
            base.append(round_width(base[-1], 2.0))
        return [round_width(c, self.gamma_w) for c in base]

    def inner_widths(self) -> list[int]:
        return [int(self.gamma_b * c) for c in self.stage_widths()]

    def input_spec(self, channels: int = 3) -> InputSpec:
        return InputSpec(channels=channels, frames=self.gamma_t, size=self.gamma_s, stride=self.gamma_tau)

    def to_dict(self) -> dict:
        return asdict(self)


# Table 3 of the paper and PySlowFast's configs (train crop; test crops are 182/182/256/356/356).
X3D_VARIANTS: dict[str, X3DFactors] = {
    "x3d-xs": X3DFactors(gamma_t=4, gamma_tau=12, gamma_s=160, gamma_w=2.0, gamma_b=2.25, gamma_d=2.2),
    "x3d-s": X3DFactors(gamma_t=13, gamma_tau=6, gamma_s=160, gamma_w=2.0, gamma_b=2.25, gamma_d=2.2),
    "x3d-m": X3DFactors(gamma_t=16, gamma_tau=5, gamma_s=224, gamma_w=2.0, gamma_b=2.25, gamma_d=2.2),
    "x3d-l": X3DFactors(gamma_t=16, gamma_tau=5, gamma_s=312, gamma_w=2.0, gamma_b=2.25, gamma_d=5.0),
    "x3d-xl": X3DFactors(gamma_t=16, gamma_tau=5, gamma_s=312, gamma_w=2.9, gamma_b=2.25, gamma_d=5.0),
}


class X3DStem(nn.Module):
    """1x3x3 conv (stride 2) then a 5x1x1 channel-wise conv, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, temporal_kernel: int = 5):
        super().__init__()
        self.conv_xy = nn.Conv3d(in_channels, out_channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv_t = nn.Conv3d(
            out_channels,
            out_channels,
            (temporal_kernel, 1, 1),
            padding=(temporal_kernel // 2, 0, 0),
            groups=out_channels,
            bias=False,
        )
        self.bn = batch_norm(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv_t(self.conv_xy(x))))


class X3DHead(nn.Module):
    """Pool, 1x1x1 conv to 2048 + ReLU (``lin5``), dropout, linear classifier.

    Training: global average pool. Eval: ``test_window`` (the training clip's feature map) slid at
    stride 1 where the map is larger, softmax per position, averaged (PySlowFast's ``X3DHead``).
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float, width: int = HEAD_WIDTH):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.lin5 = PointwiseConv3d(in_channels, width)
        self.lin5_relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(width, num_classes)
        self.test_window: Window | None = None

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.training or not slides(x, self.test_window):
            x = self.lin5_relu(self.lin5(self.pool(x))).flatten(1)
            return x if pre_logits else self.projection(self.dropout(x))
        features = position_features(self.lin5_relu(self.lin5(window_pool(x, self.test_window))))
        if pre_logits:
            return features.mean(dim=(1, 2, 3))
        return mean_position_log_probs(self.projection(features))


class X3D(nn.Module):
    """X3D network for one factor setting; any (T, H, W) input works (adaptive pooling)."""

    # benchmarks/models.py: on CPU channels-last-3d trains ~1.2x faster and bf16 is slower; on
    # CUDA the channel-wise 3x3x3 convs lose with channels-last and fp32 is best (benchmarks/models.py on an H200).
    memory_formats = {"cpu": torch.channels_last_3d, "cuda": torch.contiguous_format}
    amp_dtypes: dict[str, torch.dtype] = {}

    def __init__(
        self,
        factors: X3DFactors,
        num_classes: int = 400,
        in_channels: int = 3,
        dropout: float = 0.5,
        se_ratio: float = SE_RATIO,
        head_width: int = HEAD_WIDTH,
    ):
        super().__init__()
        self.factors = factors
        self.num_classes = num_classes
        stem_out = factors.stem_width()
        self.stem = X3DStem(in_channels, stem_out)
        dim_in = stem_out
        for i, (depth, dim_out, dim_inner) in enumerate(
            zip(factors.stage_depths(), factors.stage_widths(), factors.inner_widths())
        ):
            stage = res_stage(
                depth,
                dim_in,
                dim_inner,
                dim_out,
                stride=2,
                se_every_other=se_ratio,
                temporal_kernel_b=3,
                groups_b=dim_inner,
                b_act="swish",
            )
            self.add_module(f"res{i + 2}", stage)
            dim_in = dim_out
        self.conv5 = PointwiseConv3d(dim_in, dim_inner)
        self.conv5_bn = batch_norm(dim_inner)
        self.conv5_relu = nn.ReLU(inplace=True)
        self.num_features = head_width
        self.head = X3DHead(dim_inner, num_classes, dropout, head_width)
        self.set_train_clip(factors.gamma_t, factors.gamma_s)
        init_weights(self)

    def set_train_clip(self, frames: int, size: int) -> None:
        """The head's test-time pool window: the conv5 map of a ``frames`` x ``size`` training clip
        (PySlowFast: ``NUM_FRAMES`` by ``ceil(TRAIN_CROP_SIZE / 32)``)."""
        cells = spatial_cells(size, ceil=True)
        self.head.test_window = (frames, cells, cells)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> the conv5 feature map (B, gamma_b x width, T, H/32, W/32)."""
        x = self.stem(x)
        x = self.res5(self.res4(self.res3(self.res2(x))))
        return self.conv5_relu(self.conv5_bn(self.conv5(x)))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(features, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def x3d_from_factors(
    factors: X3DFactors,
    num_classes: int = 400,
    in_channels: int = 3,
    dropout: float = 0.5,
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    **kwargs,
) -> X3D:
    """Build the X3D network at ``factors`` (``width_mult``/``depth_mult`` scale gamma_w/gamma_d)."""
    if width_mult != 1.0 or depth_mult != 1.0:
        factors = replace(factors, gamma_w=factors.gamma_w * width_mult, gamma_d=factors.gamma_d * depth_mult)
    return X3D(factors, num_classes=num_classes, in_channels=in_channels, dropout=dropout, **kwargs)


def _x3d(name: str, **kwargs) -> X3D:
    return x3d_from_factors(X3D_VARIANTS[name], **kwargs)


_DESC = "X3D ({}): channel-wise 3D ResNet, Feichtenhofer 2020"


@register_model("x3d-xs", input=X3D_VARIANTS["x3d-xs"].input_spec(), family="x3d", description=_DESC.format("XS"))
def x3d_xs(**kwargs) -> X3D:
    return _x3d("x3d-xs", **kwargs)


@register_model("x3d-s", input=X3D_VARIANTS["x3d-s"].input_spec(), family="x3d", description=_DESC.format("S"))
def x3d_s(**kwargs) -> X3D:
    return _x3d("x3d-s", **kwargs)


@register_model("x3d-m", input=X3D_VARIANTS["x3d-m"].input_spec(), family="x3d", description=_DESC.format("M"))
def x3d_m(**kwargs) -> X3D:
    return _x3d("x3d-m", **kwargs)


@register_model("x3d-l", input=X3D_VARIANTS["x3d-l"].input_spec(), family="x3d", description=_DESC.format("L"))
def x3d_l(**kwargs) -> X3D:
    return _x3d("x3d-l", **kwargs)


@register_model("x3d-xl", input=X3D_VARIANTS["x3d-xl"].input_spec(), family="x3d", description=_DESC.format("XL"))
def x3d_xl(**kwargs) -> X3D:
    return _x3d("x3d-xl", **kwargs)
