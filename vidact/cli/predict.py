"""``vidact predict``: class probabilities for a video file, or for every video of a folder or list."""

from __future__ import annotations

from pathlib import Path

import typer

from vidact.cli.common import DeviceChoice, JsonFlag, err_console, finish, out_console, print_json


def _top_text(top: list[dict]) -> str:
    return ", ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in top)


def predict(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by vidact train (RUN/best.pt)."),
    video: Path = typer.Argument(..., help="A video file, a folder of videos (walked) or a list (.txt/.csv)."),
    topk: int = typer.Option(5, "--topk", help="How many classes to show."),
    window: float | None = typer.Option(None, "--window", help="Also score consecutive windows of this many seconds."),
    clips: int = typer.Option(3, "--clips", help="Uniform clips averaged for the whole-video score."),
    device: DeviceChoice = "auto",
    out: Path | None = typer.Option(None, "--out", "-o", help="Write one row per video: preds.csv or preds.jsonl."),
    features: Path | None = typer.Option(None, "--features", help="Save pooled pre-logit features (.npz)."),
    json_out: JsonFlag = False,
) -> None:
    """Top classes and probabilities for a video (and per time window with --window), or for many.

    With a folder or a list, or with -o / --features, every video gets one row; unreadable videos
    are listed in failures.txt next to the output (exit 1).

    Example: vidact predict runs/c3d/best.pt clip.mp4 --topk 3 --window 2

    Batch: vidact predict runs/c3d/best.pt videos/ -o preds.csv --features feats.npz
    """
    from vidact.errors import UsageError
    from vidact.predict.batch import LIST_SUFFIXES

    single = not video.is_dir() and video.suffix.lower() not in LIST_SUFFIXES
    if single and out is None and features is None:
        from vidact.predict.video import predict_video

        result = predict_video(checkpoint, video, topk=topk, window=window, clips=clips, device=device)
        if json_out:
            print_json(result)
            return
        out_console.print(f"{result['video']}: {_top_text(result['top'])}")
        for row in result.get("windows", []):
            out_console.print(f"  {row['start']:7.2f}-{row['end']:7.2f} s  {_top_text(row['top'])}")
        return
    if window is not None:
        raise UsageError("--window scores one video; drop it for a folder, a list, -o or --features")
    from vidact.predict.batch import predict_many

    result = predict_many(checkpoint, video, out=out, topk=topk, clips=clips, device=device, features=features)
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
