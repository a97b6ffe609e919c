"""Training in less memory: activation checkpointing per stage, and an out-of-memory error that names the remedies.

Activation checkpointing keeps only a stage's input during the forward pass and recomputes the
stage's activations during the backward pass (``torch.utils.checkpoint``, non-reentrant): less
memory for about one more forward pass of those stages. The recomputation runs in training mode
again, so it would update BatchNorm running statistics a second time; every buffer of the stage
is put back after it, and sub-batch BatchNorm statistics held back for an accumulated step are
not recorded twice, so the weights, gradients and statistics are those of a run without it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vidact.errors import UsageError, VidactError
from vidact.train.subbatch_bn import is_sub_batch_norm

ALL = "all"
_CONTAINERS = (nn.Sequential, nn.ModuleList)
_POOLS = (nn.MaxPool3d, nn.AvgPool3d, nn.MaxPool2d, nn.AvgPool2d)


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _is_network(module: nn.Module) -> bool:
    """A whole network inside the model (a two-stream model's stream): a ``head``, or an ``fc`` after a body."""
    children = dict(module.named_children())
    parts = sum(_has_parameters(c) for c in children.values())
    return "head" in children or ("fc" in children and parts > 2)


def _segments(body: nn.Sequential) -> list[list[str]]:
    """A body of layers (C3D's ``features``) cut after each pooling layer: its conv blocks."""
    segments, current = [], []
    for name, layer in body.named_children():
        current.append(name)
        if isinstance(layer, _POOLS):
            segments.append(current)
            current = []
    return segments + [current] if current else segments


def stage_names(model: nn.Module, prefix: str = "") -> list[str]:
    """What ``all`` checkpoints: the model's top-level parts that hold parameters (X3D's and SlowFast's stem,
    res2..res5, I3D's inception blocks). A model that is one body of layers and a head (C3D, the two-stream
    and fusion nets) has the body's blocks between pooling layers as stages (``features.conv1a:pool1``), and
    a whole network inside the model (a two-stream model's stream) its own stages."""
    parts = [(name, child) for name, child in model.named_children() if _has_parameters(child)]
    body_and_head = len(parts) <= 2
    names = []
    for name, child in parts:
        path = f"{prefix}{name}"
        if _is_network(child) or (body_and_head and isinstance(child, nn.ModuleList)):
            names += stage_names(child, f"{path}.")
        elif body_and_head and isinstance(child, nn.Sequential):
            names += [f"{path}.{seg[0]}:{seg[-1]}" if len(seg) > 1 else f"{path}.{seg[0]}" for seg in _segments(child)]
        else:
            names.append(path)
    return names


def _exists(model: nn.Module, name: str) -> bool:
    """A module's name, or a run ``BODY.FIRST:LAST`` of a body's layers in order."""
    modules = dict(model.named_modules())
    if ":" not in name:
        return bool(name) and name in modules
    body, _, span = name.rpartition(".")
    first, _, last = span.partition(":")
    layers = [n for n, _ in modules[body].named_children()] if isinstance(modules.get(body), nn.Sequential) else []
    return first in layers and last in layers and layers.index(first) <= layers.index(last)


def _chosen(model: nn.Module, spec: str) -> list[str]:
    if spec.strip() == ALL:
        return stage_names(model)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    for name in names:
        if not _exists(model, name):
            choices = ", ".join(stage_names(model))
            raise UsageError(f"activation_checkpointing {name!r}: no such module; choose {ALL} or from {choices}")
    return names


@contextlib.contextmanager
def _kept_state(modules: list[nn.Module]) -> Iterator[None]:
    """Around a recomputation: put every buffer back, and drop the sub-batch BN statistics it records again."""
    inner = [m for module in modules for m in module.modules()]
    buffers = [(b, b.clone()) for module in modules for b in module.buffers()]
    pending = [(m, len(m.pending)) for m in inner if is_sub_batch_norm(m) and m.pending is not None]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for m, count in pending:
            del m.pending[count:]


def _checkpointed(forward, modules: list[nn.Module], *args, **kwargs):
    """``forward(*args)`` with its activations recomputed in the backward pass (while training)."""
    if not (modules[0].training and torch.is_grad_enabled()):
        return forward(*args, **kwargs)
    contexts = functools.partial(lambda ms: (contextlib.nullcontext(), _kept_state(ms)), modules)
    return checkpoint(forward, *args, use_reentrant=False, context_fn=contexts, **kwargs)


def _checkpoint_module(module: nn.Module) -> None:
    forward = module.forward
    module.forward = functools.wraps(forward)(functools.partial(_checkpointed, forward, [module]))


def _checkpoint_segments(body: nn.Sequential, segments: list[tuple[str, str]]) -> None:
    """Run ``body`` with each ``(first, last)`` run of its layers checkpointed as one piece."""
    names = [name for name, _ in body.named_children()]
    layers = dict(body.named_children())
    pieces, i = [], 0
    for first, last in sorted(segments, key=lambda seg: names.index(seg[0])):
        start, stop = names.index(first), names.index(last) + 1
        pieces += [[layers[n]] for n in names[i:start]] + [[layers[n] for n in names[start:stop]]]
        i = stop
    pieces += [[layers[n]] for n in names[i:]]

    def run_layers(layer_list, x):
        for layer in layer_list:
            x = layer(x)
        return x

    def forward(x):
        for piece in pieces:
            x = _checkpointed(functools.partial(run_layers, piece), piece, x) if len(piece) > 1 else piece[0](x)
        return x

    body.forward = forward


def checkpoint_stages(model: nn.Module, spec: str) -> list[str]:
    """Checkpoint the activations of ``spec``'s stages (``all``, module names ``res3,res4``, or runs of a body's
    layers ``features.conv1a:pool1``) while training; returns the stages. Module names and weights are unchanged."""
    if getattr(model, "vidact_checkpointed", None):
        raise UsageError("activation checkpointing is already set up on this model")
    names = _chosen(model, spec)
    modules = dict(model.named_modules())
    runs: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        if ":" in name:
            body, span = name.rsplit(".", 1)
            runs.setdefault(body, []).append(tuple(span.split(":")))
        else:
            _checkpoint_module(modules[name])
    for body, segments in runs.items():
        _checkpoint_segments(modules[body], segments)
    model.vidact_checkpointed = names
    return names


def out_of_memory(
    device: torch.device, *, batch_size: int, accumulate: int, amp: str, checkpointing: str
) -> VidactError:
    """The one-line error for an out-of-memory failure in training, naming the remedies not yet in use."""
    step = batch_size * accumulate
    remedies = [
        f"lower --batch-size and keep the step's {step} clips with --accumulate"
        + (f" (e.g. --batch-size {max(1, batch_size // 2)} --accumulate {2 * accumulate})" if batch_size > 1 else ""),
    ]
    if amp == "none":
        remedies.append("--amp bf16 (or fp16)")
    if not checkpointing:
        remedies.append("--activation-checkpointing all")
    return VidactError(
        f"out of memory on {device} at --batch-size {batch_size} (--accumulate {accumulate}, --amp {amp}, "
        f"activation checkpointing {checkpointing or 'off'}): {'; '.join(remedies)}"
    )
