"""Checkpoint interop: PyTorchVideo and PySlowFast state dicts -> vidact SlowFast / X3D weights.

Each vidact key is renamed to the source's key by a short list of regex rules per (family,
source); every vidact key must be found with the same shape and every source key must be
used, otherwise a one-line :class:`CheckpointError` names the first offending key. The one
structural difference: PyTorchVideo's X3D has no BatchNorm on res2's first shortcut (PySlowFast
and vidact do); it is filled with an exact identity (weight 1, bias 0, mean 0, var 1 - eps). BatchNorm
batch counters (``num_batches_tracked``) a file lacks (Caffe2 ``.pkl`` files hold none) are left at
their initial value and reported, never counted as loaded.

:func:`read_weights` reads every format ``--pretrained`` and ``models convert`` take: what
``torch.load(weights_only=True)`` reads, and PySlowFast's Caffe2 ``.pkl`` pickles.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vidact.errors import CheckpointError, UsageError
from vidact.io.torchfile import load_weights_only
from vidact.models.registry import create_model, get_entry
from vidact.models.res_blocks import BN_EPS
from vidact.runtime.checkpoint import save_checkpoint

SOURCES = ("pytorchvideo", "pyslowfast")

_BLOCK = {  # vidact bottleneck / shortcut names -> PyTorchVideo's
    "branch1": "branch1_conv",
    "branch1_bn": "branch1_norm",
    "branch2.a": "branch2.conv_a",
    "branch2.a_bn": "branch2.norm_a",
    "branch2.b": "branch2.conv_b",
    "branch2.c": "branch2.conv_c",
    "branch2.c_bn": "branch2.norm_c",
    "branch2.b_bn": "branch2.norm_b.0",  # X3D wraps BN and SE in one Sequential
    "branch2.se.fc1": "branch2.norm_b.1.block.0",
    "branch2.se.fc2": "branch2.norm_b.1.block.2",
}
_SLOWFAST_PTV_BN = {"branch2.b_bn": "branch2.norm_b"}  # plain BN in PyTorchVideo's ResNet


def _res_block_rule(prefix: str, table: dict[str, str]):
    def rule(m: re.Match) -> str:
        return f"{prefix.format(stage=int(m['stage']) - 1)}.res_blocks.{m['block']}.{table[m['part']]}"

    return rule


def _ptv_fusion(m: re.Match) -> str:
    return f"blocks.{int(m['stage']) - 1}.multipathway_fusion"


_PART = r"(?P<part>branch1|branch1_bn|branch2\.(?:a|a_bn|b|b_bn|c|c_bn|se\.fc1|se\.fc2))"

# (family, source) -> [(pattern on the vidact module path, replacement string or function)]
_RULES: dict[tuple[str, str], list] = {
    ("x3d", "pyslowfast"): [
        (r"stem\.conv_xy", "s1.pathway0_stem.conv_xy"),
        (r"stem\.conv_t", "s1.pathway0_stem.conv"),
        (r"stem\.bn", "s1.pathway0_stem.bn"),
        (r"res(?P<stage>\d)\.(?P<block>\d+)\.(?P<part>.+)", r"s\g<stage>.pathway0_res\g<block>.\g<part>"),
        (r"conv5", "head.conv_5"),
        (r"conv5_bn", "head.conv_5_bn"),
        (r"head\.lin5", "head.lin_5"),
        (r"head\.projection", "head.projection"),
    ],
    ("x3d", "pytorchvideo"): [
        (r"stem\.conv_xy", "blocks.0.conv.conv_t"),  # PyTorchVideo's names are swapped
        (r"stem\.conv_t", "blocks.0.conv.conv_xy"),
        (r"stem\.bn", "blocks.0.norm"),
        (rf"res(?P<stage>\d)\.(?P<block>\d+)\.{_PART}", _res_block_rule("blocks.{stage}", _BLOCK)),
        (r"conv5", "blocks.5.pool.pre_conv"),
        (r"conv5_bn", "blocks.5.pool.pre_norm"),
        (r"head\.lin5", "blocks.5.pool.post_conv"),
        (r"head\.projection", "blocks.5.proj"),
    ],
    ("slowfast", "pyslowfast"): [
        (r"stem\.slow\.(?P<p>conv|bn)", r"s1.pathway0_stem.\g<p>"),
        (r"stem\.fast\.(?P<p>conv|bn)", r"s1.pathway1_stem.\g<p>"),
        (r"stem_fuse\.conv", "s1_fuse.conv_f2s"),
        (r"stem_fuse\.bn", "s1_fuse.bn"),
        (r"res(?P<stage>\d)\.slow\.(?P<block>\d+)\.(?P<part>.+)", r"s\g<stage>.pathway0_res\g<block>.\g<part>"),
        (r"res(?P<stage>\d)\.fast\.(?P<block>\d+)\.(?P<part>.+)", r"s\g<stage>.pathway1_res\g<block>.\g<part>"),
        (r"res(?P<stage>\d)_fuse\.conv", r"s\g<stage>_fuse.conv_f2s"),
        (r"res(?P<stage>\d)_fuse\.bn", r"s\g<stage>_fuse.bn"),
        (r"head\.projection", "head.projection"),
    ],
    ("slowfast", "pytorchvideo"): [
        (r"stem\.slow\.conv", "blocks.0.multipathway_blocks.0.conv"),
        (r"stem\.slow\.bn", "blocks.0.multipathway_blocks.0.norm"),
        (r"stem\.fast\.conv", "blocks.0.multipathway_blocks.1.conv"),
        (r"stem\.fast\.bn", "blocks.0.multipathway_blocks.1.norm"),
        (r"stem_fuse\.conv", "blocks.0.multipathway_fusion.conv_fast_to_slow"),
        (r"stem_fuse\.bn", "blocks.0.multipathway_fusion.norm"),
        (
            rf"res(?P<stage>\d)\.slow\.(?P<block>\d+)\.{_PART}",
            _res_block_rule("blocks.{stage}.multipathway_blocks.0", {**_BLOCK, **_SLOWFAST_PTV_BN}),
        ),
        (
            rf"res(?P<stage>\d)\.fast\.(?P<block>\d+)\.{_PART}",
            _res_block_rule("blocks.{stage}.multipathway_blocks.1", {**_BLOCK, **_SLOWFAST_PTV_BN}),
        ),
        (r"res(?P<stage>\d)_fuse\.conv", lambda m: f"{_ptv_fusion(m)}.conv_fast_to_slow"),
        (r"res(?P<stage>\d)_fuse\.bn", lambda m: f"{_ptv_fusion(m)}.norm"),
        (r"head\.projection", "blocks.6.proj"),
    ],
}
_PROJECTION = {
    "pytorchvideo": {"x3d": "blocks.5.proj.weight", "slowfast": "blocks.6.proj.weight"},
    "pyslowfast": {"x3d": "head.projection.weight", "slowfast": "head.projection.weight"},
}


@dataclass
class ConversionReport:
    arch: str
    source: str
    num_classes: int
    tensors: int  # tensors that came from the file
    filled_identity: list[str] = field(default_factory=list)  # BN the source has no equivalent for
    left_at_init: list[str] = field(default_factory=list)  # BN batch counters the file lacks
    test_protocol: dict = field(default_factory=dict)  # the publisher's test the checkpoint records

    def to_dict(self) -> dict:
        return asdict(self)


def source_key(vidact_key: str, family: str, source: str) -> str:
    """The key in a ``source`` state dict that holds vidact's ``vidact_key``."""
    module, _, param = vidact_key.rpartition(".")
    for pattern, repl in _RULES[(family, source)]:
        m = re.fullmatch(pattern, module)
        if m:
            mapped = repl(m) if callable(repl) else m.expand(repl)
            return f"{mapped}.{param}"
    raise CheckpointError(f"no {source} name for vidact key {vidact_key!r}")


