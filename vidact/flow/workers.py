"""Per-video extraction: the one job (decode, solve, write one input), in pool workers or behind a decoder thread."""

from __future__ import annotations

import functools
import queue
import threading
from pathlib import Path

import numpy as np

from vidact.flow import compile_choice
from vidact.flow.inputs import load_frames
from vidact.flow.manifest import write_flow_folder
from vidact.flow.options import FlowOptions
from vidact.flow.solvers import compute_flows, make_estimator
from vidact.io.jobs import JobReport, VideoJob, run_video_jobs


def process_input(src: Path, staging: Path, options: FlowOptions, frames: np.ndarray | None = None) -> None:
    """One job: decode (unless ``frames`` are given), solve all pairs, write the folder."""
    if frames is None:
        frames = load_frames(src, options.short_side)
    estimate = make_estimator(options)
    flows = compute_flows(frames, estimate, options.pairs_per_call)
    write_flow_folder(staging, flows, options, src, len(frames), estimate.kernel_info)


def _process_in_worker(src: Path, staging: Path, options: FlowOptions) -> None:
    """:func:`process_input` in a pool worker: its warnings are left to the parent (one line, not one per worker)."""
    import sys

    if options.backend == "torch" or "torch" in sys.modules:
        import torch

        # One thread per worker, set before any tensor op: a child forked from a parent whose
        # OpenMP pool had started hangs in its first multi-threaded region (seen under pytest).
        torch.set_num_threads(1)
    compile_choice.warnings_enabled = False
    process_input(src, staging, options)


class Prefetcher:
    """Decode the inputs of ``jobs`` in a background thread, up to ``depth`` ahead of the solver."""

    def __init__(self, jobs: list[VideoJob], short_side: int | None, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(jobs, short_side), daemon=True)
        self._thread.start()

    def _run(self, jobs: list[VideoJob], short_side: int | None) -> None:
        for job in jobs:
            try:
                item = (job.src, load_frames(job.src, short_side), None)
            except Exception as exc:  # handed to the consumer, which reports it for this input
                item = (job.src, None, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set():
                return

    def get(self, src: Path) -> np.ndarray:
        """The frames of ``src``; inputs the runner never asked for (none in practice) are dropped."""
        while True:
            got, frames, exc = self._queue.get()
            if Path(got) == Path(src):
                break
        if exc is not None:
            raise exc
        return frames

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _process_prefetched(src: Path, staging: Path, options: FlowOptions, prefetcher: Prefetcher) -> None:
    process_input(src, staging, options, frames=prefetcher.get(src))


def run_per_video(jobs: list[VideoJob], out: Path, options: FlowOptions, workers: int, failures_file: str) -> JobReport:
    """Every job into ``out``, one video per job: in ``workers`` processes, or in this one.

    In this process the torch backend solves while a background thread decodes the next inputs.
    """
    prefetcher = None
    if workers > 1:
        process = functools.partial(_process_in_worker, options=options)
    elif options.backend == "opencv":
        process = functools.partial(process_input, options=options)
    else:
        prefetcher = Prefetcher(jobs, options.short_side)
        process = functools.partial(_process_prefetched, options=options, prefetcher=prefetcher)
    try:
        return run_video_jobs(
            jobs, out, process, workers=workers, description="flow", failures_file=failures_file, overwrite=True
        )
    finally:
        if prefetcher is not None:
            prefetcher.close()
