"""Batched TV-L1 optical flow in PyTorch (CPU or CUDA), numerically following OpenCV's DualTVL1.

The algorithm is Zach-Pock-Bischof's duality-based TV-L1 as described by Sánchez Pérez,
Meinhardt-Llopis and Facciolo (IPOL 2013, "TV-L1 Optical Flow Estimation"), with the choices of
OpenCV's ``cv2.optflow.DualTVL1OpticalFlow`` (the reference backend): a bilinear pyramid with
scale step 0.8, bicubic warping of I1 and its centred-difference gradient (zero outside the
image), the thresholding step, primal and dual updates, a 5x5 median filter of the flow before
each group of inner iterations, and a per-pair stop when the mean squared update falls below
``epsilon**2``.

N frame pairs of one size are solved together: every step is a whole-batch tensor operation,
convergence is tracked per pair on the device (a converged pair is frozen, exactly as if it had
stopped alone), and the host looks at it only every ``check_every`` iterations, so CUDA runs
without a sync inside the inner loop. The inner iteration can be fused with ``torch.compile``
(:class:`vidact.flow.compile_choice.CompiledOrEager`); if compiling fails, the eager version is
used instead, with one warning line that names the cause, and :attr:`TVL1.kernel_info` (recorded
in every ``flow.json``) says which path ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from vidact.flow.compile_choice import CompiledOrEager, compiler_available, warn_once

GRAD_EPS = float(np.finfo(np.float32).eps)  # OpenCV: std::numeric_limits<float>::epsilon()
MIN_PYRAMID_SIDE = 16  # OpenCV stops adding scales below 16 pixels


@dataclass(frozen=True)
class TVL1Params:
    """TV-L1 parameters; the defaults are OpenCV's (``DualTVL1OpticalFlow_create()``)."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5

    def __post_init__(self):
        if self.gamma != 0.0:
            raise ValueError("gamma != 0 (illumination term) is not supported; use 0 as OpenCV's default")
        if self.median_filtering not in (1, 3, 5):
            raise ValueError(f"median_filtering must be 1, 3 or 5, got {self.median_filtering}")
        if not 0.0 < self.scale_step < 1.0:
            raise ValueError(f"scale_step must be in (0, 1), got {self.scale_step}")
        if self.nscales < 1 or self.warps < 1 or self.inner_iterations < 1 or self.outer_iterations < 1:
            raise ValueError("nscales, warps and iteration counts must be >= 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambda"] = d.pop("lambda_")
        return d


