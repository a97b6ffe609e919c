"""PyTorch TV-L1: known-flow accuracy, agreement with OpenCV, batching, building blocks, compile fallback."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vidact.flow import tvl1 as tvl1_mod
from vidact.flow.opencv import OpenCVTVL1, to_gray_u8
from vidact.flow.tvl1 import (
    TVL1,
    TVL1Params,
    build_pyramid,
    centered_gradient,
    divergence,
    forward_gradient,
    median_filter,
    resize_bilinear,
    to_gray,
)

# Small and quick: the point here is correctness, not full-size accuracy.
FAST = TVL1Params(nscales=3, warps=3, outer_iterations=4)
H, W = 48, 64


def _texture(h=H, w=W, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, size=(h, w)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 255, 0, 255).astype(np.float32)


def _field(kind: str, h=H, w=W) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    if kind == "translation":
        return np.stack([np.full_like(xx, 1.7), np.full_like(xx, -0.8)])
    if kind == "rotation":  # 3 degrees about the centre
        a = np.deg2rad(3.0)
        return np.stack(
            [(np.cos(a) - 1) * (xx - cx) - np.sin(a) * (yy - cy), np.sin(a) * (xx - cx) + (np.cos(a) - 1) * (yy - cy)]
        )
    if kind == "zoom":  # 5 % zoom about the centre
        return np.stack([0.05 * (xx - cx), 0.05 * (yy - cy)])
    raise ValueError(kind)


def _field32(kind: str) -> np.ndarray:
    return _field(kind).astype(np.float32)


def _pair(kind: str, seed=0):
    """(I0, I1, flow) with I0(x) = I1(x + flow(x)): the flow from I0 to I1 is known."""
    i1 = _texture(seed=seed)
    flow = _field32(kind)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    i0 = cv2.remap(i1, xx + flow[0], yy + flow[1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return np.clip(i0, 0, 255).astype(np.uint8), i1.astype(np.uint8), flow


def _epe(a, b, border=6):
    d = np.sqrt(((a - b) ** 2).sum(-3))
    return float(d[..., border:-border, border:-border].mean())


@pytest.mark.parametrize("kind, bound", [("translation", 0.15), ("rotation", 0.2), ("zoom", 0.25)])
def test_known_flow_epe_below_bound(kind, bound):
    i0, i1, flow = _pair(kind)
    out = TVL1(FAST, compile=False)(i0[None], i1[None]).numpy()[0]
    assert out.shape == (2, H, W) and out.dtype == np.float32
    assert _epe(out, flow) < bound


def test_agrees_with_opencv_on_real_frames(bikes_mp4):
    from vidact.io.video import decode_frames

    frames = decode_frames(bikes_mp4, [30, 31])[:, 100:164, 200:264]  # a 64x64 crop
    params = TVL1Params(nscales=3, warps=3)
    ref = OpenCVTVL1(params)(frames[:1], frames[1:])
    out = TVL1(params, compile=False)(frames[:1], frames[1:]).numpy()
    epe = np.sqrt(((out - ref) ** 2).sum(1))
    assert epe.mean() < 0.05, epe.mean()
    assert np.abs(ref).max() > 0.5  # there is motion to agree on


def test_batched_equals_one_at_a_time():
    pairs = [_pair(k, seed=i) for i, k in enumerate(["translation", "rotation", "zoom"])]
    i0 = np.stack([p[0] for p in pairs])
    i1 = np.stack([p[1] for p in pairs])
    solver = TVL1(FAST, compile=False, chunk=0)  # chunk=0: the whole batch in every tensor op
    batched = solver(i0, i1).numpy()
    single = np.concatenate([solver(i0[k : k + 1], i1[k : k + 1]).numpy() for k in range(3)])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_gathering_the_running_pairs_changes_nothing(monkeypatch):
    """Converged pairs leave the batch (compaction); the flow equals the uncompacted solve exactly."""
    pairs = [_pair(k, seed=i) for i, k in enumerate(["translation", "rotation", "zoom"])]
    still = _texture(seed=7)
    i0 = np.stack([p[0] for p in pairs] + [still])  # the motionless pair converges first
    i1 = np.stack([p[1] for p in pairs] + [still])
    plain = TVL1(FAST, compile=False, chunk=0, check_every=3, compact_below=0)(i0, i1).numpy()
    shrunk = []
    put = tvl1_mod._put_rows
    monkeypatch.setattr(
        tvl1_mod,
        "_put_rows",
        lambda full, rows, part: (shrunk.append(len(part)) if rows is not None else None, put(full, rows, part))[1],
    )
    compact = TVL1(FAST, compile=False, chunk=0, check_every=3, compact_below=0.9)(i0, i1).numpy()
    assert shrunk and min(shrunk) < len(i0)  # the batch did shrink
    np.testing.assert_array_equal(compact, plain)


def test_gpu_code_path_on_cpu_gives_the_same_flow():
    """Whole-batch steps and the min/max median network (what CUDA runs) equal the CPU defaults."""
    pairs = [_pair(k, seed=i) for i, k in enumerate(["translation", "zoom"])]
    i0, i1 = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    gpu_like = TVL1(FAST, compile=False, chunk=0, check_every=7)
    gpu_like.opencv_median = False
    np.testing.assert_allclose(gpu_like(i0, i1).numpy(), TVL1(FAST, compile=False)(i0, i1).numpy(), atol=1e-4)


def test_gray_conversion_matches_opencv():
    rgb = np.random.default_rng(1).integers(0, 256, size=(2, 9, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_gray(rgb).numpy(), to_gray_u8(rgb).astype(np.float32))
    as_float = to_gray(rgb.astype(np.float32) / 255).numpy()
    assert np.abs(as_float - to_gray_u8(rgb)).max() <= 0.5 + 1e-3


@pytest.mark.parametrize("ksize", [3, 5])
def test_median_network_matches_opencv(ksize):
    u = torch.randn(2, 2, 13, 17)
    expected = np.stack([cv2.medianBlur(p, ksize) for p in u.reshape(-1, 13, 17).numpy()]).reshape(u.shape)
    np.testing.assert_array_equal(median_filter(u, ksize, use_opencv=False).numpy(), expected)
    np.testing.assert_array_equal(median_filter(u, ksize, use_opencv=True).numpy(), expected)


def test_resize_and_pyramid_match_opencv():
    img = _texture()
    ours = resize_bilinear(torch.from_numpy(img)[None], (38, 51), (1 / 0.8, 1 / 0.8))[0].numpy()
    np.testing.assert_allclose(ours, cv2.resize(img, None, fx=0.8, fy=0.8), atol=1e-3)
    up = resize_bilinear(torch.from_numpy(img)[None], (60, 80))[0].numpy()
    np.testing.assert_allclose(up, cv2.resize(img, (80, 60)), atol=1e-3)
    sizes = [tuple(level.shape[-2:]) for level in build_pyramid(torch.zeros(1, 48, 64), 5, 0.8)]
    assert sizes == [(48, 64), (38, 51), (30, 41), (24, 33), (19, 26)]
    assert len(build_pyramid(torch.zeros(1, 24, 24), 5, 0.8)) == 2  # 24 -> 19, then 15 < 16 stops


def test_finite_differences_are_adjoint_and_match_opencv_borders():
    img = torch.arange(20.0).reshape(1, 4, 5) ** 1.5
    gx, gy = centered_gradient(img)
    assert gx[0, 0, 0] == pytest.approx(0.5 * (img[0, 0, 1] - img[0, 0, 0]))
    assert gy[0, 1, 2] == pytest.approx(0.5 * (img[0, 2, 2] - img[0, 0, 2]))
    u, px, py = torch.randn(3, 6, 7).unbind(0)
    px[:, -1] = 0  # dual fields vanish where the forward gradient does
    py[-1] = 0
    ux, uy = forward_gradient(u)
    assert ux[:, -1].abs().sum() == 0 and uy[-1].abs().sum() == 0
    # <grad u, p> = -<u, div p>
    assert float((ux * px + uy * py).sum()) == pytest.approx(-float((u * divergence(px, py)).sum()), rel=1e-4)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("inductor exploded")

        return run

    monkeypatch.setattr(tvl1_mod.torch, "compile", broken_compile)
    i0, i1, _ = _pair("translation")
    solver = TVL1(FAST, compile=True)
    assert solver.compiled
    out = solver(i0[None], i1[None]).numpy()
    assert not solver.compiled  # fell back once and for good
    np.testing.assert_allclose(out, TVL1(FAST, compile=False)(i0[None], i1[None]).numpy(), atol=1e-5)


def test_rejects_bad_params_and_shapes():
    with pytest.raises(ValueError, match="gamma"):
        TVL1Params(gamma=0.1)
    with pytest.raises(ValueError, match="differ in shape"):
        TVL1(FAST, compile=False)(np.zeros((1, 20, 20), np.uint8), np.zeros((1, 20, 21), np.uint8))
