"""The publishers' test-time head: the training pool window slid over a larger test feature map.

PySlowFast's ``ResNetBasicHead`` and ``X3DHead`` (and PyTorchVideo's models as PySlowFast runs them)
average-pool with a fixed window, the feature map of a training clip, at stride 1. At the training
crop that window covers the whole map (one position); at a larger test crop (X3D-XS trained at 160,
tested at 182; SlowFast trained at 224, tested at 256) it slides, the classifier scores every
position, and in eval mode the softmax of each position is averaged. vidact's heads do the same in
eval mode and return ``log`` of that average, so a softmax of the output gives exactly those
probabilities and every caller that treats the output as logits (multi-view averaging, prediction)
stays correct. In training, and whenever the map is no larger than the window, the map is pooled
globally (adaptive pooling: any multigrid clip shape works).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

Window = tuple[int, int, int]  # (time, height, width) in feature-map cells


@runtime_checkable
class SlidingTestHead(Protocol):
    """A model whose test-time head pools with the window of its training clip."""

    def set_train_clip(self, frames: int, size: int) -> None: ...


def spatial_cells(size: int, ceil: bool) -> int:
    """Feature-map cells across a ``size`` crop at the networks' total stride 32 (at least 1)."""
    return max(1, math.ceil(size / 32) if ceil else size // 32)


def slides(x: torch.Tensor, window: Window | None) -> bool:
    """Whether ``x`` (B, C, T, H, W) is larger than ``window`` along any axis."""
    return window is not None and any(s > w for s, w in zip(x.shape[2:], window))


def window_pool(x: torch.Tensor, window: Window) -> torch.Tensor:
    """Average pool over ``window`` (clipped to the map) at stride 1: one cell per window position."""
    kernel = tuple(min(w, s) for w, s in zip(window, x.shape[2:]))
    return F.avg_pool3d(x, kernel, stride=1)


def position_features(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T, H, W, C): the feature vector at every window position."""
    return x.permute(0, 2, 3, 4, 1)


def mean_position_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, K) position logits -> (B, K) ``log`` of the mean softmax over positions."""
    probs = torch.softmax(logits.float(), dim=-1).mean(dim=(1, 2, 3))
    return probs.log().to(logits.dtype)
