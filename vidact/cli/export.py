"""``vidact export``: a checkpoint as TorchScript or ONNX, checked for equal logits."""

from __future__ import annotations

from pathlib import Path

import typer

from vidact.cli.common import JsonFlag, out_console, print_json, require_path


def export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by vidact train (RUN/best.pt)."),
    fmt: str = typer.Option("torchscript", "--format", "-f", help="torchscript (.pt) or onnx (.onnx)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: next to the checkpoint)."),
    json_out: JsonFlag = False,
) -> None:
    """Export a trained model for deployment; the export's logits are checked against the checkpoint's.

    Example: vidact export runs/c3d/best.pt --format onnx -o c3d.onnx
    """
    from vidact.export import export_checkpoint

    require_path(checkpoint, "checkpoint", kind="file")
    result = export_checkpoint(checkpoint, fmt, out)
    if json_out:
        print_json(result)
        return
    out_console.print(
        f"exported {result['arch']} to {result['out']} ({result['format']}, input "
        f"{' + '.join('x'.join(map(str, s)) for s in result['input'])} per clip, "
        f"max logit difference {result['max_abs_diff']:.2g})",
        highlight=False,
        soft_wrap=True,
    )
