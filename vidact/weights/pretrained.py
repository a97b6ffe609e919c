"""``--pretrained SRC``: start a run from published or earlier weights instead of a random init.

SRC is a zoo name (``vidact models zoo``), ``imagenet`` (2D ImageNet weights inflated, i3d family),
a file path or an ``http(s)://`` / ``file://`` URL (downloaded once into the cache, see
:mod:`vidact.io.download`). The file's format is detected: a vidact checkpoint, a PyTorchVideo
``.pyth``, a PySlowFast ``.pyth`` or Caffe2 ``.pkl``, or a torchvision 2D state dict; the foreign ones
go through the converters of :mod:`vidact.weights.convert`. Every tensor of the model is then loaded
bit for bit, except the classifier when the class count differs: that is replaced by the model's own
fresh initialisation. Weights of another architecture are refused with one line (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from vidact.errors import CheckpointError, UsageError
from vidact.io.download import Fetched, fetch, is_url
from vidact.models import get_entry
from vidact.weights.zoo import IMAGENET, ZooEntry, get_zoo_entry, imagenet_entry, zoo_names

VIDACT_FORMAT = "vidact-checkpoint"


@dataclass
class PretrainedReport:
    """What ``--pretrained`` loaded: the file, its format, and which tensors were loaded or replaced."""

    source: str
    path: str
    sha256: str
    format: str
    source_arch: str
    source_classes: int
    loaded: int = 0  # tensors copied from the file
    replaced: list[str] = field(default_factory=list)  # classifier tensors re-initialised (other class count)
    left_at_init: list[str] = field(default_factory=list)  # tensors the file lacks (BN counters only)
    identity_filled: list[str] = field(default_factory=list)  # BN the source has no equivalent for
    zoo: str | None = None
    from_cache: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"loaded {self.loaded} tensors"]
        if self.replaced:
            parts.append(
                f"replaced {len(self.replaced)} classifier tensors "
                f"({self.source_classes} -> new classes: {', '.join(self.replaced)})"
            )
        if self.identity_filled:
            parts.append(f"{len(self.identity_filled)} identity BatchNorm tensors added")
        if self.left_at_init:
            parts.append(
                f"left {len(self.left_at_init)} at init ({', '.join(self.left_at_init[:3])}"
                f"{', ...' if len(self.left_at_init) > 3 else ''})"
            )
        cached = " (from the cache)" if self.from_cache else ""
        return f"pretrained {self.source} [{self.format}, {self.source_arch}]{cached}: " + "; ".join(parts)


def classifier_keys(model: nn.Module, rebuild: Callable[[int], nn.Module]) -> list[str]:
    """The state-dict keys whose shape depends on the class count (``rebuild(n)`` builds the same model)."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    probe_classes = max(own_classes(model, rebuild), 1) + 1
    with torch.device("meta"):
        other = rebuild(probe_classes).state_dict()
    return [k for k, shape in own.items() if k in other and tuple(other[k].shape) != shape]


def own_classes(model: nn.Module, rebuild: Callable[[int], nn.Module]) -> int:
    """The class count ``model`` was built with (read from the model, else from a meta rebuild at 2 and 3)."""
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    with torch.device("meta"):
        a, b = rebuild(2).state_dict(), rebuild(3).state_dict()
    own = model.state_dict()
    for k in a:
        if a[k].shape != b[k].shape and k in own:
            diff = [i for i, (x, y) in enumerate(zip(a[k].shape, b[k].shape)) if x != y]
            return int(own[k].shape[diff[0]])
    raise CheckpointError("cannot tell the model's class count: no tensor depends on it")


# --------------------------------------------------------------------------- locating the file
def resolve(source: str, arch: str, *, progress: bool | None = None) -> tuple[Fetched, ZooEntry | None]:
    """The local file for ``source`` (zoo name, ``imagenet``, path or URL) and its zoo entry."""
    entry = get_entry(arch)
    zoo: ZooEntry | None = None
    if source == IMAGENET:
        zoo = imagenet_entry(arch, entry.family)
    elif source in zoo_names():
        zoo = get_zoo_entry(source)
        if zoo.arch is None:
            raise CheckpointError(f"{source}: {zoo.note}; it cannot initialise {arch}")
        if zoo.arch != entry.name:
            raise CheckpointError(
                f"{source} holds {zoo.arch} weights, not {entry.name}; "
                f"use --arch {zoo.arch} or a checkpoint of {entry.name}"
            )
    elif not is_url(source) and not Path(source).expanduser().exists():
        raise UsageError(f"--pretrained {source!r}: not a zoo name (vidact models zoo), a file or a URL")
    target = zoo.url if zoo is not None else source
    fetched = fetch(target, sha256=zoo.sha256 if zoo is not None else None, progress=progress)
    return fetched, zoo


def convert_source(
    source: str,
    dst: str | Path,
    arch: str | None = None,
    *,
    origin: str = "auto",
    classes: list[str] | None = None,
    progress: bool | None = None,
):
    """``vidact models convert``: a file, a URL or a zoo name (downloaded once into the cache) -> a vidact
    checkpoint at ``dst``; a zoo name gives its architecture when ``arch`` is None."""
    from vidact.weights.convert import convert_checkpoint

    zoo = get_zoo_entry(source) if source in zoo_names() else None
    arch = arch or (zoo.arch if zoo is not None else None)
    if arch is None:
        raise UsageError("--arch is needed (which vidact architecture the checkpoint is for)")
    if zoo is None and not is_url(source):
        return convert_checkpoint(source, dst, arch, origin, classes)
    fetched, _ = resolve(source, arch, progress=progress)
    return convert_checkpoint(fetched.path, dst, arch, origin, classes)


