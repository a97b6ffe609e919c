"""``vidact flow``: TV-L1 optical flow extraction and colour-wheel previews."""

from __future__ import annotations

from pathlib import Path

import typer

from vidact.cli.common import JsonFlag, out_console, print_json, report_video_jobs

app = typer.Typer(help="TV-L1 optical flow: extract (PyTorch CPU/CUDA or OpenCV) and show.", no_args_is_help=True)


@app.command("extract")
def extract(
    src: Path = typer.Argument(..., help="A video, a frame folder, or a folder walked for videos/frame folders."),
    out: Path = typer.Argument(..., help="Output root: OUT/<relpath-without-ext>/flow_x_00001.jpg, flow.json."),
    list_path: Path = typer.Option(None, "--list", help="Annotation list or data set folder; paths relative to SRC."),
    backend: str = typer.Option("torch", "--backend", help="torch (batched, CPU or CUDA) or opencv (CPU reference)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (every visible GPU gets a worker)."),
    batch: int = typer.Option(None, "--batch", help="Frame pairs per solver call [default: 1 on CPU, 256 on CUDA]."),
    short_side: int = typer.Option(None, "--short-side", help="Resize so the shorter side has this many pixels."),
    bound: float = typer.Option(20.0, "--bound", help="JPEG quantisation bound B in pixels: [-B, B] -> [0, 255]."),
    fmt: str = typer.Option("jpg", "--format", help="jpg (flow_x/flow_y pairs, 8-bit) or npz (float16)."),
    quality: int = typer.Option(95, "--quality", help="JPEG quality (1-100)."),
    workers: int = typer.Option(
        None,
        "--workers",
        "-j",
        help="Parallel CPU worker processes, one torch thread "
        "each [default: the usable cores on CPU, 1 per GPU on CUDA].",
    ),
    shard: str = typer.Option(None, "--shard", help="Process only slice i of n (i/n, 0 <= i < n)."),
    compile_step: bool = typer.Option(
        None,
        "--compile/--no-compile",
        help="Compile the torch solver's step "
        "(torch.compile) or run it eagerly [default: compile when the job is big "
        "enough to win back the compile time; always on CUDA].",
    ),
    json_out: JsonFlag = False,
) -> None:
    """Extract TV-L1 flow of every video; re-running skips finished videos.

    Each output folder gets flow.json (algorithm, backend, kernel path and whether it ran compiled,
    parameters, bound, index base 1, prefix, frame count, version). Failed inputs are listed in
    OUT/failures.txt and make the exit code 1.

    Example: vidact flow extract data/synth/videos flow/ --short-side 128 --workers 2
    """
    from vidact.errors import UsageError
    from vidact.flow.extract import extract_flow
    from vidact.flow.options import FlowOptions
    from vidact.io.shard import parse_shard

    if not 1 <= quality <= 100:
        raise UsageError(f"--quality must be in 1..100, got {quality}")
    options = FlowOptions(
        backend=backend,
        device=device,
        batch=batch,
        short_side=short_side,
        bound=bound,
        fmt=fmt,
        quality=quality,
        compile="auto" if compile_step is None else compile_step,
    )
    result = extract_flow(src, out, list_path, options, workers=workers, shard=parse_shard(shard))
    report_video_jobs(result, out, json_out, verb="done")


@app.command("show")
def show(
    src: Path = typer.Argument(..., help="A flow folder (flow_x_*.jpg or flow.npz) or a video."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .png/.jpg (grid of pairs) or .mp4."),
    max_pairs: int = typer.Option(8, "--max-pairs", help="Show at most this many flow fields."),
    columns: int = typer.Option(4, "--columns", help="Grid columns for an image."),
    backend: str = typer.Option("torch", "--backend", help="Backend when SRC is a video: torch or opencv."),
    json_out: JsonFlag = False,
) -> None:
    """Render flow with the Middlebury colour wheel (hue = direction, saturation = magnitude).

    Example: vidact flow show flow/clip_0001 -o clip_flow.png
    """
    from vidact.flow.visualize import show_flow

    result = show_flow(src, out, max_pairs=max_pairs, columns=columns, backend=backend)
    if json_out:
        print_json(result)
    else:
        out_console.print(
            f"wrote {result['pairs']} flow fields ({result['width']}x{result['height']}, "
            f"max {result['max_flow']:.2f} px) to {out}",
            highlight=False,
            soft_wrap=True,
        )
