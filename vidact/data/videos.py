"""The videos a command reads: one file, every video under a folder, or the videos of a list."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from vidact.data.annotations import DatasetSplits, load_data
from vidact.errors import UsageError
from vidact.io.jobs import VideoJob, output_rel

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def find_videos(root: str | Path) -> list[Path]:
    """Every video file under ``root`` (sorted, hidden files and folders skipped)."""
    root = Path(root)
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in files if not f.startswith(".") and is_video_file(f)]
    return sorted(found)


def _jobs_from_paths(paths: Iterable[Path], src: Path) -> list[VideoJob]:
    jobs = [VideoJob(p, output_rel(p, src)) for p in paths]
    owner: dict[str, Path] = {}
    for job in jobs:
        if owner.setdefault(job.rel, job.src) != job.src:
            raise UsageError(f"{job.src} and {owner[job.rel]} would both be written to {job.rel}/; rename one")
    return jobs


def collect_jobs(src: str | Path, list_path: str | Path | None = None) -> tuple[list[VideoJob], DatasetSplits | None]:
    """The videos to extract: ``src`` itself, every video under it, or those listed in ``list_path``.

    Returns the jobs (sorted, so shards are deterministic) and the parsed list, if any.
    """
    src = Path(src)
    if not src.exists():
        raise UsageError(f"{src}: no such video file or folder")
    if list_path is not None:
        if not src.is_dir():
            raise UsageError(f"{src}: --list needs SRC to be the folder the listed videos are relative to")
        data = load_data(list_path, root=src)
        paths = sorted({Path(s.path) for samples in data.splits.values() for s in samples})
        return _jobs_from_paths(paths, src), data
    if src.is_file():
        if not is_video_file(src):
            raise UsageError(f"{src}: not a video file (expected one of .mp4 .avi .webm .mkv .mov ...)")
        return [VideoJob(src, output_rel(src, None))], None
    videos = find_videos(src)
    if not videos:
        raise UsageError(f"{src}: no video files found")
    return _jobs_from_paths(videos, src), None
