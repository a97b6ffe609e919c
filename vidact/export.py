"""Export a trained checkpoint for deployment: TorchScript (``.pt``) or ONNX (``.onnx``).

The exported model takes the checkpoint's clip shape (``N, C, T, H, W``; a list of the RGB and
flow clips for two-stream models) with a free batch size, and returns logits. Every export is
checked against the checkpoint's own model on a random clip before it is reported.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
from torch import nn

from vidact.errors import UsageError, VidactError
from vidact.io.atomic import atomic_path

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
TOLERANCE = 1e-4  # max |exported - checkpoint| logit difference accepted, relative to the logit scale


def example_clip(arch: str, inp, batch: int = 2):
    """A random clip of the checkpoint's input shape (a list of tensors for two-stream models)."""
    from vidact.models import get_entry

    if inp.modality == "rgb+flow":
        return get_entry(arch).example_input(batch, inp.frames, inp.size)
    return torch.randn(batch, inp.channels, inp.frames, inp.size, inp.size)


def load_for_export(checkpoint: str | Path) -> tuple[nn.Module, dict, object]:
    """The checkpoint's model in eval mode on the CPU, the checkpoint and its resolved input."""
    from vidact.runtime.build import model_from_checkpoint
    from vidact.runtime.checkpoint import load_checkpoint

    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    model, inp = model_from_checkpoint(ckpt, checkpoint, torch.device("cpu"))
    return model, ckpt, inp


def _as_args(x) -> tuple:
    return (x,)


def export_torchscript(model: nn.Module, example, dest: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning on shape checks that are constant for this input
        scripted = torch.jit.trace(model, _as_args(example), check_trace=False)
    with atomic_path(dest) as tmp:
        scripted.save(str(tmp))


def onnx_available() -> str | None:
    """None when ONNX export and checking work here, else the reason they do not."""
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (pip install onnx onnxruntime)"
    return None


def export_onnx(model: nn.Module, example, dest: Path, opset: int = 17) -> None:
    """Write ONNX with a free batch axis (torch's TorchScript-based exporter)."""
    reason = onnx_available()
    if reason:
        raise UsageError(f"--format onnx: {reason}")
    names = ["rgb", "flow"] if isinstance(example, (list, tuple)) else ["clip"]
    axes = {n: {0: "batch"} for n in [*names, "logits"]}
    try:
        with atomic_path(dest) as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's and the legacy exporter's notices
            torch.onnx.export(
                model,
                _as_args(example),
                str(tmp),
                input_names=names,
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
    except torch.onnx.errors.SymbolicValueError as exc:
        first = str(exc).split("[Caused by", 1)[0].strip().rstrip(".")
        raise UsageError(f"--format onnx: torch cannot export this model ({first}); use --format torchscript") from None


def run_exported(path: Path, fmt: str, example) -> torch.Tensor:
    """Logits of the exported file on ``example``."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch suggests torch.export; TorchScript still loads
            loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return loaded(example)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tensors = list(example) if isinstance(example, (list, tuple)) else [example]
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), tensors)}
    return torch.from_numpy(session.run(None, feeds)[0])


def export_checkpoint(
    checkpoint: str | Path, fmt: str = "torchscript", out: str | Path | None = None, seed: int = 0
) -> dict:
    """Export ``checkpoint`` to ``out`` (default: next to it, ``.pt``/``.onnx``); check equal logits."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    checkpoint = Path(checkpoint)
    dest = (
        Path(out)
        if out
        else checkpoint.with_name(checkpoint.stem + ("-scripted" if fmt == "torchscript" else "") + FORMATS[fmt])
    )
    if dest.resolve() == checkpoint.resolve():
        raise UsageError(f"{dest}: would overwrite the checkpoint; choose another -o")
    model, ckpt, inp = load_for_export(checkpoint)
    torch.manual_seed(seed)
    example = example_clip(ckpt["arch"], inp)
    with torch.no_grad():
        expected = model(example)
    (export_torchscript if fmt == "torchscript" else export_onnx)(model, example, dest)
    got = run_exported(dest, fmt, example)
    diff = float((got - expected).abs().max())
    scale = max(1.0, float(expected.abs().max()))
    if diff > TOLERANCE * scale:
        dest.unlink(missing_ok=True)
        raise VidactError(f"{dest}: exported model disagrees with {checkpoint} (max logit difference {diff:.3g})")
    shapes = [list(t.shape[1:]) for t in (example if isinstance(example, (list, tuple)) else [example])]
    return {
        "checkpoint": str(checkpoint),
        "out": str(dest),
        "format": fmt,
        "arch": ckpt["arch"],
        "input": shapes,
        "classes": len(ckpt["classes"]),
        "max_abs_diff": diff,
        "bytes": dest.stat().st_size,
    }