# --------------------------------------------------------------------------- input
def to_gray(frames) -> torch.Tensor:
    """(N, H, W) float32 grey levels in [0, 255] from (N, H, W) or (N, H, W, 3) RGB frames.

    uint8 RGB is converted exactly as ``cv2.cvtColor(..., COLOR_RGB2GRAY)`` (14-bit fixed point,
    rounded); float input is taken to be in [0, 1], as OpenCV's TV-L1 does.
    """
    x = torch.as_tensor(frames)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 4 and x.shape[-1] == 3:
        if x.dtype == torch.uint8:
            r, g, b = (x[..., i].to(torch.int32) for i in range(3))
            x = (r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14
        else:
            x = x.float()
            x = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
            return x * 255.0
    if x.ndim != 3:
        raise ValueError(f"frames must be (N, H, W) or (N, H, W, 3), got {tuple(x.shape)}")
    if x.dtype in (torch.uint8, torch.int32, torch.int64, torch.int16):
        return x.float()
    return x.float() * 255.0


# --------------------------------------------------------------------------- resampling
@lru_cache(maxsize=64)
def _linear_weights(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """(n_out, n_in) matrix of OpenCV INTER_LINEAR resize: centres aligned, clamped at the edges."""
    m = np.zeros((n_out, n_in), np.float64)
    for d in range(n_out):
        f = (d + 0.5) * scale - 0.5
        s = int(np.floor(f))
        f -= s
        if s < 0:
            s, f = 0, 0.0
        if s >= n_in - 1:
            s, f = n_in - 1, 0.0
        m[d, s] += 1.0 - f
        if f:
            m[d, s + 1] += f
    return m.astype(np.float32)


@lru_cache(maxsize=128)
def _resize_matrix(n_in: int, n_out: int, scale: float, device: torch.device) -> torch.Tensor:
    """:func:`_linear_weights` as a tensor kept on ``device`` (copied there once, not per call)."""
    return torch.from_numpy(_linear_weights(n_in, n_out, scale)).to(device)


def resize_bilinear(x: torch.Tensor, size: tuple[int, int], scale: tuple[float, float] | None = None) -> torch.Tensor:
    """Resize (..., H, W) to ``size`` = (h, w) like ``cv2.resize(INTER_LINEAR)``.

    ``scale`` is the (y, x) source step per output pixel; by default in/out size ratios, as
    OpenCV uses when given a size, while a pyramid step passes ``1 / scale_step``.
    """
    h_in, w_in = x.shape[-2:]
    sy, sx = scale if scale is not None else (h_in / size[0], w_in / size[1])
    ry = _resize_matrix(h_in, size[0], float(sy), x.device)
    rx = _resize_matrix(w_in, size[1], float(sx), x.device)
    return ry @ x @ rx.T


def build_pyramid(gray: torch.Tensor, nscales: int, scale_step: float) -> list[torch.Tensor]:
    """Finest-first list of (N, H, W) images; stops before a side would drop under 16 pixels."""
    levels = [gray]
    for _ in range(1, nscales):
        h, w = levels[-1].shape[-2:]
        size = (int(round(h * scale_step)), int(round(w * scale_step)))
        if size[0] < MIN_PYRAMID_SIDE or size[1] < MIN_PYRAMID_SIDE:
            break
        levels.append(resize_bilinear(levels[-1], size, (1 / scale_step, 1 / scale_step)))
    return levels


def warp_bicubic(images: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample (N, C, H, W) ``images`` at x + flow, bicubic, zero outside (OpenCV ``remap``)."""
    n, _, h, w = images.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(images, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


# --------------------------------------------------------------------------- finite differences
def centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred differences of (N, H, W); half one-sided differences on the border (as OpenCV)."""
    p = F.pad(img.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    return 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]), 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])


def forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of (..., H, W), zero on the last column / row."""
    return F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1)), F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))


def divergence(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence, the negative adjoint of :func:`forward_gradient`."""
    return (px - F.pad(px[..., :, :-1], (1, 0))) + (py - F.pad(py[..., :-1, :], (0, 0, 1, 0)))


