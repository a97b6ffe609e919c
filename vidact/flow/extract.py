"""``vidact flow extract``: TV-L1 flow of every video (or frame folder) into ``OUT/<relpath>/``.

Each input is one job of :func:`vidact.io.jobs.run_video_jobs` (atomic folder, resume,
``failures.txt``). With one worker, a background thread decodes the next inputs while the
current one is solved. Scale-out: ``--shard i/n``; ``--workers`` CPU processes (default: one per
usable core, one torch thread each); on CUDA one process per visible GPU, or one per rank under
``torchrun`` (LOCAL_RANK / RANK / WORLD_SIZE), each taking its own slice of the work list.

On CPU, ``compile="auto"`` compiles the solver's step only when the job is big enough to win
back the compile time (:mod:`vidact.flow.compile_choice`); every ``flow.json`` records which
kernel path ran (``compiled``, ``kernel``, ``kernel_note``).
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from vidact import __version__
from vidact.data.videos import collect_jobs
from vidact.errors import UsageError, VideoDecodeError
from vidact.flow import compile_choice
from vidact.flow.tvl1 import TVL1Params
from vidact.io import flowio
from vidact.io.frames import count_frames, read_frames
from vidact.io.jobs import (
    JobReport,
    VideoJob,
    failures_name,
    output_rel,
    run_video_jobs,
    write_failures,
)
from vidact.io.shard import take_shard
from vidact.io.video import TAIL_SLACK, iter_frames, probe, short_side_size
from vidact.runtime.distributed import launch_env

BACKENDS = ("torch", "opencv")
FORMATS = ("jpg", "npz")


@dataclass(frozen=True)
class FlowOptions:
    """How every input becomes flow."""

    backend: str = "torch"
    device: str = "cpu"
    batch: int | None = None  # frame pairs per solver call; None: 1 on CPU, 32 on CUDA
    short_side: int | None = None
    bound: float = flowio.DEFAULT_BOUND
    fmt: str = "jpg"
    quality: int = flowio.DEFAULT_QUALITY
    compile: bool | str = "auto"
    params: TVL1Params = field(default_factory=TVL1Params)
    eager_reason: str = "--no-compile"  # recorded in flow.json when compile is False

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"--batch must be >= 1, got {self.batch}")
        if not self.bound > 0:
            raise UsageError(f"--bound must be > 0, got {self.bound}")
        if self.short_side is not None and self.short_side < 16:
            raise UsageError(f"--short-side must be >= 16, got {self.short_side}")
        if self.backend == "opencv" and not self.device.startswith("cpu"):
            raise UsageError("--backend opencv runs on the CPU only; use --backend torch for --device cuda")
        if not self.device.startswith(("cpu", "cuda")):
            raise UsageError(f"--device must be cpu or cuda[:k], got {self.device!r}")

    @property
    def pairs_per_call(self) -> int:
        if self.batch is not None:
            return self.batch
        return 256 if self.device.startswith("cuda") else 1


# --------------------------------------------------------------------------- inputs
def is_frame_folder(path: Path) -> bool:
    return path.is_dir() and count_frames(path) > 0


def collect_flow_jobs(src: str | Path, list_path: str | Path | None = None) -> list[VideoJob]:
    """Videos and frame folders to process: ``src`` itself, those under it, or those listed."""
    src = Path(src)
    if is_frame_folder(src) and list_path is None:
        return [VideoJob(src, src.name)]
    if src.is_dir() and list_path is None:
        folders = sorted(Path(d) for d, _, files in os.walk(src) if any(f.startswith("img_") for f in files))
        folders = [f for f in folders if is_frame_folder(f)]
        if folders:
            return [VideoJob(f, output_rel(f, src)) for f in folders]
    return collect_jobs(src, list_path)[0]


def input_size(src: Path) -> tuple[int, int, int]:
    """(frames, width, height) of a video (container header) or frame folder, without decoding it all."""
    src = Path(src)
    if src.is_dir():
        n = count_frames(src)
        first = read_frames(src, [0])[0]
        return n, first.shape[1], first.shape[0]
    info = probe(src, count_frames=False)
    return info.num_frames, info.width, info.height


def load_frames(src: str | Path, short_side: int | None = None) -> np.ndarray:
    """All frames of a video file or frame folder as (T, H, W, 3) uint8 RGB, T >= 2."""
    import cv2

    src = Path(src)
    if src.is_dir():
        n = count_frames(src)
        if n == 0:
            raise VideoDecodeError(src, "no frames (img_*.jpg) in folder")
        frames = read_frames(src, range(n))
        size = short_side_size(frames.shape[2], frames.shape[1], short_side)
        if size is not None:
            frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    else:
        info = probe(src, count_frames=False)
        frames_list = list(iter_frames(src, size=short_side_size(info.width, info.height, short_side)))
        if not frames_list:
            raise VideoDecodeError(src, "no decodable video frames")
        if info.num_frames > len(frames_list) + TAIL_SLACK:
            raise VideoDecodeError(src, f"truncated: decoded {len(frames_list)} of {info.num_frames} frames")
        frames = np.stack(frames_list)
    if len(frames) < 2:
        raise VideoDecodeError(src, f"flow needs at least 2 frames, got {len(frames)}")
    return frames


# --------------------------------------------------------------------------- solving
Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]  # with a ``kernel_info`` dict attribute
_ESTIMATORS: dict[FlowOptions, Estimator] = {}  # one per process, so a compiled solver is reused
OPENCV_KERNEL = {"compiled": False, "kernel": "opencv", "kernel_note": "OpenCV DualTVL1 (reference backend)"}


class TorchEstimator:
    """``estimate(frames0, frames1)`` with vidact's solver; ``kernel_info`` says which path ran."""

    def __init__(self, options: FlowOptions):
        self.solver = make_solver(options)
        self._marked = False

    def __call__(self, f0: np.ndarray, f1: np.ndarray) -> np.ndarray:
        flows = self.solver(f0, f1).cpu().numpy()
        if not self._marked and self.solver.compiled and self.solver.device.type == "cpu":
            compile_choice.mark_cache_warm()  # the next job (any process) will find the code cached
            self._marked = True
        return flows

    @property
    def kernel_info(self) -> dict:
        return self.solver.kernel_info


