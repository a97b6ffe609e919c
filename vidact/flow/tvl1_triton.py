"""TV-L1 on CUDA: one fused Triton kernel per inner primal-dual iteration, replayed as CUDA graphs.

The kernel (:func:`tvl1_iteration_kernel`) does the whole inner iteration of
:func:`vidact.flow.tvl1.primal_dual_step` for one tile of one pair: thresholding, primal update,
dual update and the pair's squared-update sum over the tile. Grid = (tiles, pairs); the shapes
never change while a level is solved, so the work can be captured once and replayed:

- **Stopping without compaction.** Each pair's "still running" flag and per-tile error partials
  are double-buffered on the device. A program first sums its pair's partials of the previous
  iteration in tile order (a fixed order, so deterministic) and applies OpenCV's rule (run while
  the update exceeds ``epsilon**2 * area``); a pair that has converged returns at once, so it
  costs a flag read, not a pass over its pixels.
- **Double-buffered u and p.** Iteration k reads buffer k % 2 and writes the other one, so tiles
  read their neighbours' halo unchanged; tile 0 counts the iterations each pair ran, and the
  pair's result is the buffer of that count's parity (the median filter writes a third buffer).
- **CUDA graphs** per pyramid level: a chunk of ``check_every`` iterations (with the median
  filter where OpenCV applies it) is captured once per level and replayed for every warp. After
  each chunk the "any pair running" flag goes to pinned memory asynchronously, and the host reads
  it one chunk late (:func:`run_chunks`), so it never waits for the GPU to drain.
- The warping, image gradients and the resize matrices stay on the device as torch tensors.

On CPU the same kernel runs under Triton's interpreter (``TRITON_INTERPRET=1`` before this module
is imported) and :class:`FusedTVL1` drives it without graphs; tests compare it with the torch solver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vidact.errors import first_line
from vidact.flow.compile_choice import warn_once
from vidact.flow.tvl1 import GRAD_EPS, TVL1, TVL1Params, centered_gradient, warp_bicubic

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None


def available(device: str | torch.device) -> tuple[bool, str]:
    """(usable?, why not) for the fused kernel on ``device``."""
    if triton is None:
        return False, "triton is not installed"
    dev = torch.device(device)
    if dev.type == "cuda":
        return True, ""
    if type(tvl1_iteration_kernel).__name__ == "InterpretedFunction":  # TRITON_INTERPRET=1 at import
        return True, ""
    return False, f"the fused Triton kernel needs CUDA (or TRITON_INTERPRET=1 at import), not {dev.type}"


if triton is not None:

    @triton.jit
    def _primal_at(u_ptr, p_ptr, g_ptr, gsq_ptr, rhoc_ptr, ub, pb, sb, r, c, H, W, l_t, theta, EPS: tl.constexpr):
        """Thresholding and primal update at pixels (r, c): new u, old u and the old p there."""
        m = (r < H) & (c < W)
        hw = H * W
        off = r * W + c
        u0 = tl.load(u_ptr + ub + off, mask=m, other=0.0)
        u1 = tl.load(u_ptr + ub + hw + off, mask=m, other=0.0)
        g0 = tl.load(g_ptr + ub + off, mask=m, other=0.0)
        g1 = tl.load(g_ptr + ub + hw + off, mask=m, other=0.0)
        gs = tl.load(gsq_ptr + sb + off, mask=m, other=0.0)
        rc = tl.load(rhoc_ptr + sb + off, mask=m, other=0.0)
        rho = rc + (g0 * u0 + g1 * u1)
        lg = l_t * gs
        safe = tl.where(gs > EPS, gs, 1.0)
        fi = tl.where(rho < -lg, l_t, tl.where(rho > lg, -l_t, tl.where(gs > EPS, tl.div_rn(-rho, safe), 0.0)))
        left = m & (c > 0)
        up = m & (r > 0)
        px0 = tl.load(p_ptr + pb + off, mask=m, other=0.0)
        py0 = tl.load(p_ptr + pb + hw + off, mask=m, other=0.0)
        px1 = tl.load(p_ptr + pb + 2 * hw + off, mask=m, other=0.0)
        py1 = tl.load(p_ptr + pb + 3 * hw + off, mask=m, other=0.0)
        div0 = (px0 - tl.load(p_ptr + pb + off - 1, mask=left, other=0.0)) + (
            py0 - tl.load(p_ptr + pb + hw + off - W, mask=up, other=0.0)
        )
        div1 = (px1 - tl.load(p_ptr + pb + 2 * hw + off - 1, mask=left, other=0.0)) + (
            py1 - tl.load(p_ptr + pb + 3 * hw + off - W, mask=up, other=0.0)
        )
        un0 = (u0 + fi * g0) + theta * div0
        un1 = (u1 + fi * g1) + theta * div1
        return un0, un1, u0, u1, px0, py0, px1, py1

    @triton.jit
    def tvl1_iteration_kernel(
        u_in,
        p_in,
        u_out,
        p_out,
        g,
        gsq,
        rhoc,
        flag_in,
        flag_out,
        part_in,
        part_out,
        iters,
        H,
        W,
        n_tiles,
        tiles_x,
        l_t,
        theta,
        taut,
        stop_error,
        BH: tl.constexpr,
        BW: tl.constexpr,
        BT: tl.constexpr,
        EPS: tl.constexpr,
    ):
        """One inner iteration of one tile (program_id 0) of one pair (program_id 1)."""
        tile = tl.program_id(0)
        n = tl.program_id(1)
        # The previous iteration's squared update of this pair, summed in tile order.
        acc = tl.zeros([BT], dtype=tl.float32)
        for t0 in range(0, n_tiles, BT):
            idx = t0 + tl.arange(0, BT)
            acc += tl.load(part_in + n * n_tiles + idx, mask=idx < n_tiles, other=0.0)
        run = (tl.load(flag_in + n) != 0) & (tl.sum(acc, axis=0) > stop_error)
        first = tile == 0
        tl.store(flag_out + n, run.to(tl.int32), mask=first)
        if run:
            tl.store(iters + n, tl.load(iters + n, mask=first, other=0) + 1, mask=first)
            ty = tile // tiles_x
            tx = tile % tiles_x
            r = ty * BH + tl.arange(0, BH)[:, None]
            c = tx * BW + tl.arange(0, BW)[None, :]
            n64 = n.to(tl.int64)
            hw = H * W
            ub = n64 * 2 * hw
            pb = n64 * 4 * hw
            sb = n64 * hw
            un0, un1, u0, u1, px0, py0, px1, py1 = _primal_at(
                u_in, p_in, g, gsq, rhoc, ub, pb, sb, r, c, H, W, l_t, theta, EPS
            )
            # the forward differences need the new u one pixel right and one below (recomputed here)
            rn0, rn1, _a, _b, _c, _d, _e, _f = _primal_at(
                u_in, p_in, g, gsq, rhoc, ub, pb, sb, r, c + 1, H, W, l_t, theta, EPS
            )
            dn0, dn1, _g, _h, _i, _j, _k, _l = _primal_at(
                u_in, p_in, g, gsq, rhoc, ub, pb, sb, r + 1, c, H, W, l_t, theta, EPS
            )
            m = (r < H) & (c < W)
            has_right = (c + 1) < W
            has_below = (r + 1) < H
            ux0 = tl.where(has_right, rn0 - un0, 0.0)
            uy0 = tl.where(has_below, dn0 - un0, 0.0)
            ux1 = tl.where(has_right, rn1 - un1, 0.0)
            uy1 = tl.where(has_below, dn1 - un1, 0.0)
            norm0 = 1.0 + taut * tl.sqrt_rn(ux0 * ux0 + uy0 * uy0)
            norm1 = 1.0 + taut * tl.sqrt_rn(ux1 * ux1 + uy1 * uy1)
            off = r * W + c
            tl.store(u_out + ub + off, un0, mask=m)
            tl.store(u_out + ub + hw + off, un1, mask=m)
            tl.store(p_out + pb + off, tl.div_rn(px0 + taut * ux0, norm0), mask=m)
            tl.store(p_out + pb + hw + off, tl.div_rn(py0 + taut * uy0, norm0), mask=m)
            tl.store(p_out + pb + 2 * hw + off, tl.div_rn(px1 + taut * ux1, norm1), mask=m)
            tl.store(p_out + pb + 3 * hw + off, tl.div_rn(py1 + taut * uy1, norm1), mask=m)
            d0 = un0 - u0
            d1 = un1 - u1
            err = tl.sum(tl.sum(tl.where(m, d0 * d0 + d1 * d1, 0.0), axis=1), axis=0)
            tl.store(part_out + n * n_tiles + tile, err)
else:  # pragma: no cover
    tvl1_iteration_kernel = None


# --------------------------------------------------------------------------- host-side control
def run_chunks(n_chunks: int, launch: Callable[[int], None], flag_after: Callable[[int], Callable[[], bool]]) -> int:
    """Launch chunks 0.. in order; stop once a chunk reported that no pair still runs.

    ``flag_after(j)`` is called right after chunk j is launched: it starts the (asynchronous)
    copy of "any pair running" and returns a function that waits for and reads it. The reading
    lags one chunk: chunk j+1 is already queued when chunk j's flag is read, so the device never
    idles on the host; the chunk launched past the end costs only its converged-pair exits.
    Returns how many chunks were launched.
    """
    pending = None
    for j in range(n_chunks):
        launch(j)
        ready = flag_after(j)
        if pending is not None and not pending():
            return j + 1
        pending = ready
    return n_chunks


@dataclass
class IterationState:
    """Device buffers of one level's inner iterations, fixed in place so graphs can replay them."""

    u: list[torch.Tensor]  # double buffer (N, 2, H, W)
    p: list[torch.Tensor]  # double buffer (N, 2, 2, H, W)
    med: torch.Tensor  # median-filtered u of a median iteration
    grad: torch.Tensor  # warped gradient (N, 2, H, W)
    grad_sq: torch.Tensor  # (N, H, W)
    rho_c: torch.Tensor  # (N, H, W)
    flags: torch.Tensor  # (2, N) int32: pair ran the iteration before
    partials: torch.Tensor  # (2, N, tiles) float32: squared update per tile
    iters: torch.Tensor  # (N,) int32: iterations each pair ran in this warp
    running: torch.Tensor  # () int32: any pair running after the last chunk
    host_flags: list[torch.Tensor]  # two () int32 slots (pinned on CUDA), written by alternate chunks
    events: list  # CUDA events marking each slot's copy (None on CPU)
    graphs: dict = field(default_factory=dict)

    @classmethod
    def allocate(cls, n: int, h: int, w: int, tiles: int, device: torch.device) -> IterationState:
        f = dict(device=device, dtype=torch.float32)
        return cls(
            u=[torch.zeros(n, 2, h, w, **f) for _ in range(2)],
            p=[torch.zeros(n, 2, 2, h, w, **f) for _ in range(2)],
            med=torch.zeros(n, 2, h, w, **f),
            grad=torch.zeros(n, 2, h, w, **f),
            grad_sq=torch.zeros(n, h, w, **f),
            rho_c=torch.zeros(n, h, w, **f),
            flags=torch.zeros(2, n, dtype=torch.int32, device=device),
            partials=torch.zeros(2, n, tiles, **f),
            iters=torch.zeros(n, dtype=torch.int32, device=device),
            running=torch.zeros((), dtype=torch.int32, device=device),
            host_flags=[torch.zeros((), dtype=torch.int32, pin_memory=device.type == "cuda") for _ in range(2)],
            events=[torch.cuda.Event() for _ in range(2)] if device.type == "cuda" else [None, None],
        )

    def start_warp(self, u: torch.Tensor, p: torch.Tensor) -> None:
        """Every pair runs the first iteration of a warp (as OpenCV restarts its count per warp)."""
        self.u[0].copy_(u)
        self.p[0].copy_(p)
        self.flags[0].fill_(1)
        self.partials[0].fill_(float("inf"))
        self.iters.zero_()

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each pair's u and p from the buffer its last iteration wrote (parity of its count)."""
        odd = (self.iters % 2 == 1).view(-1, 1, 1, 1)
        return torch.where(odd, self.u[1], self.u[0]), torch.where(odd.unsqueeze(-1), self.p[1], self.p[0])