# --------------------------------------------------------------------------- median filter
@lru_cache(maxsize=4)
def _median_network(n: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """Comparators of Batcher's odd-even merge sort pruned to what the median of ``n`` needs.

    Each entry is (i, j, need_min, need_max): after it, slot i holds min and slot j max.
    """
    size = 1 << (n - 1).bit_length()
    comps = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        comps.append((i + j, i + j + k))
            k //= 2
        p *= 2
    # Slots >= n hold +inf: a comparator with its upper slot there changes nothing.
    comps = [(a, b) for a, b in comps if b < n]
    needed = {n // 2}
    kept = []
    for a, b in reversed(comps):
        need_min, need_max = a in needed, b in needed
        if need_min or need_max:
            kept.append((a, b, need_min, need_max))
            needed |= {a, b}
    return tuple(reversed(kept))


def _median_torch(u: torch.Tensor, ksize: int) -> torch.Tensor:
    r = ksize // 2
    h, w = u.shape[-2:]
    flat = u.reshape(-1, 1, h, w)
    p = F.pad(flat, (r, r, r, r), mode="replicate").squeeze(1)
    slots: list[torch.Tensor | None] = [p[:, dy : dy + h, dx : dx + w] for dy in range(ksize) for dx in range(ksize)]
    for a, b, need_min, need_max in _median_network(ksize * ksize):
        lo, hi = slots[a], slots[b]
        slots[a] = torch.minimum(lo, hi) if need_min else None
        slots[b] = torch.maximum(lo, hi) if need_max else None
    return slots[(ksize * ksize) // 2].reshape(u.shape)


def _median_opencv(u: torch.Tensor, ksize: int) -> torch.Tensor:
    import cv2

    planes = u.detach().contiguous().reshape(-1, *u.shape[-2:]).numpy()
    out = np.stack([cv2.medianBlur(plane, ksize) for plane in planes])
    return torch.from_numpy(out).reshape(u.shape)


def median_filter(u: torch.Tensor, ksize: int = 5, use_opencv: bool | None = None) -> torch.Tensor:
    """Median of each ksize x ksize window of (..., H, W), edges replicated (``cv2.medianBlur``).

    On CPU OpenCV's SIMD median is used (much faster than any tensor formulation); elsewhere a
    pruned sorting network of elementwise min/max, which ``torch.compile`` fuses into one kernel.
    """
    if ksize <= 1:
        return u
    if use_opencv is None:
        use_opencv = u.device.type == "cpu" and u.dtype == torch.float32
    return _median_opencv(u, ksize) if use_opencv else _median_torch(u, ksize)


# --------------------------------------------------------------------------- one iteration
def primal_dual_step(
    u: torch.Tensor,
    p: torch.Tensor,
    i1w_grad: torch.Tensor,
    grad_sq: torch.Tensor,
    rho_c: torch.Tensor,
    active: torch.Tensor,
    l_t: float,
    theta: float,
    taut: float,
    stop_error: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One TV-L1 inner iteration for the whole batch; pairs not ``active`` are left unchanged.

    Shapes: u (N, 2, H, W) flow; p (N, 2, 2, H, W) dual variables (flow component, x/y);
    i1w_grad (N, 2, H, W) gradient of the warped I1; grad_sq and rho_c (N, H, W); active (N,).
    Returns the new (u, p, active); a pair goes inactive once its squared update sum is
    ``<= stop_error`` (OpenCV's epsilon**2 * area).
    """
    # Thresholding: v = u + d, the minimiser of the data term near u.
    rho = rho_c + (i1w_grad * u).sum(1)
    lg = l_t * grad_sq
    fi = torch.where(
        rho < -lg,
        l_t,
        torch.where(
            rho > lg, -l_t, torch.where(grad_sq > GRAD_EPS, -rho / torch.where(grad_sq > GRAD_EPS, grad_sq, 1.0), 0.0)
        ),
    )
    v = u + fi.unsqueeze(1) * i1w_grad
    # Primal update.
    u_new = v + theta * divergence(p[:, :, 0], p[:, :, 1])
    error = (u_new - u).square().sum((1, 2, 3))
    # Dual update (semi-implicit projection).
    ux, uy = forward_gradient(u_new)
    norm = 1.0 + taut * torch.sqrt(ux * ux + uy * uy)
    p_new = (p + taut * torch.stack((ux, uy), dim=2)) / norm.unsqueeze(2)
    keep = active.view(-1, 1, 1, 1)
    u = torch.where(keep, u_new, u)
    p = torch.where(keep.unsqueeze(-1), p_new, p)
    return u, p, active & (error > stop_error)


# --------------------------------------------------------------------------- solver
class TVL1:
    """Batched TV-L1 solver: ``TVL1(device="cuda")(frames0, frames1)`` -> (N, 2, H, W) float32.

    ``compile``: True, False or "auto" (compile on CUDA, and on CPU when a C++ compiler exists);
    ``eager_reason`` is recorded in :attr:`kernel_info` when ``compile`` is False (who chose it).
    ``check_every``: inner iterations between host-side checks whether any pair still runs.
    ``threads``: CPU threads while solving (default 1). On a shared or busy CPU, two OpenMP
    threads wait at every fused kernel's barrier for a descheduled peer (measured 10-30x slower
    under load), so one thread per solver and one solver per core (``--workers``) is faster.
    ``chunk``: pairs solved together; default all of them on CUDA and 1 on CPU, where a pair's
    working set (~6 MB at 340x256) stays in cache and whole-batch steps measured ~3x slower.
    ``compact_below``: once at most this fraction of a batch's pairs still runs (checked every
    ``check_every`` iterations), the running pairs are gathered into a smaller batch, so pairs
    that converged early stop costing work (0 turns this off; the flow is the same either way).
    """

    def __init__(
        self,
        params: TVL1Params | None = None,
        device: str | torch.device = "cpu",
        compile: bool | str = "auto",
        check_every: int = 10,
        threads: int | None = 1,
        chunk: int | None = None,
        compact_below: float = 0.5,
        eager_reason: str = "compile=False",
        compile_backend: str | Callable = "inductor",
        record_iterations: bool = False,
    ):
        self.params = params or TVL1Params()
        self.device = torch.device(device)
        reason = eager_reason
        if compile == "auto":
            compile = self.device.type == "cuda" or compiler_available()
            if not compile:
                reason = "no C++ compiler (g++, c++ or clang++) on PATH for torch.compile"
                warn_once(f"{reason}; TV-L1 runs eagerly (about 4x slower on CPU)")
        self.step = CompiledOrEager(primal_dual_step, bool(compile), backend=compile_backend, reason=reason)
        self.median = CompiledOrEager(
            _median_torch, bool(compile) and self.device.type != "cpu", backend=compile_backend
        )
        self.opencv_median = self.device.type == "cpu"  # the GPU path (sorting network) when False
        self.check_every = max(1, int(check_every))
        self.threads = threads
        self.chunk = chunk if chunk is not None else (1 if self.device.type == "cpu" else 0)
        self.compact_below = compact_below
        self.iterations: list[int] = []  # inner iterations run per scale (finest first), last call
        self.record_iterations = record_iterations
        self.pair_iterations: list[torch.Tensor] = []  # per (level, warp), coarsest first: iterations of each pair

    @property
    def compiled(self) -> bool:
        return self.step.compiled

    @property
    def kernel(self) -> str:
        """The inner iteration's path: "compiled" (torch.compile) or "eager"."""
        return "compiled" if self.step.compiled else "eager"

    @property
    def kernel_info(self) -> dict:
        """``{"compiled", "kernel", "kernel_note"}`` for flow.json and benchmark tables."""
        return {
            "compiled": self.compiled,
            "kernel": self.kernel,
            "kernel_note": "" if self.compiled else self.step.reason,
        }

    def __call__(self, frames0, frames1) -> torch.Tensor:
        """Flow from each frame of ``frames0`` to the same-index frame of ``frames1``."""
        # Move the frames as they come (uint8 is 4x smaller than float) and convert on the device.
        i0 = to_gray(torch.as_tensor(frames0).to(self.device, non_blocking=True))
        i1 = to_gray(torch.as_tensor(frames1).to(self.device, non_blocking=True))
        if i0.shape != i1.shape:
            raise ValueError(f"frame batches differ in shape: {tuple(i0.shape)} vs {tuple(i1.shape)}")
        if min(i0.shape[-2:]) < 3:
            raise ValueError(f"frames must be at least 3x3 pixels, got {tuple(i0.shape[-2:])}")
        if self.device.type != "cpu" or not self.threads:
            return self._solve_chunks(i0, i1)
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._solve_chunks(i0, i1)
        finally:
            torch.set_num_threads(before)

    def _solve_chunks(self, i0: torch.Tensor, i1: torch.Tensor) -> torch.Tensor:
        step = self.chunk if self.chunk and self.chunk < len(i0) else len(i0)
        if step == len(i0):
            return self.solve(i0, i1)
        return torch.cat([self.solve(i0[k : k + step], i1[k : k + step]) for k in range(0, len(i0), step)])

    @torch.no_grad()
    def solve(self, i0: torch.Tensor, i1: torch.Tensor) -> torch.Tensor:
        """Coarse-to-fine TV-L1 on grey (N, H, W) float32 images in [0, 255]."""
        prm = self.params
        pyr0 = build_pyramid(i0, prm.nscales, prm.scale_step)
        pyr1 = build_pyramid(i1, prm.nscales, prm.scale_step)
        n = i0.shape[0]
        u = torch.zeros((n, 2, *pyr0[-1].shape[-2:]), device=i0.device, dtype=torch.float32)
        self.iterations = [0] * len(pyr0)
        self.pair_iterations = []
        for s in range(len(pyr0) - 1, -1, -1):
            if u.shape[-2:] != pyr0[s].shape[-2:]:
                u = resize_bilinear(u, tuple(pyr0[s].shape[-2:])) / prm.scale_step
            u = self._one_scale(pyr0[s], pyr1[s], u, s)
        return u

    def _median(self, u: torch.Tensor) -> torch.Tensor:
        k = self.params.median_filtering
        if u.device.type == "cpu" and self.opencv_median:
            return median_filter(u, k, use_opencv=True)
        return self.median(u, k)

    def _one_scale(self, i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, level: int) -> torch.Tensor:
        prm = self.params
        n, h, w = i0.shape
        stop_error = prm.epsilon * prm.epsilon * h * w
        l_t, taut = prm.lambda_ * prm.theta, prm.tau / prm.theta
        i1x, i1y = centered_gradient(i1)
        stack = torch.stack((i1, i1x, i1y), dim=1)
        p = torch.zeros((n, 2, 2, h, w), device=u.device, dtype=u.dtype)
        total = prm.outer_iterations * prm.inner_iterations
        for _ in range(prm.warps):
            warped = warp_bicubic(stack, u)
            i1w, i1w_grad = warped[:, 0], warped[:, 1:].contiguous()
            grad_sq = i1w_grad.square().sum(1)
            rho_c = i1w - (i1w_grad * u).sum(1) - i0
            # The running pairs: all of them, until most have converged and the rest are gathered
            # into a smaller batch (``rows``: their places in the full batch; None = all).
            rows, run = None, [u, p, i1w_grad, grad_sq, rho_c]
            active = torch.ones(n, dtype=torch.bool, device=u.device)
            ran = torch.zeros(n, dtype=torch.int32, device=u.device) if self.record_iterations else None
            for it in range(total):
                if it % prm.inner_iterations == 0 and prm.median_filtering > 1:
                    run[0] = torch.where(active.view(-1, 1, 1, 1), self._median(run[0]), run[0])
                if ran is not None:
                    ran.index_add_(0, rows if rows is not None else torch.arange(n, device=u.device), active.int())
                run[0], run[1], active = self.step(*run, active, l_t, prm.theta, taut, stop_error)
                self.iterations[level] += 1
                if (it + 1) % self.check_every == 0:
                    running = int(active.sum())
                    if running == 0:
                        break
                    if running <= self.compact_below * len(active):
                        u, p = _put_rows(u, rows, run[0]), _put_rows(p, rows, run[1])
                        keep = torch.nonzero(active).flatten()
                        rows = keep if rows is None else rows[keep]
                        run = [t[keep] for t in run]
                        active = active[keep]
            u, p = _put_rows(u, rows, run[0]), _put_rows(p, rows, run[1])
            if ran is not None:
                self.pair_iterations.append(ran)
        return u


def _put_rows(full: torch.Tensor, rows: torch.Tensor | None, part: torch.Tensor) -> torch.Tensor:
    """``full`` with the batch rows ``rows`` replaced by ``part`` (``part`` itself when rows is None)."""
    return part if rows is None else full.index_copy(0, rows, part)
