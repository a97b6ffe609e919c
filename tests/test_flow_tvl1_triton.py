"""The fused Triton TV-L1 kernel, run on CPU by Triton's interpreter, against the torch reference solver.

What CUDA adds (graph capture and replay, pinned asynchronous flag copies) cannot run here; the
host-side control that decides when to stop launching is tested with stand-ins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

CASES = Path(__file__).with_name("tvl1_triton_cases.py")


def _interpret(case: str) -> dict:
    """The comparison of tests/tvl1_triton_cases.py, run under Triton's interpreter in a fresh process."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, str(CASES), case], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _check(result: dict, iterations: int) -> None:
    assert result["kernel_info"]["kernel"] == "triton-fused" and result["graphs"] is False
    # same stopping decisions: the iterations every pair ran in every (level, warp)
    assert result["fused_iterations"] == result["ref_iterations"]
    counts = {c for warp in result["ref_iterations"] for c in warp}
    assert len(counts) >= 3 and max(counts) <= iterations  # pairs stopped at different iterations, some early
    assert result["max_diff"] <= 1e-3 and result["max_flow"] > 0.5  # flow within 1e-3 px, and there is motion
    # the motionless pair, converged early, is left untouched while the others run on
    assert result["alone_diff"] <= 1e-6
    assert min(result["tiles"]) >= 2  # tile borders in both directions


def test_fused_kernel_matches_the_torch_solver_small():
    _check(_interpret("small"), iterations=10)


@pytest.mark.slow
def test_fused_kernel_matches_the_torch_solver_two_levels():
    """Two pyramid levels, 3 x 2 tiles, up to 30 iterations per warp (about 35 s of CPU interpreted)."""
    _check(_interpret("full"), iterations=30)


def test_run_chunks_reads_the_flag_one_chunk_late():
    """Chunk j's "any running" flag is read after chunk j+1 is queued; one chunk past the end is launched."""
    from vidact.flow.tvl1_triton import run_chunks

    launched, reads = [], []
    last_running_chunk = 3  # after chunk 3 no pair runs any more

    def flag_after(j):
        def read():
            reads.append((j, len(launched)))
            return j < last_running_chunk

        return read

    assert run_chunks(10, launched.append, flag_after) == 5
    assert launched == [0, 1, 2, 3, 4]
    assert reads == [(0, 2), (1, 3), (2, 4), (3, 5)]  # flag j read when j+2 chunks were launched
    launched.clear()
    assert run_chunks(3, launched.append, lambda j: lambda: True) == 3  # never converges: all chunks


def test_unavailable_without_cuda_or_interpreter():
    import vidact.flow.tvl1_triton as mod

    if type(mod.tvl1_iteration_kernel).__name__ != "InterpretedFunction":
        ok, why = mod.available("cpu")
        assert not ok and "needs CUDA" in why
        with pytest.raises(RuntimeError, match="needs CUDA"):
            mod.FusedTVL1(device="cpu")


def test_kernel_compiles_for_an_h100_class_gpu_without_one():
    """Triton lowers the kernel to PTX and ptxas to a cubin for sm_90 (the H200's) on this CPU-only machine."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from vidact.flow import tvl1_triton as mod
    from vidact.flow.tvl1 import GRAD_EPS

    if type(mod.tvl1_iteration_kernel).__name__ == "InterpretedFunction":
        pytest.skip("TRITON_INTERPRET=1 in this process")
    ptrs = {name: "*fp32" for name in ("u_in", "p_in", "u_out", "p_out", "g", "gsq", "rhoc", "part_in", "part_out")}
    ints = {name: "*i32" for name in ("flag_in", "flag_out", "iters")}
    scalars = {
        "H": "i32",
        "W": "i32",
        "n_tiles": "i32",
        "tiles_x": "i32",
        "l_t": "fp32",
        "theta": "fp32",
        "taut": "fp32",
        "stop_error": "fp32",
        "BH": "constexpr",
        "BW": "constexpr",
        "BT": "constexpr",
        "EPS": "constexpr",
    }
    types = {**ptrs, **ints, **scalars}
    signature = {name: types[name] for name in mod.tvl1_iteration_kernel.arg_names}  # in parameter order
    src = ASTSource(
        fn=mod.tvl1_iteration_kernel, signature=signature, constexprs={"BH": 16, "BW": 64, "BT": 32, "EPS": GRAD_EPS}
    )
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    ptx = kernel.asm["ptx"]
    assert len(kernel.asm["cubin"]) > 0
    assert "sqrt.rn.f32" in ptx and "div.rn.f32" in ptx  # IEEE-rounded, as torch computes them
    assert "atom." not in ptx  # no atomics: the error partials are summed in a fixed order


def test_a_failing_fused_kernel_warns_once_and_solves_with_the_torch_step(monkeypatch, caplog):
    """Simulated on CPU: the kernel raises (as a Triton compile error would); the flow still comes, recorded."""
    import logging

    import numpy as np

    from vidact.flow import compile_choice
    from vidact.flow import tvl1_triton as mod
    from vidact.flow.tvl1 import TVL1, TVL1Params

    monkeypatch.setattr(mod, "available", lambda device: (True, ""))
    monkeypatch.setattr(compile_choice, "_warned", set())

    class Broken:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                raise RuntimeError("PTX assembly failed\ndetails")

            return launch

    monkeypatch.setattr(mod, "tvl1_iteration_kernel", Broken())
    params = TVL1Params(nscales=1, warps=1, outer_iterations=1, inner_iterations=3)
    frames = np.random.default_rng(0).integers(0, 255, size=(2, 12, 16), dtype=np.uint8)
    solver = mod.FusedTVL1(params, device="cpu")
    with caplog.at_level(logging.WARNING, logger="vidact"):
        out = solver(frames[:1], frames[1:])
        solver(frames[:1], frames[1:])
    expected = TVL1(params, compile=False)(frames[:1], frames[1:])
    assert float((out - expected).abs().max()) == 0.0
    assert [r.getMessage() for r in caplog.records if r.name.startswith("vidact")] == [
        "fused Triton kernel failed (RuntimeError: PTX assembly failed); TV-L1 runs the torch.compile step instead"
    ]
    info = solver.kernel_info
    assert info["kernel"] == "eager" and info["compiled"] is False  # CPU: the fallback was built with compile=False
    assert info["kernel_note"].startswith("fused Triton kernel failed (RuntimeError: PTX assembly failed)")
