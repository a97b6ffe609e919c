"""``vidact models convert``: PyTorchVideo / PySlowFast checkpoints -> vidact checkpoints."""

from __future__ import annotations

from pathlib import Path

import typer

from vidact.cli.common import JsonFlag, out_console, print_json, require_path


def convert(
    src: Path = typer.Argument(..., help="PyTorchVideo or PySlowFast checkpoint (.pyth/.pt/.pkl state dict)."),
    dst: Path = typer.Argument(..., help="Where to write the vidact checkpoint."),
    arch: str = typer.Option(..., "--arch", help="vidact architecture, e.g. x3d-m or slowfast-r50-8x8."),
    source: str = typer.Option("auto", "--from", help="Origin of SRC: auto, pytorchvideo or pyslowfast."),
    classes: Path = typer.Option(None, "--classes", help="classes.txt naming the checkpoint's classes."),
    json_out: JsonFlag = False,
) -> None:
    """Convert a SlowFast/X3D checkpoint from PyTorchVideo or PySlowFast into a vidact checkpoint.

    Keys are mapped and every shape is checked; a checkpoint that does not fit ARCH fails with
    one line naming the first missing, mismatched or unused key.

    Example: vidact models convert SLOWFAST_8x8_R50.pyth sf.pt --arch slowfast-r50-8x8
    """
    from vidact.weights.convert import convert_checkpoint

    require_path(src, "checkpoint", kind="file")
    names = None
    if classes is not None:
        from vidact.data.annotations import read_classes

        names = read_classes(require_path(classes, "classes file", kind="file"))
    report = convert_checkpoint(src, dst, arch, source=source, classes=names)
    if json_out:
        print_json({**report.to_dict(), "src": src, "dst": dst})
    else:
        filled = f", {len(report.filled_identity)} identity BN tensors added" if report.filled_identity else ""
        out_console.print(
            f"converted {report.source} {report.arch} ({report.tensors} tensors, "
            f"{report.num_classes} classes{filled}) -> {dst}",
            highlight=False,
        )
