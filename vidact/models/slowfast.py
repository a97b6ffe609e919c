"""SlowFast networks (Feichtenhofer et al., ICCV 2019), PySlowFast's ResNet layout.

Two ResNet-3D pathways: a Slow one on every ``alpha``-th frame with full width, and a Fast
one on every frame with ``beta = 1/8`` of the width. After the stem and res2-res4 a
time-strided ``k x 1 x 1`` lateral conv (stride ``alpha``, ``2 * beta * C`` channels) carries
Fast features into Slow, where they are concatenated. Temporal kernels as in PySlowFast: the
Slow pathway has them only in res4/res5 (``a`` convs 3x1x1), the Fast one everywhere (stem
5x7x7, ``a`` convs 3x1x1). The head pools each pathway, concatenates and classifies.

``forward`` takes either the fast-rate clip (B, C, T, H, W), from which the Slow input is taken as
PySlowFast's ``pack_pathway_output`` and PyTorchVideo's ``PackPathway`` take it (frames
``linspace(0, T - 1, T / alpha)``, truncated: 0, 4, 8, 13, 17, 22, 26, 31 of 32), or a list
``[slow, fast]`` (PyTorchVideo / PySlowFast style). In eval mode at a test crop larger than the
training crop the head slides the training pool window (:mod:`vidact.models.test_head`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vidact.models.registry import InputSpec, register_model
from vidact.models.res_blocks import batch_norm, init_weights, res_stage, round_repeats
from vidact.models.test_head import (
    Window,
    mean_position_log_probs,
    position_features,
    slides,
    spatial_cells,
    window_pool,
)

STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
SLOW_TEMPORAL_KERNELS = (1, 1, 1, 3, 3)  # stem, res2..res5 (Slow: temporal only in res4/res5)
FAST_TEMPORAL_KERNELS = (5, 3, 3, 3, 3)


class ResNetStem(nn.Module):
    """``k x 7 x 7`` conv (spatial stride 2), BN, ReLU, 1x3x3 max pool (spatial stride 2)."""

    def __init__(self, in_channels: int, out_channels: int, temporal_kernel: int):
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            (temporal_kernel, 7, 7),
            stride=(1, 2, 2),
            padding=(temporal_kernel // 2, 3, 3),
            bias=False,
        )
        self.bn = batch_norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class TwoPathway(nn.Module):
    """Runs ``slow`` on the Slow tensor and ``fast`` on the Fast tensor."""

    def __init__(self, slow: nn.Module, fast: nn.Module):
        super().__init__()
        self.slow = slow
        self.fast = fast

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.slow(x[0]), self.fast(x[1])]


class FuseFastToSlow(nn.Module):
    """Lateral connection: ``k x 1 x 1`` conv with temporal stride ``alpha``, BN, ReLU, concat to Slow."""

    def __init__(self, fast_channels: int, channel_ratio: int, kernel: int, alpha: int):
        super().__init__()
        self.conv = nn.Conv3d(
            fast_channels,
            fast_channels * channel_ratio,
            (kernel, 1, 1),
            stride=(alpha, 1, 1),
            padding=(kernel // 2, 0, 0),
            bias=False,
        )
        self.bn = batch_norm(fast_channels * channel_ratio)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        slow, fast = x
        return [torch.cat([slow, self.relu(self.bn(self.conv(fast)))], dim=1), fast]


class SlowFastHead(nn.Module):
    """Pool each pathway, concatenate, dropout, linear classifier.

    Training: global average pool. Eval: ``test_window`` (one per pathway, the training clip's
    feature map) slid at stride 1 where the map is larger, softmax per position, averaged.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, dropout: float):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(sum(in_channels), num_classes)
        self.test_window: list[Window] | None = None

    def forward(self, x: list[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        windows = self.test_window
        if self.training or windows is None or not any(slides(t, w) for t, w in zip(x, windows)):
            x = torch.cat([self.pool(t).flatten(1) for t in x], dim=1)
            return x if pre_logits else self.projection(self.dropout(x))
        pooled = [window_pool(t, w) for t, w in zip(x, windows)]
        if len({p.shape[2:] for p in pooled}) > 1:  # a test clip longer than training: pool time whole
            pooled = [window_pool(t, (t.shape[2], *w[1:])) for t, w in zip(x, windows)]
        features = position_features(torch.cat(pooled, dim=1))
        if pre_logits:
            return features.mean(dim=(1, 2, 3))
        return mean_position_log_probs(self.projection(features))


class SlowFast(nn.Module):
    """SlowFast ResNet-``depth`` with speed ratio ``alpha`` and channel ratio ``1 / beta_inv``.

    ``temporal_blocks`` (PySlowFast's NUM_BLOCK_TEMP_KERNEL): per stage, how many blocks keep
    their temporal kernel (default all); ``(3, 4, 6, 3)`` on R101 is the paper's "R101_50_50".
    """

    # benchmarks/models.py on CPU (AMX): bf16 autocast trains 1.8x faster, channels-last-3d is
    # slower; on CUDA dense 3D convs gain from channels-last-3d and bf16 (benchmarks/models.py on an H200).
    memory_formats = {"cpu": torch.contiguous_format, "cuda": torch.channels_last_3d}
    amp_dtypes = {"cpu": torch.bfloat16, "cuda": torch.bfloat16}

    def __init__(
        self,
        depth: int = 50,
        alpha: int = 4,
        beta_inv: int = 8,
        fusion_channel_ratio: int = 2,
        fusion_kernel: int = 7,
        num_classes: int = 400,
        in_channels: int = 3,
        dropout: float = 0.5,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        temporal_blocks: Sequence[int] | None = None,
        train_frames: int = 32,
        train_size: int = 224,
    ):
        super().__init__()
        if depth not in STAGE_DEPTHS:
            raise ValueError(f"SlowFast depth must be one of {sorted(STAGE_DEPTHS)}, got {depth}")
        self.alpha = alpha
        self.num_classes = num_classes
        width = max(beta_inv, int(round(64 * width_mult)))
        fast_width = width // beta_inv
        fuse = dict(channel_ratio=fusion_channel_ratio, kernel=fusion_kernel, alpha=alpha)

        self.stem = TwoPathway(
            ResNetStem(in_channels, width, SLOW_TEMPORAL_KERNELS[0]),
            ResNetStem(in_channels, fast_width, FAST_TEMPORAL_KERNELS[0]),
        )
        self.stem_fuse = FuseFastToSlow(fast_width, **fuse)
        slow_in, fast_in = width + fast_width * fusion_channel_ratio, fast_width
        for i, blocks in enumerate(STAGE_DEPTHS[depth]):
            blocks = round_repeats(blocks, depth_mult)
            inner, stride = width * 2**i, 1 if i == 0 else 2
            slow_out, fast_out = 4 * inner, 4 * inner // beta_inv
            t_blocks = None if temporal_blocks is None else temporal_blocks[i]
            slow = res_stage(
                blocks,
                slow_in,
                inner,
                slow_out,
                stride,
                temporal_blocks=t_blocks,
                temporal_kernel_a=SLOW_TEMPORAL_KERNELS[i + 1],
            )
            fast = res_stage(
                blocks,
                fast_in,
                inner // beta_inv,
                fast_out,
                stride,
                temporal_blocks=t_blocks,
                temporal_kernel_a=FAST_TEMPORAL_KERNELS[i + 1],
            )
            self.add_module(f"res{i + 2}", TwoPathway(slow, fast))
            if i < 3:
                self.add_module(f"res{i + 2}_fuse", FuseFastToSlow(fast_out, **fuse))
                slow_in = slow_out + fast_out * fusion_channel_ratio
            fast_in = fast_out
        self.num_features = slow_out + fast_out
        self.head = SlowFastHead((slow_out, fast_out), num_classes, dropout)
        self.set_train_clip(train_frames, train_size)
        init_weights(self)

    def slow_frames(self, frames: int) -> int:
        """Slow-pathway frames of a ``frames``-frame clip: ``frames / alpha`` (rounded up, so the
        lateral convs' output lengths match when ``alpha`` does not divide ``frames``)."""
        return -(-frames // self.alpha)

    def set_train_clip(self, frames: int, size: int) -> None:
        """The head's test-time pool windows: the res5 maps of a ``frames`` x ``size`` training clip
        (PySlowFast: ``NUM_FRAMES / ALPHA`` and ``NUM_FRAMES`` by ``TRAIN_CROP_SIZE // 32``)."""
        cells = spatial_cells(size, ceil=False)
        self.head.test_window = [(self.slow_frames(frames), cells, cells), (frames, cells, cells)]

    def pathways(self, x: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``[slow, fast]`` from a fast-rate clip (slow: ``linspace(0, T - 1, T / alpha)`` frames) or a pair."""
        if isinstance(x, torch.Tensor):
            t = x.shape[2]
            index = torch.linspace(0, t - 1, self.slow_frames(t)).long().to(x.device)
            return [x.index_select(2, index), x]
        if len(x) != 2:
            raise ValueError(f"SlowFast takes one clip tensor or [slow, fast], got {len(x)} tensors")
        return [x[0], x[1]]

    def forward_features(self, x: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Input clip(s) -> ``[slow, fast]`` res5 feature maps (2048 and 256 channels at full width)."""
        x = self.stem_fuse(self.stem(self.pathways(x)))
        x = self.res2_fuse(self.res2(x))
        x = self.res3_fuse(self.res3(x))
        x = self.res4_fuse(self.res4(x))
        return self.res5(x)

    def forward_head(self, features: list[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        return self.head(features, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Fast pathway: 32 frames at stride 2 (a 64-frame window); train crop 224 (test 256).
_INPUT = InputSpec(channels=3, frames=32, size=224, stride=2)


@register_model(
    "slowfast-r50-4x16",
    input=_INPUT,
    family="slowfast",
    description="SlowFast R50 4x16 (alpha 8, 5x1x1 laterals), Feichtenhofer 2019",
)
def slowfast_r50_4x16(**kwargs) -> SlowFast:
    return SlowFast(depth=50, alpha=8, fusion_kernel=5, **kwargs)


@register_model(
    "slowfast-r50-8x8",
    input=_INPUT,
    family="slowfast",
    description="SlowFast R50 8x8 (alpha 4, 7x1x1 laterals), Feichtenhofer 2019",
)
def slowfast_r50_8x8(**kwargs) -> SlowFast:
    return SlowFast(depth=50, alpha=4, fusion_kernel=7, **kwargs)


@register_model(
    "slowfast-r101-8x8",
    input=_INPUT,
    family="slowfast",
    description="SlowFast R101 8x8 (alpha 4, 5x1x1 laterals as PySlowFast's config), Feichtenhofer 2019",
)
def slowfast_r101_8x8(**kwargs) -> SlowFast:
    return SlowFast(depth=101, alpha=4, fusion_kernel=5, **kwargs)