def make_solver(options: FlowOptions):
    """The torch solver: the fused Triton kernel on CUDA (warned once if unavailable), else :class:`TVL1`."""
    from vidact.flow.tvl1 import TVL1, warn_once

    if options.device.startswith("cuda") and options.compile is not False:
        from vidact.flow import tvl1_triton

        ok, why = tvl1_triton.available(options.device)
        if ok:
            return tvl1_triton.FusedTVL1(options.params, device=options.device)
        warn_once(f"fused Triton TV-L1 kernel unavailable ({why}); running the torch.compile step")
    return TVL1(options.params, device=options.device, compile=options.compile, eager_reason=options.eager_reason)


def make_estimator(options: FlowOptions) -> Estimator:
    """``estimate(frames0, frames1) -> (N, 2, H, W)`` float32 numpy for the chosen backend."""
    if options in _ESTIMATORS:
        return _ESTIMATORS[options]
    if options.backend == "opencv":
        from vidact.flow.opencv import OpenCVTVL1

        estimator = OpenCVTVL1(options.params)
        estimator.kernel_info = OPENCV_KERNEL
    else:
        import torch

        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA GPU is visible to torch")
        estimator = TorchEstimator(options)
    _ESTIMATORS[options] = estimator
    return estimator


def choose_compile(options: FlowOptions, jobs: list[VideoJob], workers: int) -> FlowOptions:
    """Resolve ``compile="auto"`` for the CPU torch backend by the job's size (see compile_choice)."""
    if options.backend != "torch" or not options.device.startswith("cpu") or options.compile != "auto":
        return options
    from vidact.flow.tvl1 import compiler_available

    if not compiler_available():
        return options  # TVL1 warns once and records why
    sizes = compile_choice.job_sizes((j.src for j in jobs), options.short_side, input_size)
    use, reason = compile_choice.should_compile(sizes, workers, compile_choice.cache_is_warm())
    if use:
        return replace(options, compile=True)
    from vidact.flow.tvl1 import warn_once

    warn_once(f"{reason}; TV-L1 runs eagerly")
    return replace(options, compile=False, eager_reason=reason)


def compute_flows(frames: np.ndarray, estimate: Estimator, batch: int) -> np.ndarray:
    """Flow k from frame k to k+1 for all consecutive pairs: (T-1, 2, H, W) float32."""
    pairs = len(frames) - 1
    out = [
        estimate(frames[i : min(i + batch, pairs)], frames[i + 1 : min(i + batch, pairs) + 1])
        for i in range(0, pairs, batch)
    ]
    return np.concatenate(out).astype(np.float32, copy=False)


def flow_manifest(
    options: FlowOptions, src: Path, num_frames: int, flows: np.ndarray, kernel_info: dict | None = None
) -> dict:
    """Everything a reader needs to know about one output folder (``flow.json``)."""
    kernel = kernel_info or {"compiled": None, "kernel": None, "kernel_note": ""}
    return {
        "algorithm": "tv-l1",
        "backend": options.backend,
        "device": options.device if options.backend == "torch" else "cpu",
        "compiled": kernel["compiled"],
        "kernel": kernel["kernel"],
        "kernel_note": kernel["kernel_note"],
        "params": options.params.to_dict(),
        "format": options.fmt,
        "bound": float(options.bound),
        "quantization": "q = round(255 * (clip(f, -B, B) + B) / (2B)), zero -> 128" if options.fmt == "jpg" else None,
        "jpeg_quality": options.quality if options.fmt == "jpg" else None,
        "index_base": 1,
        "prefix": flowio.DEFAULT_PREFIX,
        "digits": flowio.DEFAULT_DIGITS,
        "ext": "jpg",
        "flow_direction": "flow k: frame k -> frame k+1",
        "num_frames": int(num_frames),
        "num_flows": int(flows.shape[0]),
        "height": int(flows.shape[2]),
        "width": int(flows.shape[3]),
        "short_side": options.short_side,
        "source": str(src),
        "vidact_version": __version__,
    }


