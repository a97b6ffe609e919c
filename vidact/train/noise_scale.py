"""The gradient noise scale B_simple = tr(Σ)/|G|², measured while training (McCandlish et al. 2018).

For a batch of B examples, the squared norm of its mean gradient has expectation
E|G_B|² = |G|² + tr(Σ)/B (G the true gradient, Σ the per-example gradient covariance). Two batch
sizes B_small < B_big give two such equations, solved for the two unknowns (the paper's
appendix A):

    |G|²  ≈ (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small)
    tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)

Each estimate is unbiased but noisy, so each is smoothed on its own (a bias-corrected exponential
moving average) and B_simple is their ratio. B_simple is about the critical batch: batches much
larger need more examples for the same progress, E = E_min (1 + B/B_noise).

Where the two batches come from:

- one process: the step's batch is cut into k micro-batches of the BatchNorm sub-batch (clip i
  goes to micro-batch i mod k, the layout of :mod:`vidact.train.subbatch_bn`), each run forward
  and backward alone; |G_small|² is the mean of their squared norms and |G_big|² that of their
  mean, which is the batch's gradient (the step then uses it). Exact only where no BatchNorm
  normalises over the whole batch (sub-batch BN, or no BatchNorm);
- under DDP: the small batch is each rank's local gradient, read by a communication hook before
  the all-reduce, the big one the averaged gradient; one extra scalar all-reduce.

Norms are computed in fp32 (and unscaled when a gradient scaler is on); a step whose norms are
not finite is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from vidact.runtime.wrap import find_ddp
from vidact.train.accumulate import accumulate_gradients


def two_batch_estimate(small_sq: float, big_sq: float, b_small: float, b_big: float) -> tuple[float, float]:
    """(|G|², tr(Σ)) from the squared gradient norms of a small and a big batch (unbiased, unsmoothed)."""
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big, got {b_small} and {b_big}")
    g_sq = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
    return g_sq, trace


class _EMA:
    """Exponential moving average with the start-up bias removed (Adam's correction)."""

    def __init__(self, beta: float):
        self.beta, self.raw, self.count = beta, 0.0, 0

    def update(self, value: float) -> None:
        self.raw = self.beta * self.raw + (1.0 - self.beta) * value
        self.count += 1

    @property
    def value(self) -> float | None:
        return self.raw / (1.0 - self.beta**self.count) if self.count else None


class NoiseScale:
    """Smoothed |G|² and tr(Σ) over measured steps, and their ratio B_simple (in examples, e.g. clips)."""

    def __init__(self, beta: float = 0.9):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.g_sq, self.trace = _EMA(beta), _EMA(beta)
        self.skipped = 0
        self.steps: list[tuple[float, float]] = []  # every step's unsmoothed (|G|², tr(Σ)), for the spread

    def update(self, small_sq: float, big_sq: float, b_small: float, b_big: float) -> bool:
        """Add one step's norms; False (and nothing added) when a norm is not finite."""
        if not (math.isfinite(small_sq) and math.isfinite(big_sq)):
            self.skipped += 1
            return False
        g_sq, trace = two_batch_estimate(small_sq, big_sq, b_small, b_big)
        self.g_sq.update(g_sq)
        self.trace.update(trace)
        self.steps.append((g_sq, trace))
        return True

    @property
    def measurements(self) -> int:
        return self.g_sq.count

    @property
    def b_simple(self) -> float | None:
        """tr(Σ)/|G|² of the smoothed estimates; None before a measurement or when |G|² <= 0 (all noise)."""
        g_sq, trace = self.g_sq.value, self.trace.value
        if g_sq is None or g_sq <= 0 or trace is None:
            return None
        return max(trace, 0.0) / g_sq

    def b_simple_low(self, z: float = 1.0) -> float | None:
        """A lower bound of B_simple, ``z`` standard errors below: the steps' mean tr(Σ) less ``z`` of its
        standard errors over their mean |G|² plus ``z`` of its own (0 when the bound's tr(Σ) is; None with
        fewer than 2 steps). Few steps of a noisy estimate give a low bound, which tightens as steps add up."""
        n = len(self.steps)
        if n < 2:
            return None
        stats = []
        for values in zip(*self.steps):
            mean = sum(values) / n
            stats.append((mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)))
        (g_mean, g_se), (t_mean, t_se) = stats
        high_g = g_mean + z * g_se
        return max(t_mean - z * t_se, 0.0) / high_g if high_g > 0 else None

    def to_dict(self) -> dict:
        return {
            "g_sq": self.g_sq.value,
            "trace": self.trace.value,
            "b_simple": self.b_simple,
            "b_simple_low": self.b_simple_low(),
            "measurements": self.measurements,
            "skipped": self.skipped,
        }


