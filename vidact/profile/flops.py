"""Count a model's cost the way the papers do, op by op, on the meta device.

"FLOPs" are multiply-adds of convolutions and matrix products (conv, linear, matmul, bmm, einsum:
fvcore's convention, one fused multiply-add = 1; torch's ``flop_registry`` counts 2, so it is halved).
Normalisation, pointwise, pooling and reduction ops are listed separately by the number of elements
they produce; shape and copy ops are named as data movement; any other op is named as not counted.
Every op lands in exactly one of these buckets, so nothing is dropped silently. Activations follow
fvcore: the output elements of the multiply-add ops. Costs are attributed to every module that is
running when the op runs, which gives the per-layer breakdown.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from vidact.errors import UsageError, first_line

__all__ = [
    "FlopReport",
    "LayerCost",
    "count_flops",
    "op_summary",
    "parse_views",
    "profile_arch",
    "shape_text",
    "summarize_models",
]

# Ops that only move or reshape data (no arithmetic), beyond the aliasing views torch tags itself.
DATA_MOVEMENT = {
    "cat",
    "stack",
    "clone",
    "copy",
    "copy_",
    "_to_copy",
    "contiguous",
    "constant_pad_nd",
    "repeat",
    "index",
    "index_select",
    "gather",
    "scatter",
    "slice_scatter",
    "select_scatter",
    "flip",
    "roll",
    "replication_pad1d",
    "replication_pad2d",
    "replication_pad3d",
    "reflection_pad1d",
    "reflection_pad2d",
    "reflection_pad3d",
    "empty",
    "empty_like",
    "empty_strided",
    "new_empty",
    "new_empty_strided",
    "zeros",
    "zeros_like",
    "ones",
    "ones_like",
    "full",
    "full_like",
    "fill",
    "fill_",
    "zero_",
    "arange",
    "linspace",
    "lift_fresh",
    "lift_fresh_copy",
    "detach",
    "_unsafe_view",
    "split_with_sizes",
    "unbind",
    "scalar_tensor",
    "alias",
    "_local_scalar_dense",
    "randn",
    "rand",
    "normal_",
    "uniform_",
    "bernoulli_",
    "resize_",
    "set_",
}
NORM_WORDS = ("batch_norm", "layer_norm", "group_norm", "instance_norm")


@dataclass
class LayerCost:
    """Cost of one module (its sub-modules included) in one forward pass."""

    name: str
    type: str
    depth: int
    leaf: bool
    params: int = 0
    macs: int = 0
    elements: int = 0  # norm + pointwise + pooling + reduction output elements
    activations: int = 0
    output_shape: tuple | None = None


@dataclass
class FlopReport:
    """What one forward pass costs; ``macs`` is the papers' "FLOPs"."""

    input_shapes: list[tuple[int, ...]]
    params: int
    macs: int
    activations: int
    macs_by_op: dict[str, int]
    norm: dict[str, int]  # op -> output elements
    pointwise: dict[str, int]
    pooling: dict[str, int]
    reduction: dict[str, int]
    data_movement: dict[str, int]  # op -> calls
    not_counted: dict[str, int]  # op -> calls
    layers: list[LayerCost] = field(default_factory=list)
    views: int = 1
    output_shape: tuple[int, ...] | None = None

    @property
    def gflops(self) -> float:
        return self.macs / 1e9

    def layers_at(self, depth: int) -> list[LayerCost]:
        """Modules ``depth`` levels below the model, plus shallower leaves (in module order)."""
        return [layer for layer in self.layers if layer.depth == depth or (layer.leaf and 0 < layer.depth < depth)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gflops"] = self.gflops
        d["gflops_x_views"] = self.gflops * self.views
        d["input"] = shape_text(self.input_shapes)
        return d


def shape_text(shapes: list[tuple[int, ...]]) -> str:
    """``1x3x16x112x112`` (streams joined by ``+``)."""
    return " + ".join("x".join(str(d) for d in s) for s in shapes)


def parse_views(text: str) -> int:
    """``"10x3"`` -> 30 (clips x crops); a plain integer is accepted too."""
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        parts = []
    if not parts or any(p < 1 for p in parts):
        raise ValueError(f"views must look like 10x3 or 30, not {text!r}")
    return math.prod(parts)


def _op_name(func) -> str:
    return func.overloadpacket.__name__


def _numel(out) -> int:
    tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
    return tensors[0].numel() if tensors else 0


class _OpCounter(TorchDispatchMode):
    """Sorts every aten op into a bucket and charges it to the modules on the stack."""

    def __init__(self, report: FlopReport, stack: list[LayerCost]):
        super().__init__()
        self.report = report
        self.stack = stack
        self._buckets: dict = {}  # op -> bucket name, decided once per op

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._record(func, args, kwargs, out)
        return out

    def _charge(self, macs: int = 0, elements: int = 0, activations: int = 0) -> None:
        for layer in self.stack:
            layer.macs += macs
            layer.elements += elements
            layer.activations += activations

    def _record(self, func, args, kwargs, out) -> None:
        r, name = self.report, _op_name(func)
        packet = func.overloadpacket
        if packet in flop_registry:
            macs = int(flop_registry[packet](*args, **kwargs, out_val=out)) // 2
            acts = _numel(out)
            r.macs += macs
            r.activations += acts
            r.macs_by_op[name] = r.macs_by_op.get(name, 0) + macs
            self._charge(macs=macs, activations=acts)
            return
        if func not in self._buckets:
            self._buckets[func] = self._bucket(func, name)
        bucket = getattr(r, self._buckets[func])
        if bucket is r.data_movement or bucket is r.not_counted:  # these list calls, not elements
            bucket[name] = bucket.get(name, 0) + 1
            return
        n = _numel(out)
        bucket[name] = bucket.get(name, 0) + n
        self._charge(elements=n)

    @staticmethod
    def _bucket(func, name: str) -> str:
        if any(w in name for w in NORM_WORDS):
            return "norm"
        if "pool" in name:
            return "pooling"
        if func.is_view or name in DATA_MOVEMENT:
            return "data_movement"
        if torch.Tag.pointwise in func.tags:
            return "pointwise"
        if torch.Tag.reduction in func.tags or "softmax" in name or name in ("logsumexp", "norm", "cumsum"):
            return "reduction"
        return "not_counted"


def _input_shapes(inputs) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in tree_flatten(inputs)[0] if isinstance(t, torch.Tensor)]