class FusedTVL1(TVL1):
    """:class:`TVL1` whose inner iterations run as the fused Triton kernel (CUDA, or the interpreter on CPU).

    ``tile``: (rows, columns) per program; ``graphs``: capture CUDA graphs (default on CUDA).
    ``pair_iterations`` (when ``record_iterations``) lists the per-pair iteration counts of every
    (level, warp), coarsest level first, as the torch solver records them.
    """

    def __init__(
        self,
        params: TVL1Params | None = None,
        device: str | torch.device = "cuda",
        check_every: int = 10,
        tile: tuple[int, int] = (16, 64),
        graphs: bool | None = None,
        record_iterations: bool = False,
        num_warps: int = 4,
    ):
        ok, why = available(device)
        if not ok:
            raise RuntimeError(why)
        dev = torch.device(device)
        super().__init__(
            params,
            device=dev,
            compile=dev.type == "cuda",
            check_every=check_every,
            threads=None,
            chunk=0,
            compact_below=0.0,
            record_iterations=record_iterations,
        )
        self.opencv_median = False  # the sorting network on the device, not cv2 on the host
        self.tile = tile
        self.num_warps = num_warps
        self.graphs = dev.type == "cuda" if graphs is None else graphs
        self._states: dict[tuple[int, int, int], IterationState] = {}
        self._seen: set = set()
        self.chunks_launched = 0
        self.graph_failure = ""
        self.fallback: TVL1 | None = None  # the torch step, once the fused kernel has failed
        self.failure = ""

    @property
    def kernel(self) -> str:
        return self.fallback.kernel if self.fallback is not None else "triton-fused"

    @property
    def kernel_info(self) -> dict:
        if self.fallback is not None:
            info = self.fallback.kernel_info
            return {**info, "kernel_note": "; ".join(x for x in (self.failure, info["kernel_note"]) if x)}
        note = "CUDA graphs per level" if self.graphs else (self.graph_failure or "no CUDA graphs")
        return {"compiled": True, "kernel": "triton-fused", "kernel_note": note}

    def __call__(self, frames0, frames1) -> torch.Tensor:
        """As :meth:`TVL1.__call__`; if the fused kernel fails, warns once and solves with the torch step."""
        if self.fallback is None:
            try:
                return super().__call__(frames0, frames1)
            except (ValueError, torch.cuda.OutOfMemoryError):  # bad input or too big a batch: not the kernel's fault
                raise
            except Exception as exc:
                self.failure = f"fused Triton kernel failed ({first_line(exc, with_type=True)})"
                warn_once(f"{self.failure}; TV-L1 runs the torch.compile step instead")
                self.fallback = TVL1(self.params, device=self.device, compile=self.device.type == "cuda")
        return self.fallback(frames0, frames1)

    # ------------------------------------------------------------------ one level
    def _one_scale(self, i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, level: int) -> torch.Tensor:
        prm = self.params
        n, h, w = i0.shape
        bh, bw = self.tile
        tiles_x, tiles_y = -(-w // bw), -(-h // bh)
        key = (n, h, w)
        if key not in self._states:
            self._states[key] = IterationState.allocate(n, h, w, tiles_x * tiles_y, i0.device)
        st = self._states[key]
        consts = (
            h,
            w,
            tiles_x * tiles_y,
            tiles_x,
            prm.lambda_ * prm.theta,
            prm.theta,
            prm.tau / prm.theta,
            prm.epsilon * prm.epsilon * h * w,
        )
        grid = (tiles_x * tiles_y, n)
        i1x, i1y = centered_gradient(i1)
        stack = torch.stack((i1, i1x, i1y), dim=1)
        p = torch.zeros((n, 2, 2, h, w), device=u.device, dtype=u.dtype)
        total = prm.outer_iterations * prm.inner_iterations
        size = self.check_every
        n_chunks = -(-total // size)
        for _ in range(prm.warps):
            warped = warp_bicubic(stack, u)
            i1w, grad = warped[:, 0], warped[:, 1:]
            st.grad.copy_(grad)
            torch.sum(grad.square(), 1, out=st.grad_sq)
            st.rho_c.copy_(i1w - (grad * u).sum(1) - i0)
            st.start_warp(u, p)

            def launch(j: int) -> None:
                k0, k1 = j * size, min((j + 1) * size, total)
                self._launch_chunk(st, k0, k1, grid, consts, (n, h, w))

            launched = run_chunks(n_chunks, launch, lambda j: self._flag_after(st, j % 2))
            self.chunks_launched += launched
            self.iterations[level] += min(total, launched * size)
            u, p = st.result()
            if self.record_iterations:
                self.pair_iterations.append(st.iters.clone())
        return u

    def _iterations(self, st: IterationState, k0: int, k1: int, grid, consts) -> None:
        prm = self.params
        for k in range(k0, k1):
            a, b = k % 2, (k + 1) % 2
            u_in = st.u[a]
            if k % prm.inner_iterations == 0 and prm.median_filtering > 1:
                st.med.copy_(self.median(st.u[a], prm.median_filtering))
                u_in = st.med
            tvl1_iteration_kernel[grid](
                u_in,
                st.p[a],
                st.u[b],
                st.p[b],
                st.grad,
                st.grad_sq,
                st.rho_c,
                st.flags[a],
                st.flags[b],
                st.partials[a],
                st.partials[b],
                st.iters,
                *consts,
                BH=self.tile[0],
                BW=self.tile[1],
                BT=32,
                EPS=GRAD_EPS,
                num_warps=self.num_warps,
            )
        torch.amax(st.flags[k1 % 2], dim=0, out=st.running)

    def _launch_chunk(self, st: IterationState, k0: int, k1: int, grid, consts, shape) -> None:
        prm = self.params
        if not self.graphs:
            self._iterations(st, k0, k1, grid, consts)
            return
        medians = tuple(k - k0 for k in range(k0, k1) if k % prm.inner_iterations == 0 and prm.median_filtering > 1)
        sig = (k0 % 2, k1 - k0, medians)
        graph = st.graphs.get(sig)
        if graph is None:
            if (shape, sig) not in self._seen:  # first time: run it plainly (compiles kernels, warms up)
                self._seen.add((shape, sig))
                self._iterations(st, k0, k1, grid, consts)
                return
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    self._iterations(st, k0, k1, grid, consts)
            except Exception as exc:  # capture refused: launch one by one from now on, and say so
                self.graphs = False
                self.graph_failure = f"CUDA graph capture failed ({first_line(exc, with_type=True)})"
                warn_once(f"{self.graph_failure}; TV-L1 launches its fused kernels one by one")
                self._iterations(st, k0, k1, grid, consts)
                return
            st.graphs[sig] = graph
        graph.replay()

    def _flag_after(self, st: IterationState, slot: int) -> Callable[[], bool]:
        """Start copying "any pair running" into host slot ``slot``; return its (waiting) reader."""
        host, event = st.host_flags[slot], st.events[slot]
        host.copy_(st.running, non_blocking=event is not None)
        if event is None:
            value = bool(host)
            return lambda: value
        event.record()

        def read() -> bool:
            event.synchronize()
            return bool(host)

        return read
