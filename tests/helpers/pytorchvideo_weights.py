"""Checkpoints in PyTorchVideo's format, built with its own builders, with every tensor random."""

from __future__ import annotations

import torch
from torch import nn


def randomise(model: nn.Module) -> nn.Module:
    """Every floating tensor random (BN statistics too, variances positive), so a wrong or skipped copy shows."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + (0.5 if name.endswith("running_var") else -0.5))
    return model


def ptv_x3d_xs(classes: int = 400) -> nn.Module:
    """X3D-XS as PyTorchVideo's hub builds it (4 frames), at a 32-pixel crop so the head pool is tiny."""
    from pytorchvideo.models.x3d import create_x3d

    return randomise(create_x3d(input_clip_length=4, input_crop_size=32, model_num_class=classes, head_activation=None))


def ptv_slowfast_r50(classes: int = 400) -> nn.Module:
    """SlowFast R50 8x8 as PyTorchVideo builds it (adaptive head pool)."""
    from pytorchvideo.models.slowfast import create_slowfast

    torch.manual_seed(0)
    return randomise(create_slowfast(head_pool=nn.AdaptiveAvgPool3d, model_num_class=classes))
