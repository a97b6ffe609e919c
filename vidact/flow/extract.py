"""``vidact flow extract``: TV-L1 flow of every video (or frame folder) into ``OUT/<relpath>/``.

Each input is one job (atomic folder, resume, ``failures.txt``): one video at a time through
:func:`vidact.io.jobs.run_video_jobs`, or on CUDA its pairs batched with other videos'. With one
worker, a background thread decodes the next inputs while the current one is solved.
Scale-out: ``--shard i/n``; ``--workers`` CPU processes (default: one per usable core, one torch
thread each); on CUDA one process per visible GPU, or one per rank under ``torchrun``
(LOCAL_RANK / RANK / WORLD_SIZE), each taking its own slice of the work list.

On CPU, ``compile="auto"`` compiles the solver's step only when the job is big enough to win
back the compile time (:mod:`vidact.flow.compile_choice`); every ``flow.json`` records which
kernel path ran (``compiled``, ``kernel``, ``kernel_note``).

The parts: :mod:`~vidact.flow.options` (:class:`FlowOptions`), :mod:`~vidact.flow.inputs`,
:mod:`~vidact.flow.solvers`, :mod:`~vidact.flow.manifest`, :mod:`~vidact.flow.workers` (per video),
:mod:`~vidact.flow.pipeline` (batched) and :mod:`~vidact.flow.scale_out` (slices).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from vidact.errors import UsageError
from vidact.flow.inputs import collect_flow_jobs
from vidact.flow.options import FlowOptions
from vidact.flow.scale_out import combine_shards, run_on_gpus, run_slice, visible_gpus
from vidact.io import flowio
from vidact.io.cpu import usable_cores
from vidact.io.jobs import failures_name
from vidact.io.shard import take_shard
from vidact.runtime.distributed import launch_env


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
        workers = 1 if options.device.startswith("cuda") else usable_cores()
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    jobs = take_shard(collect_flow_jobs(src, list_path), shard)
    launch = launch_env()
    gpus = visible_gpus(options)
    if launch.launched:  # torchrun: this process takes its own slice on its own GPU
        rank, world, local = launch.rank, launch.world_size, launch.local_rank
        shard = combine_shards(shard, rank, world)
        jobs = take_shard(jobs, (rank, world))
        if options.device == "cuda":
            options = replace(options, device=f"cuda:{local}")
    if gpus > 1 and not launch.launched:
        report = run_on_gpus(jobs, out, options, shard, gpus)
    else:
        report = run_slice(jobs, out, options, workers, failures_name(shard), batched=batched)
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