def write_flow_folder(
    dest: Path, flows: np.ndarray, options: FlowOptions, src: Path, num_frames: int, kernel_info: dict | None = None
) -> None:
    """Write flows (JPEG pairs or flow.npz) and the manifest into ``dest``."""
    if options.fmt == "npz":
        flowio.write_flow_npz(dest, flows)
    else:
        flowio.write_flow_jpgs(dest, flows, bound=options.bound, quality=options.quality)
    flowio.write_manifest(dest, flow_manifest(options, src, num_frames, flows, kernel_info))


def process_input(src: Path, staging: Path, options: FlowOptions, frames: np.ndarray | None = None) -> None:
    """One job: decode (unless ``frames`` are given), solve all pairs, write the folder."""
    if frames is None:
        frames = load_frames(src, options.short_side)
    estimate = make_estimator(options)
    flows = compute_flows(frames, estimate, options.pairs_per_call)
    write_flow_folder(staging, flows, options, src, len(frames), estimate.kernel_info)


_WORKER_READY = False


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when its parent dies, so a killed run stops at once."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers finish their current video, then the pool ends
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _process_in_worker(src: Path, staging: Path, options: FlowOptions) -> None:
    """:func:`process_input` in a pool worker: its warnings are left to the parent (one line, not one per worker)."""
    import sys

    from vidact.flow import tvl1

    global _WORKER_READY
    if not _WORKER_READY:
        _die_with_parent()
        _WORKER_READY = True

    if options.backend == "torch" or "torch" in sys.modules:
        import torch

        # One thread per worker, set before any tensor op: a child forked from a parent whose
        # OpenMP pool had started hangs in its first multi-threaded region (seen under pytest).
        torch.set_num_threads(1)
    tvl1.warnings_enabled = False
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


# --------------------------------------------------------------------------- scale-out
def combine_shards(shard: tuple[int, int], rank: int, world: int) -> tuple[int, int]:
    """Slice ``rank`` of ``world`` inside ``--shard i/n``.

    ``jobs[i::n][rank::world] == jobs[i + n*rank :: n*world]``.
    """
    i, n = shard
    if not 0 <= rank < world:
        raise UsageError(f"rank {rank} outside world size {world}")
    return i + n * rank, n * world


def run_batched(jobs: list[VideoJob], out: Path, options: FlowOptions, failures_file: str) -> JobReport:
    """Pairs of many videos per solver call, quantised on the device, written by a thread pool (CUDA default)."""
    from vidact.flow.pipeline import BatchedExtraction

    estimator = make_estimator(options)
    solver = estimator.solver

    def write(staging: Path, flows: np.ndarray, src: Path, num_frames: int) -> None:
        write_flow_folder(staging, flows, options, src, num_frames, estimator.kernel_info)

    runner = BatchedExtraction(
        solver, options.pairs_per_call, write, options.fmt, options.bound, writers=min(8, compile_choice.usable_cores())
    )
    prefetcher = Prefetcher(jobs, options.short_side, depth=4)
    try:
        report = runner.run(jobs, lambda job: prefetcher.get(job.src), out, failures_file)
    finally:
        prefetcher.close()
    return report


def _run_slice(
    jobs: list[VideoJob],
    out: Path,
    options: FlowOptions,
    workers: int,
    failures_file: str,
    overwrite: bool = False,
    batched: bool | None = None,
) -> JobReport:
    """Run ``jobs`` (already sharded) into ``out``; skipped = finished before.

    ``batched``: pairs of many videos per solver call (:func:`run_batched`); default on CUDA.
    """
    skipped = [j.rel for j in jobs if not overwrite and (out / j.rel).is_dir()]
    todo = [j for j in jobs if overwrite or not (out / j.rel).is_dir()]
    if batched is None:
        batched = options.backend == "torch" and options.device.startswith("cuda")
    # the processes that will each compile: one per worker that gets a video (one when batched)
    options = choose_compile(options, todo, 1 if batched else max(1, min(workers, len(todo))))
    if batched:
        if options.backend != "torch":
            raise UsageError("batched extraction needs the torch backend")
        report = run_batched(todo, out, options, failures_file)
    elif workers > 1 or options.backend == "opencv":
        process = functools.partial(_process_in_worker if workers > 1 else process_input, options=options)
        report = run_video_jobs(
            todo, out, process, workers=workers, description="flow", failures_file=failures_file, overwrite=True
        )
    else:
        prefetcher = Prefetcher(todo, options.short_side)
        try:
            process = functools.partial(_process_prefetched, options=options, prefetcher=prefetcher)
            report = run_video_jobs(
                todo, out, process, workers=1, description="flow", failures_file=failures_file, overwrite=True
            )
        finally:
            prefetcher.close()
    report.skipped = skipped
    if workers > 1:
        _warn_fallbacks(out, report.done, options)
    return report