# --------------------------------------------------------------------------- norms
def squared_norm(tensors: Iterable[torch.Tensor | None], scale: float = 1.0) -> float:
    """Σ‖t‖² over ``tensors`` in fp32, divided by ``scale``² (a gradient scaler's factor)."""
    found = [t for t in tensors if t is not None]
    if not found:
        return 0.0
    norms = torch._foreach_norm([t.detach().float() for t in found])
    return float(torch.stack(norms).double().pow(2).sum()) / scale**2


def gradient_squared_norm(model: nn.Module, scale: float = 1.0) -> float:
    """‖∇‖² of the parameters' current gradients (fp32, unscaled)."""
    return squared_norm((p.grad for p in model.parameters()), scale)


# --------------------------------------------------------------------------- one process: micro-batches
def micro_batches_exact(model: nn.Module) -> bool:
    """True when micro-batches give the batch's own gradient: no BatchNorm in training mode normalises
    over the whole batch (sub-batch BN layers, or none at all)."""
    from vidact.train.subbatch_bn import is_sub_batch_norm

    return not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and not is_sub_batch_norm(m)
        for m in model.modules()
    )


@dataclass
class MicroBatchStep:
    """The outcome of :func:`micro_batch_backward`."""

    loss: torch.Tensor  # the batch's mean loss (detached, unscaled)
    small_sq: float  # mean squared norm of the micro-batches' gradients
    big_sq: float  # squared norm of their mean (the batch's gradient)
    micro_size: int
    batch_size: int


def micro_batch_backward(model: nn.Module, x, y: torch.Tensor, k: int, loss_of, *, scale: float = 1.0):
    """:func:`vidact.train.accumulate.accumulate_gradients` over ``k`` equal micro-batches (their mean gradient
    left in ``.grad``, as one backward of the whole batch would give, running statistics folded once), with
    each micro-batch's gradient read as it is added: both squared norms.

    ``loss_of(x, y)`` returns a micro-batch's mean loss, multiplied by ``scale`` where a gradient scaler is on
    (the norms and the loss are divided by it). ``.grad`` is emptied first.
    """
    n = len(y)
    if k < 2 or n % k:
        raise ValueError(f"cannot cut a batch of {n} into {k} equal micro-batches")
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    before: list[torch.Tensor | None] = [None] * len(params)
    small = 0.0

    def measure(_: int) -> None:
        """Micro-batch j added g_j / k to ``.grad``: its gradient is k x the difference."""
        nonlocal small
        added = []
        for i, p in enumerate(params):
            grad = None if p.grad is None else p.grad.detach().float()
            added.append(grad if before[i] is None or grad is None else grad - before[i])
            before[i] = None if grad is None else grad.clone()
        small += squared_norm(added, scale) * k * k

    loss = accumulate_gradients(model, x, y, k, loss_of, after_micro_batch=measure)
    return MicroBatchStep(
        loss=loss / scale,
        small_sq=small / k,
        big_sq=gradient_squared_norm(model, scale),
        micro_size=n // k,
        batch_size=n,
    )


# --------------------------------------------------------------------------- DDP: local gradient in a comm hook
class LocalGradientNorm:
    """DDP communication-hook state: the squared norm of this rank's gradient before the all-reduce.

    :func:`averaging_hook` adds each bucket's local ‖g‖² while ``active``, then averages the bucket
    over the ranks as DDP's default hook does.
    """

    def __init__(self):
        self.active = False
        self.sq = torch.zeros((), dtype=torch.float64)

    def start(self) -> None:
        self.active, self.sq = True, torch.zeros((), dtype=torch.float64)

    def stop(self) -> float:
        self.active = False
        return float(self.sq)


def averaging_hook(state: LocalGradientNorm, bucket):  # no annotations: DDP compares them as objects
    """DDP's all-reduce-and-average, recording the bucket's local squared norm first; a future of the bucket."""
    buffer = bucket.buffer()
    if state.active:
        state.sq += buffer.detach().float().pow(2).sum().double().cpu()
    buffer.div_(dist.get_world_size())
    return dist.all_reduce(buffer, async_op=True).get_future().then(lambda fut: fut.value()[0])


def attach_local_norm(model: nn.Module) -> LocalGradientNorm | None:
    """Install :func:`averaging_hook` on ``model``'s DDP wrapper; None when not under DDP."""
    ddp = find_ddp(model)
    if ddp is None:
        return None
    state = LocalGradientNorm()
    ddp.register_comm_hook(state, averaging_hook)
    return state


def mean_over_ranks(value: float) -> float:
    """The mean of a float over all ranks (one scalar all-reduce)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def sub_batches(batch: int, base: int) -> int:
    """Micro-batches of ``base`` examples that a batch of ``batch`` holds exactly (0 when not whole)."""
    return batch // base if batch % base == 0 else 0


def describe(b_simple: float | None, measurements: int) -> str:
    """One short phrase: B_simple ≈ N clips over M measurements."""
    if b_simple is None:
        return f"B_simple not measurable yet ({measurements} measurements)"
    return f"B_simple ≈ {b_simple:.3g} clips ({measurements} measurements)"
