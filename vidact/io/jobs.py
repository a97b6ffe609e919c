"""Run one job per video into ``OUT/<relpath-without-ext>/``: resumable, atomic, fault tolerant.

Used by frame and flow extraction. A video's folder appears only when its job has
finished (staging folder + rename), so re-running skips finished videos and a killed
run leaves no half folders. Failures are collected, never fatal, and written to
``OUT/failures.txt`` as ``path<TAB>reason``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vidact.errors import DiskFullError, VidactError, first_line
from vidact.io.atomic import atomic_dir, atomic_write_text, tmp_dir_for
from vidact.io.progress import make_progress

FAILURES_FILE = "failures.txt"


@dataclass(frozen=True)
class VideoJob:
    """One input video (or frame folder) and the output folder it produces."""

    src: Path
    rel: str  # output folder relative to OUT (relative path without extension)


@dataclass
class JobReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def to_dict(self) -> dict:
        return {
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "failures": [{"path": p, "reason": r} for p, r in self.failed],
        }


def failures_name(shard: tuple[int, int] = (0, 1)) -> str:
    """``failures.txt``, or ``failures.shard-i-of-n.txt`` so parallel shards never clobber each other."""
    i, n = shard
    return FAILURES_FILE if n == 1 else f"failures.shard-{i}-of-{n}.txt"


def output_rel(src: Path, root: Path | None) -> str:
    """``root/a/b/clip.mp4`` -> ``a/b/clip``; without a root, the file stem."""
    src = Path(src)
    if root is not None:
        try:
            rel = src.resolve().relative_to(Path(root).resolve())
        except ValueError:
            rel = Path(src.name)
    else:
        rel = Path(src.name)
    return str(rel.with_suffix("")) if rel.suffix else str(rel)


def _run_one(process: Callable[[Path, Path], None], job: VideoJob, out: Path) -> tuple[str, str | None]:
    try:
        with atomic_dir(out / job.rel) as staging:
            process(job.src, staging)
        return job.rel, None
    except DiskFullError:  # the disk, not this video: every later job would fail the same way
        raise
    except VidactError as exc:
        return job.rel, str(exc)
    except Exception as exc:  # a bad video must never stop the others
        return job.rel, f"{job.src}: {first_line(exc, with_type=True)}"


def run_video_jobs(
    jobs: Sequence[VideoJob],
    out: str | Path,
    process: Callable[[Path, Path], None],
    workers: int = 1,
    description: str = "videos",
    overwrite: bool = False,
    failures_file: str = FAILURES_FILE,
) -> JobReport:
    """Run ``process(src, staging_dir)`` for every job whose output folder is missing.

    ``process`` must be picklable when ``workers > 1`` (a module-level function or a
    ``functools.partial`` of one). A worker that dies (a decoder crash) fails only its
    own video: the jobs caught in the broken pool are retried one by one in fresh workers.
    A full disk (:class:`~vidact.errors.DiskFullError`) stops the whole run at once instead of
    failing every remaining video; the folders finished before it stay complete.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a parent is a regular file, or a read-only file system
        raise VidactError(f"{out}: cannot create the output folder: {exc.strerror or exc}", exit_code=2) from None
    if not os.access(out, os.W_OK):
        raise VidactError(f"{out}: output folder is not writable", exit_code=2)
    report = JobReport()
    todo = []
    for job in jobs:
        if not overwrite and (out / job.rel).is_dir():
            report.skipped.append(job.rel)
        else:
            todo.append(job)
    with make_progress() as progress:
        task = progress.add_task(description, total=len(todo), status="")

        def record(rel: str, err: str | None) -> None:
            if err is None:
                report.done.append(rel)
            else:
                report.failed.append((rel, err))
            progress.update(task, advance=1, status=f"[red]{len(report.failed)} failed" if report.failed else "")

        try:
            if workers <= 1:
                for job in todo:
                    record(*_run_one(process, job, out))
            else:
                for job in _run_pool(process, todo, out, workers, record):
                    _run_isolated(process, job, out, record)
        except DiskFullError:  # stop at the first full-disk error; finished folders stay complete
            with contextlib.suppress(OSError, VidactError):  # the list may not fit on the disk either
                write_failures(out, report.failed, failures_file)
            raise
    write_failures(out, report.failed, failures_file)
    return report


def die_with_parent() -> None:
    """Linux: the kernel kills this (worker) process when its parent dies, so a killed run stops at once
    instead of its workers finishing their videos after it."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers finish their current video, then the pool ends
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _run_pool(process, jobs: list[VideoJob], out: Path, workers: int, record) -> list[VideoJob]:
    """Run ``jobs`` in a process pool; return the jobs lost to a broken pool."""
    lost = []
    with cf.ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
        futures = {pool.submit(_run_one, process, job, out): job for job in jobs}
        for fut in cf.as_completed(futures):
            try:
                result = fut.result()
            except cf.process.BrokenProcessPool:
                lost.append(futures[fut])
                continue
            except DiskFullError:
                pool.shutdown(wait=True, cancel_futures=True)  # queued jobs never start
                raise
            record(*result)
    return lost


def _run_isolated(process, job: VideoJob, out: Path, record) -> None:
    """Retry one job in its own worker, so a crash is pinned on the video that caused it."""
    with cf.ProcessPoolExecutor(max_workers=1, initializer=die_with_parent) as pool:
        try:
            record(*pool.submit(_run_one, process, job, out).result())
        except cf.process.BrokenProcessPool:
            shutil.rmtree(tmp_dir_for(out / job.rel), ignore_errors=True)
            record(job.rel, f"{job.src}: worker process crashed while processing this video")


def write_failures(out: Path, failed: list[tuple[str, str]], name: str = FAILURES_FILE) -> None:
    """Write (or clear) ``OUT/failures.txt`` (or ``name``); one ``path<TAB>reason`` per line."""
    path = Path(out) / name
    if failed:
        atomic_write_text(path, "".join(f"{p}\t{r}\n" for p, r in sorted(failed)))
    elif path.exists():
        path.unlink()
