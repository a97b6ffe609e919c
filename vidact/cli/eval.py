"""``vidact eval``: multi-view testing of a checkpoint, and ``vidact eval fuse`` for late fusion."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from typer.core import TyperGroup

from vidact.cli.common import DeviceChoice, JsonFlag, err_console, finish, out_console, print_json

DEFAULT_COMMAND = "checkpoint"


class EvalGroup(TyperGroup):
    """``vidact eval CKPT ...`` runs the default command; ``vidact eval fuse ...`` the subcommand."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=EvalGroup,
    no_args_is_help=True,
    help="Evaluate a checkpoint (vidact eval CKPT ...) or fuse saved scores (vidact eval fuse ...).\n\n"
    "Example: vidact eval runs/c3d/best.pt --data data/synth --clips 10 --crops 3\n\n"
    "Example: vidact eval fuse rgb.npz flow.npz --weights 1,1.5",
)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


@app.command(DEFAULT_COMMAND)
def evaluate(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by vidact train (RUN/best.pt)."),
    data: Path | None = typer.Option(None, "--data", help="Data set folder (default: the one it was trained on)."),
    split: str = typer.Option("val", "--split", help="Which split to test: train, val or test."),
    protocol: str = typer.Option(
        "auto",
        "--protocol",
        help="Test views: vidact, pyslowfast or pytorchvideo (the publishers' 10x3 test), or auto "
        "(the checkpoint's zoo row or recipe, else vidact).",
    ),
    clips: int | None = typer.Option(None, "--clips", help="Clips per video (K); default: the protocol's."),
    crops: int | None = typer.Option(
        None, "--crops", help="Spatial crops per clip (C): 1 centre or 3 along the long side; default: the protocol's."
    ),
    crop_size: int = typer.Option(
        0, "--crop-size", help="Test crop (default: the protocol's, else the training crop)."
    ),
    short_side: int = typer.Option(0, "--short-side", help="Short side before cropping (default: the crop)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Views per batch."),
    workers: int = typer.Option(
        -1, "--workers", help="Data loader worker processes (default -1: one per usable core)."
    ),
    device: DeviceChoice = "auto",
    aggregation: str = typer.Option(
        "softmax-mean", "--aggregation", help="softmax-mean (mean of per-view probabilities) or logit-mean."
    ),
    save_scores: Path | None = typer.Option(None, "--save-scores", help="Write per-view logits to this .npz."),
    out: Path | None = typer.Option(None, "--out", help="Folder for confusion.png (default: the checkpoint's)."),
    json_out: JsonFlag = False,
) -> None:
    """Multi-view test (K clips x C crops, softmax-then-mean): clip/video top-1/top-5, per-class table.

    --protocol pyslowfast / pytorchvideo place the views as the publishers' test loaders do (10 clips
    x 3 crops at the crop the zoo row was published at); a converted zoo checkpoint picks its own.

    Example: vidact eval runs/c3d/best.pt --data data/synth --clips 10 --crops 3 --save-scores c3d.npz

    Example: vidact eval x3d_xs.pt --data kinetics400/ --protocol pyslowfast
    """
    from vidact.evaluate.multiview import evaluate_checkpoint

    report = evaluate_checkpoint(
        checkpoint,
        data,
        split=split,
        protocol=protocol,
        clips=clips,
        crops=crops,
        crop_size=crop_size,
        short_side=short_side,
        batch_size=batch_size,
        workers=workers,
        device=device,
        method=aggregation,
        out_dir=out,
        save_scores=save_scores,
    )
    failed = report["unreadable_videos"]
    if failed:  # partial failure: each unreadable video was named above and left out of every metric
        err_console.print(
            f"warning: {failed} unreadable videos left out of the metrics; "
            f"vidact data check {report['data']} lists every problem",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if json_out:
        print_json(report)
        finish(1 if failed else 0)
        return
    test = report["protocol"]
    table = Table(
        title=f"{report['arch']} on {report['split']} ({report['videos']} videos, "
        f"{report['clips']}x{report['crops']} views at {test['crop_size']} px, {test['name']} protocol, "
        f"{report['aggregation']})"
    )
    for col in ("class", "support", "correct", "accuracy"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in report["per_class"]:
        table.add_row(row["class"], str(row["support"]), str(row["correct"]), _pct(row["accuracy"]))
    out_console.print(table)
    out_console.print(
        f"clip top-1 {_pct(report['clip_top1'])}  top-5 {_pct(report['clip_top5'])} | "
        f"video top-1 {_pct(report['video_top1'])}  top-5 {_pct(report['video_top5'])} | "
        f"mean class accuracy {_pct(report['mean_class_accuracy'])}"
    )
    out_console.print(
        f"confusion matrix: {report['confusion_png']}"
        + (f"; scores: {report['scores']}" if report.get("scores") else "")
    )
    finish(1 if failed else 0)


@app.command("fuse")
def fuse(
    scores: list[Path] = typer.Argument(..., help="Two or more .npz files from vidact eval --save-scores."),
    weights: str | None = typer.Option(None, "--weights", help="Comma-separated weights, e.g. 1,1.5."),
    aggregation: str = typer.Option("softmax-mean", "--aggregation", help="softmax-mean or logit-mean."),
    json_out: JsonFlag = False,
) -> None:
    """Late fusion (two-stream): weighted mean of each file's video scores.

    Example: vidact eval fuse rgb.npz flow.npz --weights 1,1.5
    """
    from vidact.evaluate.fuse import fuse_files

    result = fuse_files(scores, weights, aggregation)
    if json_out:
        print_json(result)
        return
    table = Table(title=f"late fusion of {result['videos']} videos ({result['aggregation']})")
    for col in ("scores", "weight", "video top-1", "video top-5"):
        table.add_column(col, justify="left" if col == "scores" else "right")
    for row, w in zip(result["inputs"], result["weights"]):
        table.add_row(row["scores"], f"{w:g}", _pct(row["video_top1"]), _pct(row["video_top5"]))
    table.add_row("fused", "", _pct(result["fused_top1"]), _pct(result["fused_top5"]))
    out_console.print(table)
