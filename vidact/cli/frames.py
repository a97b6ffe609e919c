"""``vidact frames``: decode videos into MMAction2-style frame folders."""

from __future__ import annotations

from pathlib import Path

import typer

from vidact.cli.common import JsonFlag, report_video_jobs

app = typer.Typer(help="Decode videos into frame folders (img_00001.jpg, ...).", no_args_is_help=True)


@app.command("extract")
def extract(
    src: Path = typer.Argument(..., help="A video file, or a folder walked for videos (or holding --list's videos)."),
    out: Path = typer.Argument(..., help="Output root: OUT/<relpath-without-ext>/img_00001.jpg."),
    list_path: Path = typer.Option(None, "--list", help="Annotation list or data set folder; paths relative to SRC."),
    fps: float = typer.Option(None, "--fps", help="Resample to this frame rate (nearest source frame)."),
    short_side: int = typer.Option(None, "--short-side", help="Resize so the shorter side has this many pixels."),
    workers: int = typer.Option(
        None, "--workers", "-j", help="Parallel worker processes (default: one per usable core)."
    ),
    quality: int = typer.Option(95, "--quality", help="JPEG quality (1-100)."),
    shard: str = typer.Option(
        None, "--shard", help="Process only slice i of n (i/n, 0 <= i < n), e.g. for SLURM arrays."
    ),
    json_out: JsonFlag = False,
) -> None:
    """Extract JPEG frames of every video; re-running skips finished videos.

    Failed videos are listed in OUT/failures.txt (path<TAB>reason) and make the exit code 1.

    Example: vidact frames extract data/synth/videos frames/ --short-side 128 --workers 2
    """
    from vidact.data.extract_frames import FrameOptions, extract_frames
    from vidact.io.shard import parse_shard

    options = FrameOptions(fps=fps, short_side=short_side, quality=quality)
    result = extract_frames(src, out, list_path, options, workers=workers, shard=parse_shard(shard))
    report_video_jobs(result, out, json_out, verb="extracted")
