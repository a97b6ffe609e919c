"""Decode videos into frame folders: ``OUT/<relpath-without-ext>/img_00001.jpg`` (``vidact frames extract``).

Each video is one job of :func:`vidact.io.jobs.run_video_jobs` (resumable, atomic
folder per video, failures listed, never fatal), by default in one worker process per usable
core, each decoding with its share of the cores. Options: resample to a frame rate
(nearest source frame for each output timestamp, constant source frame rate assumed),
resize the short side (even sizes), JPEG quality. A frame is decoded, scaled and converted to
OpenCV's BGR order in one swscale pass and JPEG-encoded once (``benchmarks/frames.py`` times it
against the ffmpeg CLI).

When the videos come from a labelled list (``--list``), the output folder also becomes
a data set folder of frame folders: ``classes.txt`` and ``<split>.csv`` with
``path,label,num_frames``, readable by :func:`vidact.data.annotations.load_dataset_dir`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidact.data.annotations import DatasetSplits, Sample
from vidact.data.index import Index, write_dataset_dir
from vidact.data.videos import collect_jobs
from vidact.errors import UsageError, VideoDecodeError
from vidact.io.cpu import threads_per_process, usable_cores
from vidact.io.frames import count_frames, write_frames
from vidact.io.jobs import JobReport, VideoJob, failures_name, run_video_jobs
from vidact.io.shard import take_shard
from vidact.io.video import TAIL_SLACK, decoder_threads, iter_frames, probe, set_decoder_threads, short_side_size


@dataclass(frozen=True)
class FrameOptions:
    """How each video becomes frames."""

    fps: float | None = None  # None keeps every source frame
    short_side: int | None = None  # None keeps the source size
    quality: int = 95

    def __post_init__(self):
        if self.fps is not None and not self.fps > 0:
            raise UsageError(f"--fps must be > 0, got {self.fps}")
        if self.short_side is not None and self.short_side < 2:
            raise UsageError(f"--short-side must be >= 2, got {self.short_side}")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality must be in 1..100, got {self.quality}")


def resample(frames: Iterable[np.ndarray], src_fps: float, dst_fps: float) -> Iterator[np.ndarray]:
    """Frames at ``dst_fps``: for output time ``k / dst_fps`` the nearest source frame ``i / src_fps``.

    Output times run while they fall within the source's span (up to half a source frame
    after the last frame), so 16 frames at 25 fps give 8 frames at 12.5 fps; a higher
    ``dst_fps`` repeats frames.
    """
    k = 0
    for i, frame in enumerate(frames):
        # frame i is the nearest for the output times in ((i - 0.5) / src, (i + 0.5) / src]; ties go earlier
        while k / dst_fps <= (i + 0.5) / src_fps + 1e-9:
            yield frame
            k += 1


def extract_video(src: Path, dest: Path, options: FrameOptions = FrameOptions()) -> int:
    """Write the frames of video ``src`` into folder ``dest``; returns the number written."""
    info = probe(src, count_frames=False)
    size = (
        short_side_size(width=info.width, height=info.height, short_side=options.short_side, even=True)
        if options.short_side
        else None
    )
    decoded = 0

    def counted(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal decoded
        for frame in frames:
            decoded += 1
            yield frame

    frames = counted(iter_frames(src, size=size, pixel_format="bgr24"))
    if options.fps is not None:
        if not info.fps:
            raise VideoDecodeError(src, "unknown source frame rate; cannot resample to --fps")
        frames = resample(frames, info.fps, options.fps)
    written = write_frames(dest, frames, quality=options.quality, bgr=True)
    if decoded == 0:
        raise VideoDecodeError(src, "no decodable video frames")
    if info.num_frames > decoded + TAIL_SLACK:
        raise VideoDecodeError(src, f"truncated: decoded {decoded} of {info.num_frames} frames")
    return written


def _extract_with_threads(src: Path, dest: Path, options: FrameOptions, threads: int) -> int:
    """:func:`extract_video` decoding with ``threads`` decoder threads (a worker's share of the cores)."""
    set_decoder_threads(threads)
    return extract_video(src, dest, options)


def _frames_dataset(data: DatasetSplits, jobs: list[VideoJob], out: Path, report: JobReport) -> dict:
    """Write ``classes.txt`` + ``<split>.csv`` for the finished frame folders of a labelled list."""
    finished = set(report.done) | set(report.skipped)
    rel_of = {str(job.src): job.rel for job in jobs}
    index = Index(list(data.classes), {}, horizontal_flip=data.horizontal_flip)
    for split, samples in data.splits.items():
        rows = []
        for s in samples:
            rel = rel_of.get(str(Path(s.path)))
            if rel in finished:
                folder = out / rel
                rows.append(Sample(str(folder.absolute()), s.label, count_frames(folder)))
        index.splits[split] = rows
    return write_dataset_dir(index, out)


def extract_frames(
    src: str | Path,
    out: str | Path,
    list_path: str | Path | None = None,
    options: FrameOptions = FrameOptions(),
    workers: int | None = None,
    shard: tuple[int, int] = (0, 1),
) -> dict:
    """Extract the frames of every selected video into ``out``; returns the job summary.

    ``workers`` (default: one per usable core, no more than there are videos) worker processes,
    each decoding with the cores divided among them. With ``shard=(i, n)`` only the i-th of n
    deterministic slices is processed and the failures go to ``failures.shard-i-of-n.txt``; the
    data set lists (labelled ``--list`` only) are written by unsharded runs, which skip the
    folders the shards finished.
    """
    out = Path(out)
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    jobs, data = collect_jobs(src, list_path)
    todo = take_shard(jobs, shard)
    cores = usable_cores()
    workers = workers or max(1, min(cores, len(todo)))
    threads = threads_per_process(cores, workers)
    previous = decoder_threads()
    try:
        process = functools.partial(_extract_with_threads, options=options, threads=threads)
        report = run_video_jobs(
            todo, out, process, workers=workers, description="frames", failures_file=failures_name(shard)
        )
    finally:
        set_decoder_threads(previous)  # one worker runs the jobs in this process
    summary = {
        **report.to_dict(),
        "out": str(out),
        "failures_file": str(out / failures_name(shard)) if report.failed else None,
        "workers": workers,
        "decoder_threads": threads,
    }
    if data is not None and shard[1] == 1:
        summary["dataset"] = _frames_dataset(data, jobs, out, report)
    return summary
