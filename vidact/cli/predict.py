"""``vidact predict``: class probabilities for a video file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vidact.cli.common import DeviceChoice, JsonFlag, out_console, print_json


def predict(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by vidact train (RUN/best.pt)."),
    video: Path = typer.Argument(..., help="Video file to classify."),
    topk: int = typer.Option(5, "--topk", help="How many classes to show."),
    window: Optional[float] = typer.Option(None, "--window", help="Also score consecutive windows of this many seconds."),
    clips: int = typer.Option(3, "--clips", help="Uniform clips averaged for the whole-video score."),
    device: DeviceChoice = "auto",
    json_out: JsonFlag = False,
) -> None:
    """Top classes and probabilities for a video (and per time window with --window).

    Example: vidact predict runs/c3d/best.pt clip.mp4 --topk 3 --window 2
    """
    from vidact.predict import predict_video

    result = predict_video(checkpoint, video, topk=topk, window=window, clips=clips, device=device)
    if json_out:
        print_json(result)
        return
    top = ", ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in result["top"])
    out_console.print(f"{result['video']}: {top}")
    for row in result.get("windows", []):
        top = ", ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in row["top"])
        out_console.print(f"  {row['start']:7.2f}-{row['end']:7.2f} s  {top}")
