"""Measured speed of a model: forward and forward+backward latency, clips/s and peak memory."""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from vidact.errors import UsageError
from vidact.runtime.device import autocast, select_device

__all__ = ["BenchResult", "benchmark", "benchmark_arch"]


@dataclass
class BenchResult:
    """Median latencies over ``iters`` runs after ``warmup`` runs, at batch ``batch``."""

    device: str
    batch: int
    amp: bool
    iters: int
    forward_ms: float
    train_step_ms: float  # forward + backward
    forward_clips_per_s: float
    train_clips_per_s: float
    peak_memory_mb: float
    memory_kind: str  # "cuda max allocated" or "process peak RSS"
    threads: int = 1  # torch CPU threads during the run

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def benchmark(
    model: nn.Module, inputs, device: str | torch.device = "cpu", amp: bool = False, warmup: int = 2, iters: int = 5
) -> BenchResult:
    """Time inference (eval, no grad) and a training step (train mode, backward of the summed logits).

    ``amp`` runs under bf16 autocast. Peak memory is CUDA's max allocated on a GPU and the process's
    peak resident set size on the CPU (which includes everything the process touched before).
    """
    device = torch.device(device)
    model = model.to(device)
    batch = tree_flatten(inputs)[0][0].shape[0]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def forward():
        with torch.no_grad(), autocast(device, "bf16" if amp else "none"):
            model(inputs)

    def train_step():
        with autocast(device, "bf16" if amp else "none"):
            loss = model(inputs).float().sum()
        loss.backward()
        model.zero_grad(set_to_none=True)

    model.eval()
    forward_ms = _median_ms(forward, device, warmup, iters)
    model.train()
    train_ms = _median_ms(train_step, device, warmup, iters)
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
    return BenchResult(
        str(device),
        batch,
        amp,
        iters,
        forward_ms,
        train_ms,
        1000 * batch / forward_ms,
        1000 * batch / train_ms,
        peak,
        kind,
        torch.get_num_threads(),
    )


def benchmark_arch(
    arch: str,
    frames: int | None = None,
    size: int | None = None,
    batch: int = 1,
    num_classes: int | None = None,
    device: str = "cpu",
    amp: bool = False,
    warmup: int = 2,
    iters: int = 5,
    threads: int | None = None,
    **model_kwargs,
) -> BenchResult:
    """Build ``arch`` with random weights on ``device`` and :func:`benchmark` it at its default input.

    ``threads`` sets torch's CPU thread count for the run (restored afterwards).
    """
    from vidact.models.registry import get_entry

    entry = get_entry(arch)
    select_device(device)
    kwargs = {**entry.defaults, **model_kwargs}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    torch.manual_seed(0)
    model = entry.builder(**kwargs)
    inputs = entry.example_input(batch, frames, size, device=device)
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise UsageError(f"threads must be at least 1, not {threads}")
        torch.set_num_threads(threads)
    try:
        return benchmark(model, inputs, device, amp, warmup, iters)
    finally:
        torch.set_num_threads(previous)
