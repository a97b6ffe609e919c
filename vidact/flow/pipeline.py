"""Flow extraction that keeps the solver busy: pairs of many videos per batch, output work off the critical path.

Stages, each overlapping the next:

1. a decoder thread (:class:`vidact.flow.workers.Prefetcher`) reads the next videos;
2. the main thread packs consecutive frame pairs of as many videos as it takes into batches of
   ``batch`` pairs of one frame size (a video may span batches), solves a batch, quantises it on
   the device (uint8 JPEG levels, or float16 for ``.npz``) and starts the copy back into pinned
   host memory without waiting for it (CUDA);
3. a thread pool waits for each copy, and once a video has all its pairs, encodes its JPEGs and
   writes its folder atomically, while the main thread already solves the next batch.

On CPU the same code runs with plain tensors (no pinned memory or events); what is written is
identical to the one-video-at-a-time path.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vidact.errors import DiskFullError, VidactError, first_line
from vidact.flow.manifest import write_flow_folder
from vidact.flow.options import FlowOptions
from vidact.flow.solvers import make_estimator
from vidact.flow.workers import Prefetcher
from vidact.io.atomic import atomic_dir
from vidact.io.cpu import usable_cores
from vidact.io.jobs import JobReport, VideoJob, write_failures
from vidact.io.progress import make_progress


def quantize_on_device(flows: torch.Tensor, bound: float) -> torch.Tensor:
    """:func:`vidact.io.flowio.quantize` on the device (float64, so the levels are identical)."""
    f = flows.double().clamp(-bound, bound)
    return torch.floor(f * (127.5 / bound) + 128.0).clamp(0, 255).to(torch.uint8)


class HostCopy:
    """A device tensor on its way to host memory: pinned and asynchronous on CUDA, immediate elsewhere."""

    def __init__(self, tensor: torch.Tensor):
        if tensor.device.type == "cuda":
            self.host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self.host.copy_(tensor, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host, self.event = tensor, None

    def numpy(self) -> np.ndarray:
        """Wait for the copy (this thread only) and return the host array."""
        if self.event is not None:
            self.event.synchronize()
        return self.host.numpy()


@dataclass
class VideoInProgress:
    """One video's frames and the solved parts of its flow, until all pairs are in."""

    job: VideoJob
    frames: np.ndarray | None
    parts: dict[int, tuple[HostCopy, int, int]] = field(default_factory=dict)  # start -> (copy, row0, row1)
    solved: int = 0

    @property
    def pairs(self) -> int:
        return len(self.frames) - 1


Writer = Callable[[Path, np.ndarray, Path, int], None]  # (staging, flows as written, source, frames) -> None


