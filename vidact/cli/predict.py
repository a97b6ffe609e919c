"""``vidact predict``: class probabilities for a video file, for every video of a folder or list, or
per sliding window of a live or long stream."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from vidact.cli.common import DeviceChoice, JsonFlag, err_console, finish, out_console, print_json


def _top_text(top: list[dict]) -> str:
    return ", ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in top)


def _json_line(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _input_options(pairs: list[str]) -> dict[str, str]:
    from vidact.errors import UsageError

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--input-option takes KEY=VALUE (an FFmpeg input option), got {pair!r}")
        options[key] = value
    return options


def _stream(checkpoint, source, *, window, hop, topk, device, protocol, timeout, live, options, json_out) -> None:
    """Score a stream window by window: JSON lines, or a live table on a terminal."""
    from vidact.cli.stream_view import LiveTable
    from vidact.io.stream import parse_source
    from vidact.predict.predictor import load_predictor
    from vidact.predict.stream import predict_windows

    predictor = load_predictor(checkpoint, device, protocol)
    src = parse_source(source, options)
    lines = json_out or not out_console.is_terminal

    def note(text: str) -> None:
        err_console.print(f"warning: {text}", highlight=False, markup=False, soft_wrap=True)

    if lines:
        report = predict_windows(
            predictor, src, window=window, hop=hop, topk=topk, timeout=timeout, live=live,
            on_window=lambda row: _json_line({"event": "window", **row}), on_note=note,
        )  # fmt: skip
        _json_line({"event": "end", **report.to_dict()})
    else:
        with LiveTable(out_console, source, topk) as table:
            report = predict_windows(
                predictor, src, window=window, hop=hop, topk=topk, timeout=timeout, live=live,
                on_window=table.add, on_note=note,
            )  # fmt: skip
        out_console.print(LiveTable.summary(report), highlight=False, markup=False, soft_wrap=True)
    if report.exit_code:
        err_console.print(
            f"warning: {report.ended}; the {report.windows} windows scored so far are kept",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    finish(report.exit_code)


def predict(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by vidact train (RUN/best.pt)."),
    video: str = typer.Argument(
        ...,
        help="A video file, a folder of videos (walked) or a list (.txt/.csv); or a stream: a URL "
        "(rtsp, rtmp, http(s), udp, tcp, srt), - (standard input), /dev/video0, lavfi:testsrc=...",
    ),
    topk: int = typer.Option(5, "--topk", help="How many classes to show."),
    window: float | None = typer.Option(
        None, "--window", help="Score windows of this many seconds (streams: default the model's clip span at 30 fps)."
    ),
    hop: float | None = typer.Option(None, "--hop", help="Seconds between window starts (default: --window)."),
    clips: int = typer.Option(3, "--clips", help="Test clips averaged for the whole-video score."),
    protocol: str = typer.Option(
        "auto",
        "--protocol",
        help="Test view: auto (the checkpoint's zoo row or recipe), vidact, pyslowfast, pytorchvideo.",
    ),
    device: DeviceChoice = "auto",
    out: Path | None = typer.Option(None, "--out", "-o", help="Write one row per video: preds.csv or preds.jsonl."),
    features: Path | None = typer.Option(None, "--features", help="Save pooled pre-logit features (.npz)."),
    timeout: float = typer.Option(
        10.0, "--timeout", help="Streams: seconds without data before a source counts as cut."
    ),
    live: bool | None = typer.Option(
        None,
        "--live/--no-live",
        help="Streams: drop frames when scoring falls behind (default: on for cameras, rtsp, rtmp, rtp, udp, srt).",
    ),
    input_option: list[str] = typer.Option(
        [], "--input-option", help="Streams: an FFmpeg input option KEY=VALUE (repeatable), e.g. rtsp_transport=tcp."
    ),
    json_out: JsonFlag = False,
) -> None:
    """Top classes and probabilities for a video (and per time window with --window), for many, or for a stream.

    With a folder or a list, or with -o / --features, every video gets one row; unreadable videos
    are listed in failures.txt next to the output (exit 1).

    A stream (URL, -, capture device, lavfi:...) is scored window by window as its frames arrive:
    one JSON line per window, then an "end" line with the window latency and windows per second
    (a live table on a terminal). The end of the stream exits 0; a stream that breaks off keeps the
    windows scored so far, says why in one line and exits 1.

    Example: vidact predict runs/c3d/best.pt clip.mp4 --topk 3 --window 2

    Example: ffmpeg -i rtsp://cam/live -c copy -f mpegts - | vidact predict x3d_xs.pt - --window 1.6 --hop 0.5

    Batch: vidact predict runs/c3d/best.pt videos/ -o preds.csv --features feats.npz
    """
    from vidact.errors import UsageError
    from vidact.io.stream import is_stream
    from vidact.predict.batch import LIST_SUFFIXES

    options = _input_options(input_option)
    if is_stream(video):
        if out is not None or features is not None:
            raise UsageError("-o and --features write one row per video file; a stream is scored per window")
        _stream(
            checkpoint, video, window=window, hop=hop, topk=topk, device=device, protocol=protocol,
            timeout=timeout, live=live, options=options, json_out=json_out,
        )  # fmt: skip
        return
    path = Path(video)
    single = not path.is_dir() and path.suffix.lower() not in LIST_SUFFIXES
    if single and out is None and features is None:
        from vidact.predict.video import predict_video

        result = predict_video(
            checkpoint, path, topk=topk, window=window, hop=hop, clips=clips, device=device, protocol=protocol
        )
        if json_out:
            print_json(result)
            return
        out_console.print(f"{result['video']}: {_top_text(result['top'])}", highlight=False, markup=False)
        for row in result.get("windows", []):
            out_console.print(f"  {row['start']:7.2f}-{row['end']:7.2f} s  {_top_text(row['top'])}", highlight=False)
        return
    if window is not None or hop is not None:
        raise UsageError("--window scores one video; drop it for a folder, a list, -o or --features")
    from vidact.predict.batch import predict_many

    result = predict_many(checkpoint, path, out=out, topk=topk, clips=clips, device=device, features=features)
    if json_out:
        print_json(
            {
                **result.to_dict(),
                "rows": [{"video": r["video"], "top": r["top"]} for r in result.rows],
                "failures": [{"video": p, "reason": r} for p, r in result.failures],
            }
        )
    else:
        if out is None:
            for r in result.rows:
                out_console.print(f"{r['video']}: {_top_text(r['top'])}", highlight=False, markup=False)
        wrote = ", ".join(p for p in (result.out, result.features) if p)
        out_console.print(
            f"predicted {len(result.rows)} videos" + (f" -> {wrote}" if wrote else ""), highlight=False, markup=False
        )
    for path, reason in result.failures:
        err_console.print(f"warning: {path}: {reason}", highlight=False, markup=False, soft_wrap=True)
    if result.failures:
        err_console.print(
            f"{len(result.failures)} unreadable videos listed in {result.failures_file}", highlight=False, markup=False
        )
    finish(1 if result.failures else 0)
