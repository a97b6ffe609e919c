"""Batch prediction: every video of a file, folder or list -> one row each (CSV or JSON lines), and features.

Each video is scored exactly as :func:`vidact.predict.video.predict_video` scores it (the model is loaded
once). Unreadable videos are listed in ``failures.txt`` next to the output and the rest go on.
With ``features``, the pooled pre-logit features (``forward_head(x, pre_logits=True)``, the mean over
the video's clips) are saved as ``.npz``: ``paths`` (N,) and ``features`` (N, num_features) float32.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidact.data.videos import VIDEO_EXTENSIONS, find_videos
from vidact.errors import UsageError, VideoDecodeError
from vidact.io.atomic import atomic_path, atomic_write_text
from vidact.io.progress import make_progress

LIST_SUFFIXES = (".txt", ".lst", ".list", ".csv")
OUTPUT_SUFFIXES = (".csv", ".jsonl")
FAILURES = "failures.txt"


@dataclass
class BatchResult:
    rows: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    out: str | None = None
    features: str | None = None
    failures_file: str | None = None

    def to_dict(self) -> dict:
        return {
            "videos": len(self.rows) + len(self.failures),
            "predicted": len(self.rows),
            "failed": len(self.failures),
            "out": self.out,
            "features": self.features,
            "failures_file": self.failures_file,
        }


def collect_videos(src: str | Path) -> list[Path]:
    """A video file, every video under a folder (sorted, hidden files skipped, as frame and flow
    extraction walk folders), or the paths of a list (one per line or a CSV with a ``path`` column;
    relative to the list's folder)."""
    src = Path(src)
    if src.is_dir():
        videos = find_videos(src)
        if not videos:
            raise UsageError(f"{src}: no video files ({', '.join(VIDEO_EXTENSIONS[:4])}, ...) in this folder")
        return videos
    if not src.is_file():
        raise UsageError(f"{src}: no such video, folder or list")
    if src.suffix.lower() not in LIST_SUFFIXES:
        return [src]
    text = src.read_text(encoding="utf-8")
    if src.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if "path" not in (reader.fieldnames or []):
            raise UsageError(f"{src}: a CSV list needs a 'path' column")
        names = [row["path"] for row in reader]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not names:
        raise UsageError(f"{src}: the list names no videos")
    return [p if p.is_absolute() else src.parent / p for p in map(Path, names)]


def _check_outputs(out: Path | None, features: Path | None) -> None:
    if out is not None and out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(f"{out}: the output must end in .csv or .jsonl")
    if features is not None and features.suffix.lower() != ".npz":
        raise UsageError(f"{features}: features are written as .npz")


def csv_text(rows: list[dict], topk: int) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path"] + [f"{what}_{i + 1}" for i in range(topk) for what in ("class", "prob")])
    for r in rows:
        cells = [r["video"]]
        for t in r["top"]:
            cells += [t["class"], f"{t['prob']:.6f}"]
        w.writerow(cells)
    return buf.getvalue()


def predict_many(
    checkpoint: str | Path,
    src: str | Path,
    *,
    out: str | Path | None = None,
    topk: int = 5,
    clips: int = 3,
    device: str = "auto",
    features: str | Path | None = None,
    progress: bool | None = None,
) -> BatchResult:
    """Score every video of ``src``; write ``out`` (.csv/.jsonl), ``features`` (.npz) and failures.txt."""
    from vidact.predict.predictor import load_predictor
    from vidact.predict.video import predict_with

    out = Path(out) if out is not None else None
    features = Path(features) if features is not None else None
    _check_outputs(out, features)
    videos = collect_videos(src)
    predictor = load_predictor(checkpoint, device)
    result = BatchResult()
    feats: list[np.ndarray] = []
    with make_progress(disable=None if progress is not False else True) as bar:
        task = bar.add_task("predict", total=len(videos), status="")
        for video in videos:
            try:
                row = predict_with(predictor, video, topk=topk, clips=clips, features=features is not None)
            except VideoDecodeError as exc:
                result.failures.append((str(video), exc.reason))
            else:
                if features is not None:
                    feats.append(row.pop("features"))
                result.rows.append(row)
            bar.update(task, advance=1, status=video.name)
    if out is not None:
        text = (
            csv_text(result.rows, min(topk, len(predictor.classes)))
            if out.suffix.lower() == ".csv"
            else "".join(json.dumps({"video": r["video"], "top": r["top"]}) + "\n" for r in result.rows)
        )
        atomic_write_text(out, text)
        result.out = str(out)
    if features is not None:
        with atomic_path(features) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                paths=np.array([r["video"] for r in result.rows]),
                features=np.stack(feats).astype(np.float32) if feats else np.zeros((0, 0), np.float32),
            )
        result.features = str(features)
    if result.failures:
        where = (out or features or Path(FAILURES)).parent / FAILURES
        atomic_write_text(where, "".join(f"{p}: {reason}\n" for p, reason in result.failures))
        result.failures_file = str(where)
    return result
