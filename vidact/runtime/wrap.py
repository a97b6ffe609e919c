"""Model wrappers: device and memory format, DDP, torch.compile, and the way back to the plain module."""

from __future__ import annotations

import torch
from torch import nn

from vidact.runtime import distributed


def prepare_model(model: nn.Module, device: torch.device, *, channels_last: bool, compile: bool) -> nn.Module:
    """Move to ``device``; channels-last-3d memory format, DDP (under a process group) and
    ``torch.compile`` when asked."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    model = distributed.wrap_ddp(model, device)
    if compile:
        model = torch.compile(model)
    return model


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DDP and ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def find_ddp(model: nn.Module) -> nn.parallel.DistributedDataParallel | None:
    """The DistributedDataParallel wrapper in ``model`` (under ``torch.compile`` too), or None."""
    while model is not None:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            return model
        model = getattr(model, "_orig_mod", None)
    return None
