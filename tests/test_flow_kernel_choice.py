"""Which TV-L1 kernel path runs, and that it is never chosen silently: compile, fallback, job size, workers."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch

from vidact.flow import compile_choice
from vidact.flow.extract import extract_flow
from vidact.flow.options import FlowOptions
from vidact.flow.solvers import choose_compile
from vidact.flow.tvl1 import TVL1, TVL1Params
from vidact.io.cpu import usable_cores
from vidact.io.flowio import read_manifest
from vidact.io.jobs import VideoJob
from vidact.io.video import write_video

FAST = TVL1Params(nscales=2, warps=2, outer_iterations=2)


def _pair(h=24, w=32, shift=1, seed=0):
    rng = np.random.default_rng(seed)
    big = rng.uniform(0, 255, size=(h + 8, w + 8)).astype(np.float32)
    big = np.repeat(np.repeat(big[::3, ::3], 3, 0), 3, 1)[: h + 8, : w + 8]
    return big[4 : 4 + h, 4 : 4 + w].astype(np.uint8)[None], big[4 : 4 + h, 4 + shift : 4 + shift + w].astype(np.uint8)[
        None
    ]


@pytest.mark.skipif(not compile_choice.compiler_available(), reason="torch.compile on CPU needs a C++ compiler")
def test_cpu_path_runs_compiled_without_falling_back(caplog, one_thread):
    """The default CPU path must really compile: a fallback to eager fails this test (and would warn)."""
    i0, i1 = _pair()
    solver = TVL1(FAST, compile="auto")
    with caplog.at_level(logging.WARNING, logger="vidact"):
        out = solver(i0, i1)
    assert solver.kernel_info == {"compiled": True, "kernel": "compiled", "kernel_note": ""}, solver.kernel_info
    assert not [r for r in caplog.records if "eagerly" in r.getMessage()]
    np.testing.assert_allclose(out.numpy(), TVL1(FAST, compile=False)(i0, i1).numpy(), atol=2e-3)  # FMA, vector order


def test_compile_failure_is_one_warning_line_and_recorded(monkeypatch, caplog):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("inductor exploded\nsecond line of the traceback text")

        return run

    monkeypatch.setattr(compile_choice.torch, "compile", broken_compile)
    monkeypatch.setattr(compile_choice, "_warned", set())
    i0, i1 = _pair()
    with caplog.at_level(logging.WARNING, logger="vidact"):
        for _ in range(3):
            solver = TVL1(FAST, compile=True)
            solver(i0, i1)
    [record] = [r for r in caplog.records if r.name.startswith("vidact")]  # once, not per solver or step
    assert record.getMessage() == (
        "torch.compile failed (RuntimeError: inductor exploded); TV-L1 runs eagerly (about 4x slower on CPU)"
    )
    assert solver.kernel_info == {
        "compiled": False,
        "kernel": "eager",
        "kernel_note": "torch.compile failed (RuntimeError: inductor exploded)",
    }


def test_no_recompile_between_videos_of_one_size_or_another():
    """One dynamic-shape graph serves every pyramid level and every video size (counted by a backend)."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    solver = TVL1(FAST, compile=True, compile_backend=counter)
    solver(*_pair(seed=0))
    after_first = counter.frame_count
    assert after_first >= 1 and solver.compiled
    solver(*_pair(seed=1))  # another "video" of the same size
    assert counter.frame_count == after_first
    solver(*_pair(h=28, w=40, seed=2))  # another size: dynamic shapes, still no new graph
    assert counter.frame_count == after_first
    torch._dynamo.reset()


def test_small_jobs_run_eager_and_large_jobs_compile():
    size = 340 * 256
    # cold cache: ~15 s per worker to win back at ~1.05 s per 340x256 pair
    assert compile_choice.should_compile([(20, size)], workers=2, warm=False)[0] is False
    assert compile_choice.should_compile([(250, size)], workers=2, warm=False) == (True, "")
    # warm cache: compiling pays for itself after a few pairs per worker
    assert compile_choice.should_compile([(20, size)], workers=2, warm=True) == (True, "")
    use, why = compile_choice.should_compile([(4, 32 * 32)], workers=1, warm=True)
    assert not use and why.startswith("small job: compiling would save ~0.0 s per worker (4 pairs on 1 workers)")

    seen = []

    def lazily():  # a large data set is probed only until the answer is clear
        for k in range(10_000):
            seen.append(k)
            yield 100, size

    assert compile_choice.should_compile(lazily(), workers=2, warm=False)[0] and len(seen) < 5


def test_choose_compile_reads_sizes_and_records_the_reason(tmp_path, monkeypatch):
    clip = np.zeros((5, 32, 32, 3), np.uint8)
    write_video(tmp_path / "a.mp4", clip)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    jobs = [VideoJob(tmp_path / "a.mp4", "a"), VideoJob(tmp_path / "broken.mp4", "broken")]
    monkeypatch.setattr(compile_choice, "cache_is_warm", lambda: True)
    chosen = choose_compile(FlowOptions(), jobs, workers=1)
    assert chosen.compile is False and "(4 pairs on 1 workers)" in chosen.eager_reason
    assert choose_compile(FlowOptions(compile=False), jobs, 1).compile is False  # --no-compile: untouched
    monkeypatch.setattr(compile_choice, "SAVING_S_PER_MPX_PAIR", 1e9)  # pretend every pair is worth it
    assert choose_compile(FlowOptions(), jobs, workers=1).compile is True


def _clips(root, n=2, frames=4):
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)
        base = np.repeat(np.repeat(base, 4, 0), 4, 1)
        write_video(root / f"c{i}.mp4", np.stack([np.roll(base, k, 1)[:32, :32] for k in range(frames)]))
    return root


def test_workers_default_to_usable_cores_and_manifest_names_the_kernel(tmp_path):
    src = _clips(tmp_path / "src")
    result = extract_flow(src, tmp_path / "out", options=FlowOptions(params=FAST))
    assert result["workers"] == len(os.sched_getaffinity(0)) == usable_cores()
    assert result["done"] == 2 and result["kernels"] == {"eager": 2}
    manifest = read_manifest(tmp_path / "out" / "c0")
    assert manifest["compiled"] is False and manifest["kernel"] == "eager"
    assert manifest["kernel_note"].startswith("small job: compiling would save")
    cv = extract_flow(src, tmp_path / "cv", options=FlowOptions(backend="opencv", params=FAST), workers=1)
    assert cv["kernels"] == {"opencv": 2} and read_manifest(tmp_path / "cv" / "c1")["compiled"] is False


def test_fallback_in_worker_processes_is_warned_once_by_the_parent(tmp_path, monkeypatch, caplog):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no inductor here")

        return run

    monkeypatch.setattr(compile_choice.torch, "compile", broken_compile)  # forked workers inherit it
    monkeypatch.setattr(compile_choice, "_warned", set())
    src = _clips(tmp_path / "src", n=3)
    with caplog.at_level(logging.WARNING, logger="vidact"):
        result = extract_flow(src, tmp_path / "out", options=FlowOptions(params=FAST, compile=True), workers=2)
    assert result["done"] == 3 and result["kernels"] == {"eager": 3}
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("vidact")]
    assert messages == [
        "torch.compile failed (RuntimeError: no inductor here); TV-L1 runs eagerly (about 4x slower on CPU)"
    ]
    assert (
        read_manifest(tmp_path / "out" / "c2")["kernel_note"] == "torch.compile failed (RuntimeError: no inductor here)"
    )