# --------------------------------------------------------------------------- reading and converting
def _is_googlenet_2d(obj) -> bool:
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    return (
        isinstance(state, dict)
        and isinstance(state.get("conv1.conv.weight"), torch.Tensor)
        and state["conv1.conv.weight"].dim() == 4
        and "inception3a.branch1.conv.weight" in state
    )


def source_state(
    obj, kind: str, arch: str, model: nn.Module, path: Path
) -> tuple[dict[str, torch.Tensor], str, str, list[str]]:
    """``(state for model, format, source arch, identity-filled keys)`` from what :func:`read_weights` read."""
    entry = get_entry(arch)
    if kind == "torch" and isinstance(obj, dict) and obj.get("format") == VIDACT_FORMAT:
        if obj.get("arch") != entry.name:
            raise CheckpointError(
                f"{path}: a vidact checkpoint of {obj.get('arch')!r}, not {entry.name!r}; "
                f"pretrained weights must come from the same architecture"
            )
        return dict(obj["model"]), "vidact", entry.name, []
    if kind == "torch" and _is_googlenet_2d(obj):
        if entry.family != "i3d" or entry.name == "i3d-two-stream":
            raise CheckpointError(f"{path}: 2D GoogLeNet weights inflate into i3d or i3d-flow, not {entry.name}")
        from vidact.models.i3d import inflate_2d_weights

        state2d = obj.get("state_dict", obj)
        inflated = inflate_2d_weights(state2d, model)
        for key in ("fc.weight", "fc.bias"):  # inflate keeps the model's own classifier when shapes differ
            if key in inflated and tuple(state2d[key].shape) != tuple(inflated[key].shape):
                del inflated[key]
        return inflated, "torchvision-2d", "googlenet", []
    if entry.family not in ("x3d", "slowfast"):
        raise CheckpointError(
            f"{path}: not a vidact checkpoint of {entry.name} (foreign PyTorchVideo/PySlowFast "
            f"weights exist for the x3d and slowfast families only)"
        )
    from vidact.weights.convert import convert_state_dict, foreign_state

    try:
        obj, source = foreign_state(obj, kind, entry.name)
        state, report = convert_state_dict(obj, entry.name, source)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    fmt = "pyslowfast-caffe2" if kind == "caffe2" else report.source
    return state, fmt, entry.name, list(report.filled_identity)


# --------------------------------------------------------------------------- loading into the model
def load_into(
    model: nn.Module, state: dict[str, torch.Tensor], head: list[str], path: Path
) -> tuple[int, list[str], list[str]]:
    """Copy ``state`` into ``model``; the classifier (``head``) only when its shapes fit.

    Returns (tensors loaded, head keys replaced, keys left at init). A tensor other than the
    classifier missing or of another shape is a one-line CheckpointError.
    """
    own = model.state_dict()
    replaced = [k for k in head if k in own and (k not in state or tuple(state[k].shape) != tuple(own[k].shape))]
    left = [k for k in own if k not in state and k not in replaced]
    bad = [k for k in left if not k.endswith("num_batches_tracked")]
    if bad:
        raise CheckpointError(f"{path}: weights do not fit the model (missing key {bad[0]!r}; {len(bad)} missing)")
    for k, v in own.items():
        if k in state and k not in replaced and tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{path}: weights do not fit the model ({k!r} has shape "
                f"{tuple(state[k].shape)} in the checkpoint, {tuple(v.shape)} in the model)"
            )
    new = {k: (own[k] if k in replaced or k in left else state[k].to(own[k].dtype)) for k in own}
    model.load_state_dict(new)
    return len(own) - len(replaced) - len(left), replaced, left


def load_pretrained(
    model: nn.Module, source: str, arch: str, rebuild: Callable[[int], nn.Module], *, progress: bool | None = None
) -> PretrainedReport:
    """Initialise ``model`` (built as ``rebuild(n)``) from ``source``; returns what was loaded and replaced."""
    fetched, zoo = resolve(source, arch, progress=progress)
    from vidact.weights.convert import read_weights

    kind, obj = read_weights(fetched.path)
    state, fmt, source_arch, filled = source_state(obj, kind, arch, model, fetched.path)
    head = classifier_keys(model, rebuild)
    source_classes = next((int(state[k].shape[0]) for k in head if k in state), -1)
    loaded, replaced, left = load_into(model, state, head, fetched.path)
    loaded -= len([k for k in filled if k not in replaced])  # made here, not read from the file
    return PretrainedReport(
        source=source,
        path=str(fetched.path),
        sha256=fetched.sha256,
        format=fmt,
        source_arch=source_arch,
        source_classes=source_classes,
        loaded=loaded,
        replaced=replaced,
        left_at_init=left,
        identity_filled=filled,
        zoo=zoo.name if zoo is not None else None,
        from_cache=fetched.from_cache,
    )
