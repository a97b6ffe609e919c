"""``vidact models convert``: PyTorchVideo / PySlowFast checkpoints -> vidact checkpoints."""

from __future__ import annotations

from pathlib import Path

import typer

from vidact.cli.common import JsonFlag, out_console, print_json, require_path


def convert(
    src: str = typer.Argument(
        ...,
        help="PyTorchVideo or PySlowFast checkpoint: a .pyth/.pt state dict or PySlowFast's Caffe2 .pkl, "
        "a URL, or a zoo name (vidact models zoo; downloaded once into the cache).",
    ),
    dst: Path = typer.Argument(..., help="Where to write the vidact checkpoint."),
    arch: str | None = typer.Option(
        None, "--arch", help="vidact architecture, e.g. x3d-m or slowfast-r50-8x8 (a zoo name gives its own)."
    ),
    source: str = typer.Option("auto", "--from", help="Origin of SRC: auto, pytorchvideo or pyslowfast."),
    classes: Path = typer.Option(None, "--classes", help="classes.txt naming the checkpoint's classes."),
    json_out: JsonFlag = False,
) -> None:
    """Convert a SlowFast/X3D checkpoint from PyTorchVideo or PySlowFast into a vidact checkpoint.

    Reads every format --pretrained reads. Keys are mapped and every shape is checked; a checkpoint
    that does not fit ARCH fails with one line naming the first missing, mismatched or unused key.
    The count is of tensors read from SRC; BatchNorm batch counters SRC lacks (a Caffe2 .pkl has
    none) are reported as left at their initial value 0.

    The checkpoint records the publisher's test protocol (vidact eval picks it).

    Example: vidact models convert SLOWFAST_8x8_R50.pkl sf.pt --arch slowfast-r50-8x8

    Example: vidact models convert pyslowfast-x3d-xs x3d_xs.pt --classes lists/k400/classes.txt
    """
    from vidact.weights.pretrained import convert_source

    names = None
    if classes is not None:
        from vidact.data.annotations import read_classes

        names = read_classes(require_path(classes, "classes file", kind="file"))
    report = convert_source(src, dst, arch, origin=source, classes=names)
    if json_out:
        print_json({**report.to_dict(), "src": src, "dst": dst})
    else:
        extra = f", {len(report.filled_identity)} identity BN tensors added" if report.filled_identity else ""
        if report.left_at_init:
            extra += f", {len(report.left_at_init)} BN batch counters not in the file left at 0"
        out_console.print(
            f"converted {report.source} {report.arch} ({report.tensors} tensors from the file, "
            f"{report.num_classes} classes{extra}) -> {dst}",
            highlight=False,
            soft_wrap=True,
        )