def unwrap_state_dict(obj) -> dict[str, torch.Tensor]:
    """The tensor dict inside a PySlowFast/PyTorchVideo checkpoint (``model_state``), minus DDP's ``module.``."""
    if isinstance(obj, dict):
        for key in ("model_state", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError("not a state dict: expected a dict of tensors (or one under 'model_state')")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def detect_source(state: dict[str, torch.Tensor]) -> str:
    """``pytorchvideo`` (keys ``blocks.N...``) or ``pyslowfast`` (keys ``s1.``, ``s2.``, ...)."""
    if any(k.startswith("blocks.") for k in state):
        return "pytorchvideo"
    if any(k.startswith("s1.") for k in state):
        return "pyslowfast"
    first = next(iter(state))
    raise CheckpointError(
        f"cannot tell the checkpoint's origin from its keys (first key {first!r}); "
        f"pass --from pytorchvideo or --from pyslowfast"
    )


def _identity_bn(name: str, like: torch.Tensor) -> torch.Tensor:
    if name.endswith("weight"):
        return torch.ones_like(like)
    if name.endswith("running_var"):
        return torch.full_like(like, 1.0 - BN_EPS)  # sqrt(var + eps) == 1
    return torch.zeros_like(like)


def convert_state_dict(
    state: dict[str, torch.Tensor], arch: str, source: str = "auto"
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Map a PyTorchVideo/PySlowFast state dict onto the vidact model ``arch``."""
    entry = get_entry(arch)
    if entry.family not in ("x3d", "slowfast"):
        raise UsageError(f"convert supports the slowfast and x3d families, not {arch!r} ({entry.family})")
    state = unwrap_state_dict(state)
    source = detect_source(state) if source == "auto" else source
    if source not in SOURCES:
        raise UsageError(f"unknown source {source!r}; choose auto, {', '.join(SOURCES)}")
    proj = _PROJECTION[source][entry.family]
    if proj not in state:
        raise CheckpointError(f"missing key {proj!r}: not a {source} {entry.family} checkpoint")
    num_classes = state[proj].shape[0]
    with torch.device("meta"):
        target = create_model(entry.name, num_classes=num_classes).state_dict()

    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    filled: list[str] = []
    left: list[str] = []
    for key, like in target.items():
        src = source_key(key, entry.family, source)
        if src not in state:
            if entry.family == "x3d" and source == "pytorchvideo" and ".branch1_bn." in key:
                out[key] = _identity_bn(key, torch.empty(like.shape, dtype=like.dtype))
                filled.append(key)
                continue
            if key.endswith(".num_batches_tracked"):
                left.append(key)
                continue
            raise CheckpointError(f"missing key {src!r} (vidact {key!r}): checkpoint does not fit {arch}")
        value = state[src]
        if tuple(value.shape) != tuple(like.shape):
            raise CheckpointError(
                f"shape mismatch at {src!r}: {tuple(value.shape)} in the checkpoint, "
                f"{tuple(like.shape)} for vidact {key!r} in {arch}"
            )
        out[key] = value.detach().clone().to(like.dtype)
        used.add(src)
    extra = [k for k in state if k not in used]
    if extra:
        raise CheckpointError(f"unexpected key {extra[0]!r} ({len(extra)} unused): checkpoint does not fit {arch}")
    return out, ConversionReport(entry.name, source, int(num_classes), len(used), filled, left)


def read_weights(path: Path) -> tuple[str, object]:
    """``(kind, object)``: ``torch`` for what ``torch.load(weights_only=True)`` reads, ``caffe2`` for a blobs pickle."""
    try:
        return "torch", load_weights_only(path)
    except CheckpointError:
        if path.suffix != ".pkl" or zipfile.is_zipfile(path):
            raise
    from vidact.weights.caffe2 import read_caffe2_pickle

    return "caffe2", read_caffe2_pickle(path)


def foreign_state(obj, kind: str, arch: str, source: str = "auto") -> tuple[object, str]:
    """What :func:`convert_state_dict` takes from what :func:`read_weights` read: Caffe2 blobs become a
    PySlowFast state dict (shapes fitted to ``arch``)."""
    if kind != "caffe2":
        return obj, source
    if source not in ("auto", "pyslowfast"):
        raise UsageError(f"a Caffe2 .pkl is a PySlowFast checkpoint, not --from {source}")
    from vidact.weights.caffe2 import caffe2_to_pyslowfast

    state = caffe2_to_pyslowfast(obj)
    entry = get_entry(arch)
    proj = state.get("head.projection.weight")
    with torch.device("meta"):
        target = create_model(entry.name, num_classes=proj.shape[0] if proj is not None else 400).state_dict()
    for key, like in target.items():  # Caffe2 blobs can drop trailing unit dimensions
        src = source_key(key, entry.family, "pyslowfast")
        value = state.get(src)
        if value is not None and tuple(value.shape) != tuple(like.shape) and value.numel() == like.numel():
            state[src] = value.reshape(like.shape)
    return state, "pyslowfast"


def convert_checkpoint(
    src: str | Path, dst: str | Path, arch: str, source: str = "auto", classes: list[str] | None = None
) -> ConversionReport:
    """Read ``src`` (PyTorchVideo/PySlowFast), write a vidact checkpoint to ``dst`` atomically."""
    src = Path(src)
    if not src.is_file():
        raise UsageError(f"{src}: checkpoint not found")
    kind, raw = read_weights(src)
    try:
        raw, source = foreign_state(raw, kind, get_entry(arch).name, source)
        state, report = convert_state_dict(raw, arch, source)
    except CheckpointError as exc:
        raise CheckpointError(f"{src}: {exc}") from None
    for key in report.left_at_init:  # a vidact checkpoint holds every tensor: counters at their start, 0
        state[key] = torch.tensor(0)
    if classes is None:
        classes = [str(i) for i in range(report.num_classes)]
    elif len(classes) != report.num_classes:
        raise UsageError(f"{len(classes)} class names given but the checkpoint has {report.num_classes} classes")
    entry = get_entry(arch)
    from vidact.weights.zoo import published_test

    row = published_test(entry.name, report.source)
    test = {"name": report.source, "crop_size": row.test_crop, "short_side": row.test_crop} if row else {}
    report.test_protocol = test
    save_checkpoint(
        dst,
        arch=entry.name,
        classes=list(classes),
        config={
            "arch": entry.name,
            "num_classes": report.num_classes,
            "converted_from": report.source,
            "test_protocol": test,
        },
        input=asdict(entry.input),
        model=state,
    )
    return report
