"""Checkpoints in PyTorchVideo's format, built with its own builders, with every tensor random; and
PyTorchVideo's own clip functions as references."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch
from torch import nn


def ptv_functional() -> ModuleType:
    """``pytorchvideo.transforms.functional`` (PackPathway's subsampling, short-side scale, uniform crop).

    Loaded from its file: the ``pytorchvideo.transforms`` package imports a torchvision module that
    newer torchvision releases removed, while this module needs only torch, numpy and OpenCV.
    """
    import pytorchvideo

    path = Path(pytorchvideo.__file__).parent / "transforms" / "functional.py"
    spec = importlib.util.spec_from_file_location("ptv_transforms_functional", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomise(model: nn.Module) -> nn.Module:
    """Every floating tensor random (BN statistics too, variances positive), so a wrong or skipped copy shows."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + (0.5 if name.endswith("running_var") else -0.5))
    return model


def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every BatchNorm tensor random (the builder's conv and linear init kept, so a deep network's
    outputs stay moderate); a wrong or skipped mapping of any BN statistic still shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return model.eval()


@torch.no_grad()
def temper_classifier(model: nn.Module, example, spread: float = 2.0) -> nn.Module:
    """Scale the last ``nn.Linear`` so its outputs on ``example`` have standard deviation ``spread``:
    random deep networks otherwise saturate the softmax (one class at 1.0), hiding every difference."""
    proj = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    seen = []
    handle = proj.register_forward_hook(lambda _m, _i, out: seen.append(out))
    model(example)
    handle.remove()
    factor = spread / float(seen[0].std())
    proj.weight.mul_(factor)
    proj.bias.mul_(factor)
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