def count_flops(model: nn.Module, inputs) -> FlopReport:
    """Run ``model(inputs)`` once in eval mode without gradients and count every op.

    Build the model and inputs under ``torch.device("meta")`` to count big models without memory.
    """
    report = FlopReport(
        _input_shapes(inputs), sum(p.numel() for p in model.parameters()), 0, 0, {}, {}, {}, {}, {}, {}, {}
    )
    stack: list[LayerCost] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        layer = LayerCost(
            name,
            type(module).__name__,
            name.count(".") + 1,
            not any(module.children()),
            params=sum(p.numel() for p in module.parameters()),
        )
        report.layers.append(layer)

        def push(_m, _inp, layer=layer):
            stack.append(layer)

        def pop(_m, _inp, output, layer=layer):
            if stack and stack[-1] is layer:
                stack.pop()
            if isinstance(output, torch.Tensor):
                layer.output_shape = tuple(output.shape)

        handles += [module.register_forward_pre_hook(push), module.register_forward_hook(pop)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _OpCounter(report, stack):
            output = model(inputs)
        if isinstance(output, torch.Tensor):
            report.output_shape = tuple(output.shape)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return report


def profile_arch(
    arch: str,
    frames: int | None = None,
    size: int | None = None,
    batch: int = 1,
    num_classes: int | None = None,
    views: int = 1,
    **model_kwargs,
) -> FlopReport:
    """Count ``arch`` on the meta device at its default input (or the given frames/size/batch)."""
    from vidact.models.registry import get_entry

    entry = get_entry(arch)
    kwargs = {**entry.defaults, **model_kwargs}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    with torch.device("meta"):
        model = entry.builder(**kwargs)
        inputs = entry.example_input(batch, frames, size, device="meta")
    shapes = shape_text(_input_shapes(inputs))
    try:
        report = count_flops(model, inputs)
    except RuntimeError as exc:  # a kernel larger than what is left of the input, and the like
        raise UsageError(f"{arch}: input {shapes} is too small for this architecture ({first_line(exc)})") from None
    empty = next((layer for layer in report.layers if layer.output_shape and 0 in layer.output_shape), None)
    if empty is not None:  # the meta device lets pooling shrink a dimension to nothing
        raise UsageError(
            f"{arch}: input {shapes} is too small for this architecture "
            f"({empty.name} would output {shape_text([empty.output_shape])})"
        )
    report.views = views
    return report


def op_summary(counts: dict[str, int]) -> str:
    """``relu 1.2M, add 0.3M`` sorted by size, for one-line listings."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {_human(v)}" for k, v in items) or "none"


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(int(n))


def summarize_models(names: list[str] | None = None, family: str | None = None) -> list[dict]:
    """One row per registered architecture (of ``family``): default input, parameters, GFLOPs (one view)."""
    from vidact.models.registry import get_entry, model_names

    entries = [get_entry(name) for name in names or model_names()]
    if family is not None:
        families = sorted({e.family for e in entries})
        entries = [e for e in entries if e.family == family]
        if not entries:
            raise UsageError(f"unknown family {family!r}; known: {', '.join(families)}")
    rows = []
    for entry in entries:
        name = entry.name
        report = profile_arch(name)
        shapes = [s[1:] for s in report.input_shapes]
        spec = entry.input
        classes = report.output_shape[-1] if report.output_shape else None
        rows.append(
            {
                "name": name,
                "family": entry.family,
                "modality": spec.modality,
                "channels": spec.channels,
                "frames": spec.frames,
                "size": spec.size,
                "stride": spec.stride,
                "input_shapes": shapes,
                "input_text": " + ".join(f"{c}x{t}x{h}x{w}" for c, t, h, w in shapes),
                "params": report.params,
                "gflops": report.gflops,
                "num_classes": classes,
                "description": entry.description,
            }
        )
    return rows
