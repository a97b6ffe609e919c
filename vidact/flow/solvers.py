"""The solver an extraction runs: which backend and kernel path, built once per process, and its flows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from vidact.errors import UsageError
from vidact.flow import compile_choice
from vidact.flow.inputs import input_size
from vidact.flow.options import FlowOptions
from vidact.io.jobs import VideoJob

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
    from vidact.flow.tvl1 import TVL1

    if options.device.startswith("cuda") and options.compile is not False:
        from vidact.flow import tvl1_triton

        ok, why = tvl1_triton.available(options.device)
        if ok:
            return tvl1_triton.FusedTVL1(options.params, device=options.device)
        compile_choice.warn_once(f"fused Triton TV-L1 kernel unavailable ({why}); running the torch.compile step")
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
    if not compile_choice.compiler_available():
        return options  # TVL1 warns once and records why
    sizes = compile_choice.job_sizes((j.src for j in jobs), options.short_side, input_size)
    use, reason = compile_choice.should_compile(sizes, workers, compile_choice.cache_is_warm())
    if use:
        return replace(options, compile=True)
    compile_choice.warn_once(f"{reason}; TV-L1 runs eagerly")
    return replace(options, compile=False, eager_reason=reason)


def compute_flows(frames: np.ndarray, estimate: Estimator, batch: int) -> np.ndarray:
    """Flow k from frame k to k+1 for all consecutive pairs: (T-1, 2, H, W) float32."""
    pairs = len(frames) - 1
    out = [
        estimate(frames[i : min(i + batch, pairs)], frames[i + 1 : min(i + batch, pairs) + 1])
        for i in range(0, pairs, batch)
    ]
    return np.concatenate(out).astype(np.float32, copy=False)