def _warn_fallbacks(out: Path, done: list[str], options: FlowOptions) -> None:
    """Once per distinct cause: a compiled solver that fell back to eager in a worker process."""
    if options.backend != "torch" or options.compile is False:
        return
    from vidact.flow.tvl1 import warn_once

    for rel in done:
        try:
            manifest = flowio.read_manifest(out / rel)
        except Exception:  # written by this run a moment ago; unreadable only if removed meanwhile
            continue
        if manifest.get("compiled") is False and manifest.get("kernel_note"):
            warn_once(f"{manifest['kernel_note']}; TV-L1 runs eagerly (about 4x slower on CPU)")


def _gpu_worker(args: tuple) -> dict:
    jobs, out, options, failures_file = args
    return asdict(_run_slice(jobs, out, options, 1, failures_file))


def _run_on_gpus(
    jobs: list[VideoJob], out: Path, options: FlowOptions, shard: tuple[int, int], n_gpus: int
) -> JobReport:
    """One spawned process per GPU, each with its slice; failures merged into one file."""
    tasks = []
    for rank in range(n_gpus):
        sub = combine_shards(shard, rank, n_gpus)
        tasks.append(
            (take_shard(jobs, (rank, n_gpus)), out, replace(options, device=f"cuda:{rank}"), failures_name(sub))
        )
    with mp.get_context("spawn").Pool(n_gpus) as pool:
        parts = pool.map(_gpu_worker, tasks)
    report = JobReport()
    for part, task in zip(parts, tasks):
        report.done += part["done"]
        report.skipped += part["skipped"]
        report.failed += [tuple(f) for f in part["failed"]]
        (out / task[3]).unlink(missing_ok=True)
    write_failures(out, report.failed, failures_name(shard))
    return report


def extract_flow(
    src: str | Path,
    out: str | Path,
    list_path: str | Path | None = None,
    options: FlowOptions = FlowOptions(),
    workers: int | None = None,
    shard: tuple[int, int] = (0, 1),
    batched: bool | None = None,
) -> dict:
    """Extract TV-L1 flow of every selected input into ``out``; returns the job summary.

    ``workers``: CPU processes; None = one per usable core on CPU, one per GPU on CUDA.
    ``batched``: solve pairs of many videos together and write in a thread pool (default: on
    CUDA; on CPU it runs in this one process, for tests and comparisons).
    """
    out = Path(out)
    if workers is None:
        workers = 1 if options.device.startswith("cuda") else compile_choice.usable_cores()
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    jobs = take_shard(collect_flow_jobs(src, list_path), shard)
    launch = launch_env()
    gpus = 0
    if options.backend == "torch" and options.device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
    if options.backend == "torch" and options.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {options.device}: no CUDA GPU is visible to torch")
    if launch.launched:  # torchrun: this process takes its own slice on its own GPU
        rank, world, local = launch.rank, launch.world_size, launch.local_rank
        shard = combine_shards(shard, rank, world)
        jobs = take_shard(jobs, (rank, world))
        if options.device == "cuda":
            options = replace(options, device=f"cuda:{local}")
        report = _run_slice(jobs, out, options, workers, failures_name(shard), batched=batched)
    elif gpus > 1:
        report = _run_on_gpus(jobs, out, options, shard, gpus)
    else:
        report = _run_slice(jobs, out, options, workers, failures_name(shard), batched=batched)
    name = failures_name(shard)
    return {
        **report.to_dict(),
        "out": str(out),
        "failures_file": str(out / name) if report.failed else None,
        "backend": options.backend,
        "device": options.device,
        "format": options.fmt,
        "workers": workers,
        "kernels": _kernels_used(out, report.done),
    }


def _kernels_used(out: Path, done: list[str]) -> dict[str, int]:
    """How many of this run's outputs each kernel path produced (from their flow.json)."""
    counts: dict[str, int] = {}
    for rel in done:
        try:
            kernel = str(flowio.read_manifest(out / rel).get("kernel"))
        except Exception:  # removed meanwhile
            continue
        counts[kernel] = counts.get(kernel, 0) + 1
    return counts
