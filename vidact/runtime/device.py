"""Devices, autocast, batches on the device, seeding and the family's fastest defaults."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn

from vidact.errors import UsageError
from vidact.runtime import distributed

AMP_MODES = ("none", "bf16", "fp16")
AUTO = "auto"


def select_device(name: str = AUTO) -> torch.device:
    """``name`` as a torch.device: ``auto`` is CUDA when present; under torchrun each rank takes
    ``cuda:LOCAL_RANK`` unless an index is given. A malformed or absent device is a one-line UsageError."""
    if name == AUTO:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"unsupported device {name!r} (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} requested but CUDA is not available here")
    if device.type == "cuda" and device.index is None and distributed.is_dist():
        device = torch.device("cuda", distributed.get_local_rank())  # one GPU per process under torchrun
    return device


def check_amp(amp: str, device: torch.device) -> None:
    """fp16 autocast needs a GPU (and its loss scaler); bf16 runs on both."""
    if amp not in AMP_MODES:
        raise UsageError(f"amp={amp!r} is not one of {', '.join(AMP_MODES)}")
    if amp == "fp16" and device.type != "cuda":
        raise UsageError("amp=fp16 needs a CUDA device; use amp=bf16 on CPU")


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for ``amp`` in bf16/fp16, or a disabled one for "none"."""
    if amp == "none":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def to_device(x, device: torch.device, channels_last: bool = False):
    """A batch (a tensor, or a list of pathway tensors) on ``device``; 5-D ones channels-last-3d if asked."""
    if isinstance(x, (list, tuple)):
        return [to_device(t, device, channels_last) for t in x]
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 5:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x


def preferred_channels_last(model: nn.Module, device: torch.device) -> bool:
    """The family's measured memory-format choice on ``device`` (families without one: contiguous)."""
    formats = getattr(model, "memory_formats", {})
    return formats.get(device.type, torch.contiguous_format) == torch.channels_last_3d


def preferred_amp(model: nn.Module, device: torch.device) -> str:
    """The family's autocast choice on CUDA; on the CPU ``none``.

    bf16 autocast pays on the CPU only with AMX tiles (SlowFast measured 1.8x there); without them,
    as on the 2-core CI machine, it is slower, and torch has no public AMX check: so off.
    """
    if device.type != "cuda":
        return "none"
    dtype = getattr(model, "amp_dtypes", {}).get("cuda")
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "none")


def resolve_speed(model: nn.Module, device: torch.device, *, amp: str, channels_last: str) -> tuple[str, bool]:
    """``(amp, channels_last)`` with ``auto`` replaced by the family's preference on ``device``."""
    resolved_amp = preferred_amp(model, device) if amp == AUTO else amp
    if channels_last == AUTO:
        resolved_cl = preferred_channels_last(model, device)
    else:
        resolved_cl = channels_last == "on"
    return resolved_amp, resolved_cl


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; deterministic algorithms (and no cuDNN autotuning) if asked."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