class BatchedExtraction:
    """Run ``jobs`` through ``solve`` in batches of ``batch`` pairs; ``write(staging, flows, src, n_frames)``.

    ``solve(f0, f1) -> (N, 2, H, W)`` device tensor; ``device_format`` is "jpg" (quantise to uint8
    with ``bound`` on the device) or "npz" (float16 on the device).
    """

    def __init__(
        self,
        solve: Callable[[np.ndarray, np.ndarray], torch.Tensor],
        batch: int,
        write: Writer,
        device_format: str,
        bound: float,
        writers: int = 4,
    ):
        self.solve = solve
        self.batch = max(1, int(batch))
        self.write = write
        self.device_format = device_format
        self.bound = bound
        self.writers = writers
        self.batches = 0  # solver calls made
        self.batch_sizes: list[int] = []

    def _to_host(self, flows: torch.Tensor) -> HostCopy:
        if self.device_format == "jpg":
            return HostCopy(quantize_on_device(flows, self.bound))
        return HostCopy(flows.to(torch.float16))

    def run(
        self, jobs: list[VideoJob], frames_of: Callable[[VideoJob], np.ndarray], out: Path, failures_file: str
    ) -> JobReport:
        """Every job into ``out`` (``frames_of(job)`` gives its frames); failures listed in ``failures_file``."""
        # this run's state, shared by the methods below (the writer threads' too)
        self._report = JobReport()
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, int], list[tuple[VideoInProgress, int, int]]] = {}  # size -> segments
        self._out = out
        self._disk_full: DiskFullError | None = None  # set by a writer thread: the run stops
        with make_progress() as progress, cf.ThreadPoolExecutor(self.writers) as pool:
            self._progress, self._pool = progress, pool
            self._task = progress.add_task("flow", total=len(jobs), status="")
            for job in jobs:
                if self._disk_full is not None:
                    break
                frames = self._frames(job, frames_of)
                if frames is not None:
                    self._enqueue(VideoInProgress(job, frames))
            for size in list(self._pending):
                if self._disk_full is None:
                    self._flush(size)
        if self._disk_full is not None:  # finished folders stay; every later video would fail the same way
            with contextlib.suppress(OSError, VidactError):
                write_failures(out, self._report.failed, failures_file)
            raise self._disk_full
        write_failures(out, self._report.failed, failures_file)
        return self._report

    def _record(self, rel: str, err: str | None) -> None:
        with self._lock:
            if err is None:
                self._report.done.append(rel)
            else:
                self._report.failed.append((rel, err))
            failed = self._report.failed
            self._progress.update(self._task, advance=1, status=f"[red]{len(failed)} failed" if failed else "")

    def _frames(self, job: VideoJob, frames_of: Callable[[VideoJob], np.ndarray]) -> np.ndarray | None:
        """The frames of ``job``, or None once its failure is recorded."""
        try:
            frames = frames_of(job)
        except VidactError as exc:
            self._record(job.rel, str(exc))
            return None
        except Exception as exc:
            self._record(job.rel, f"{job.src}: {first_line(exc, with_type=True)}")
            return None
        if min(frames.shape[1:3]) < 3:  # what the solver would refuse, for this video alone
            self._record(job.rel, f"{job.src}: frames must be at least 3x3 pixels, got {tuple(frames.shape[1:3])}")
            return None
        return frames

    def _enqueue(self, video: VideoInProgress) -> None:
        """Queue the pairs of ``video`` behind those of its frame size, solving each batch that fills up."""
        size = video.frames.shape[1:3]
        start = 0
        while start < video.pairs:
            queued = sum(b - a for _, a, b in self._pending.get(size, []))
            take = min(self.batch - queued, video.pairs - start)
            self._pending.setdefault(size, []).append((video, start, start + take))
            start += take
            if queued + take == self.batch:
                self._flush(size)

    def _flush(self, size: tuple[int, int]) -> None:
        """Solve the queued pairs of one frame size; hand each video whose pairs are all in to a writer."""
        segments = [seg for seg in self._pending.pop(size, []) if seg[0].frames is not None]  # not failed meanwhile
        if not segments:
            return
        f0 = np.concatenate([v.frames[a:b] for v, a, b in segments])
        f1 = np.concatenate([v.frames[a + 1 : b + 1] for v, a, b in segments])
        try:
            copy = self._to_host(self.solve(f0, f1))
        except Exception as exc:  # the solver failed on this batch: its videos fail, the run goes on
            for v, _, _ in segments:
                if v.frames is not None:
                    v.frames = None
                    self._record(v.job.rel, f"{v.job.src}: {first_line(exc, with_type=True)}")
            return
        self.batches += 1
        self.batch_sizes.append(len(f0))
        row = 0
        for v, a, b in segments:
            v.parts[a] = (copy, row, row + b - a)
            row += b - a
            v.solved += b - a
            if v.solved == v.pairs and v.frames is not None:
                self._pool.submit(self._finish, v)

    def _finish(self, video: VideoInProgress) -> None:  # in a writer thread
        try:
            rows = [video.parts[s] for s in sorted(video.parts)]
            flows = np.concatenate([copy.numpy()[r0:r1] for copy, r0, r1 in rows])
            with atomic_dir(self._out / video.job.rel) as staging:
                self.write(staging, flows, video.job.src, video.pairs + 1)
            self._record(video.job.rel, None)
        except DiskFullError as exc:
            with self._lock:
                self._disk_full = self._disk_full or exc
        except VidactError as exc:
            self._record(video.job.rel, str(exc))
        except Exception as exc:  # one bad video never stops the others
            self._record(video.job.rel, f"{video.job.src}: {first_line(exc, with_type=True)}")


def run_batched(jobs: list[VideoJob], out: Path, options: FlowOptions, failures_file: str) -> JobReport:
    """Pairs of many videos per solver call, quantised on the device, written by a thread pool (CUDA default)."""
    estimator = make_estimator(options)
    solver = estimator.solver

    def write(staging: Path, flows: np.ndarray, src: Path, num_frames: int) -> None:
        write_flow_folder(staging, flows, options, src, num_frames, estimator.kernel_info)

    runner = BatchedExtraction(
        solver, options.pairs_per_call, write, options.fmt, options.bound, writers=min(8, usable_cores())
    )
    prefetcher = Prefetcher(jobs, options.short_side, depth=4)
    try:
        report = runner.run(jobs, lambda job: prefetcher.get(job.src), out, failures_file)
    finally:
        prefetcher.close()
    return report
