"""Model registry: a name maps to a builder and the input it expects by default."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from vidact.errors import UsageError


@dataclass(frozen=True)
class InputSpec:
    """Default input of a model: one (C, T, H, W) clip per stream, and the frame stride."""

    channels: int
    frames: int
    size: int
    stride: int = 1
    modality: str = "rgb"  # rgb | flow | rgb+flow

    def shape(self, frames: int | None = None, size: int | None = None) -> tuple[int, int, int, int]:
        s = size or self.size
        return (self.channels, frames or self.frames, s, s)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    input: InputSpec
    family: str
    description: str = ""
    # Builds an example input (tensor or list of tensors) from (batch, frames, size);
    # None means a single tensor of ``input.shape``.
    make_input: Callable[[int, int | None, int | None], object] | None = None
    defaults: dict = field(default_factory=dict)

    def example_input(
        self, batch: int = 1, frames: int | None = None, size: int | None = None, device: str | torch.device = "cpu"
    ):
        if self.make_input is not None:
            x = self.make_input(batch, frames, size)
        else:
            x = torch.randn(batch, *self.input.shape(frames, size))
        return _to(x, device)


def _to(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    return type(x)(_to(t, device) for t in x)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, input: InputSpec, family: str, description: str = "", make_input=None, **defaults):
    """Decorator: register ``builder`` under ``name``; ``defaults`` are builder kwargs."""

    def wrap(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, input, family, description, make_input, defaults)
        return builder

    return wrap


def _load_families() -> None:
    import vidact.models  # noqa: F401  (importing the package registers every family)


def model_names() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; an unknown name raises a one-line UsageError."""
    _load_families()
    key = name.strip().lower().replace("_", "-")
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=4, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(_REGISTRY))}"
    raise UsageError(f"unknown architecture {name!r}{hint}")


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name``; kwargs override the registered defaults."""
    entry = get_entry(name)
    return entry.builder(**{**entry.defaults, **kwargs})
