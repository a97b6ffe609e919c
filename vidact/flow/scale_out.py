"""Scale-out: the work list cut into slices (shard, GPU process, torchrun rank), each run by :func:`run_slice`."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import asdict, replace
from pathlib import Path

from vidact.errors import UsageError
from vidact.flow.compile_choice import warn_once
from vidact.flow.options import FlowOptions
from vidact.flow.pipeline import run_batched
from vidact.flow.solvers import choose_compile
from vidact.flow.workers import run_per_video
from vidact.io import flowio
from vidact.io.jobs import JobReport, VideoJob, failures_name, write_failures
from vidact.io.shard import take_shard


def combine_shards(shard: tuple[int, int], rank: int, world: int) -> tuple[int, int]:
    """Slice ``rank`` of ``world`` inside ``--shard i/n``.

    ``jobs[i::n][rank::world] == jobs[i + n*rank :: n*world]``.
    """
    i, n = shard
    if not 0 <= rank < world:
        raise UsageError(f"rank {rank} outside world size {world}")
    return i + n * rank, n * world


def run_slice(
    jobs: list[VideoJob],
    out: Path,
    options: FlowOptions,
    workers: int,
    failures_file: str,
    overwrite: bool = False,
    batched: bool | None = None,
) -> JobReport:
    """Run ``jobs`` (already sharded) into ``out``; skipped = finished before.

    ``batched``: pairs of many videos per solver call (:func:`vidact.flow.pipeline.run_batched`); default on CUDA.
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
    else:
        report = run_per_video(todo, out, options, workers, failures_file)
    report.skipped = skipped
    if workers > 1:
        _warn_fallbacks(out, report.done, options)
    return report


def _warn_fallbacks(out: Path, done: list[str], options: FlowOptions) -> None:
    """Once per distinct cause: a compiled solver that fell back to eager in a worker process."""
    if options.backend != "torch" or options.compile is False:
        return
    for rel in done:
        try:
            manifest = flowio.read_manifest(out / rel)
        except Exception:  # written by this run a moment ago; unreadable only if removed meanwhile
            continue
        if manifest.get("compiled") is False and manifest.get("kernel_note"):
            warn_once(f"{manifest['kernel_note']}; TV-L1 runs eagerly (about 4x slower on CPU)")


def visible_gpus(options: FlowOptions) -> int:
    """GPUs to spread a plain ``--device cuda`` over (0 otherwise); a UsageError when CUDA is asked for but absent."""
    gpus = 0
    if options.backend == "torch" and options.device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
    if options.backend == "torch" and options.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {options.device}: no CUDA GPU is visible to torch")
    return gpus


def _gpu_worker(args: tuple) -> dict:
    jobs, out, options, failures_file = args
    return asdict(run_slice(jobs, out, options, 1, failures_file))


def run_on_gpus(
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
