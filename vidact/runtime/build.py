"""Building models: the input a run feeds, a registry model with the run's options, a checkpoint's model."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vidact.errors import UsageError
from vidact.runtime.checkpoint import load_model_state


@dataclass(frozen=True)
class ResolvedInput:
    """The clip a run feeds its model: the architecture's defaults with the config's overrides."""

    modality: str
    channels: int
    frames: int
    size: int
    stride: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_input(arch: str, modality: str = "", frames: int = 0, size: int = 0, stride: int = 0) -> ResolvedInput:
    """``arch``'s default input with the given overrides (0 or "" keeps the default)."""
    from vidact.models import get_entry

    spec = get_entry(arch).input
    modality = modality or spec.modality
    if modality == "rgb+flow" and spec.modality != "rgb+flow":
        raise UsageError(f"arch {arch!r} takes one stream; modality 'rgb+flow' needs a two-stream model")
    if spec.modality == "rgb+flow" and modality != "rgb+flow":
        raise UsageError(f"arch {arch!r} is a two-stream model; use modality 'rgb+flow'")
    channels = spec.channels if modality == spec.modality else (2 if modality == "flow" else 3)
    return ResolvedInput(modality, channels, frames or spec.frames, size or spec.size, stride or spec.stride)


def builder_options(builder) -> set[str] | None:
    """The keyword options a model builder names; None when it takes any (``**kwargs``, forwarded)."""
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_model(
    arch: str,
    num_classes: int,
    *,
    in_channels: int | None = None,
    dropout: float | None = None,
    width_mult: float = 1.0,
    train_clip: tuple[int, int] | None = None,
) -> nn.Module:
    """``create_model`` with only the options the run changes; an option the arch lacks is a UsageError.

    The options are checked against the builder's signature before the call, so an error raised
    inside a constructor surfaces as itself, not as a usage error. ``train_clip`` (frames, crop) is
    the clip the model trains on: a sliding test-time head (:mod:`vidact.models.test_head`) pools
    with its feature map.
    """
    from vidact.models import create_model, get_entry
    from vidact.models.test_head import SlidingTestHead

    entry = get_entry(arch)
    kwargs: dict = {"num_classes": num_classes}
    if in_channels is not None and in_channels != entry.input.channels:
        kwargs["in_channels"] = in_channels
    if dropout is not None:
        kwargs["dropout"] = dropout
    if width_mult != 1.0:
        kwargs["width_mult"] = width_mult
    accepted = builder_options(entry.builder)
    unknown = sorted(set(kwargs) - accepted) if accepted is not None else []
    if unknown:
        raise UsageError(
            f"arch {arch!r} does not accept option {unknown[0]!r} (it takes {', '.join(sorted(accepted))})"
        )
    model = create_model(arch, **kwargs)
    if train_clip is not None and isinstance(model, SlidingTestHead):
        model.set_train_clip(*train_clip)
    return model


def model_from_checkpoint(ckpt: dict, path: str | Path, device: torch.device) -> tuple[nn.Module, ResolvedInput]:
    """The trained model of a checkpoint, in eval mode on ``device``, with the input it expects."""
    cfg = ckpt["config"]
    if "input" in ckpt:
        inp = ResolvedInput(**ckpt["input"])
    else:
        inp = resolve_input(
            ckpt["arch"], cfg.get("modality", ""), cfg.get("frames", 0), cfg.get("size", 0), cfg.get("stride", 0)
        )
    model = build_model(
        ckpt["arch"],
        len(ckpt["classes"]),
        in_channels=inp.channels,
        dropout=cfg.get("dropout", 0.5),
        width_mult=cfg.get("width_mult", 1.0),
        train_clip=(inp.frames, inp.size),
    )
    load_model_state(model, ckpt["model"], path)
    return model.to(device).eval(), inp
