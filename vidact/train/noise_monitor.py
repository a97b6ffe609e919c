"""When a training run measures the gradient noise scale, what it costs, and what it says.

:class:`NoiseMonitor` picks the steps (every N-th step of the run, by its iteration count, so a resumed
run measures the same steps), keeps the smoothed estimate
(:class:`vidact.train.noise_scale.NoiseScale`), times the measured steps against unmeasured steps
of the same shape (the overhead), and calls back once after a given number of measurements (the
multigrid batch-rule check).

Its method is fixed for the run: ``ddp`` (each rank's local gradient against the average),
``micro`` (one process, batches cut into BatchNorm sub-batches; only steps whose batch holds two or
more), or ``steps``, for one process whose batches cannot be cut (BatchNorm over a whole batch of
8): the gradients of ``CONSECUTIVE`` consecutive steps against their mean (GPT-NeoX's approach),
an approximation, as the weights move between those steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vidact.train.noise_scale import NoiseScale, squared_norm, sub_batches
from vidact.train.subbatch_bn import BN_BASE

METHODS = ("ddp", "micro", "steps")
CONSECUTIVE = 4  # the steps method: each step's gradient against the mean of 4

DEFAULT_CHECK_EVERY = 4  # the paper rule's check: every 4th step of the first 64
DEFAULT_CHECK_WINDOW = 64
DEFAULT_CHECK_MEASUREMENTS = 8  # it speaks after 8 measurements


@dataclass
class _ShapeClock:
    """Forward-backward seconds of unmeasured steps of one input shape."""

    seconds: float = 0.0
    clips: int = 0

    def per_clip(self) -> float | None:
        return self.seconds / self.clips if self.clips else None


@dataclass
class NoiseMonitor:
    """The measurement schedule, estimate and cost of one run's noise-scale measurement."""

    every: int
    method: str = "micro"
    base: int = BN_BASE  # clips per micro-batch on one process
    window: int | None = None  # measure only the first this many steps (None: the whole run)
    beta: float = 0.9
    on_ready: Callable[[NoiseScale], None] | None = None  # called once: see settle
    ready_after: int = DEFAULT_CHECK_MEASUREMENTS
    estimate: NoiseScale = field(init=False)
    measured_seconds: float = 0.0
    measured: list[tuple[tuple, int, float]] = field(default_factory=list)  # (shape, clips, seconds)
    clocks: dict[tuple, _ShapeClock] = field(default_factory=dict)
    _sum: list | None = None  # the steps method: the window's gradient sum ...
    _small: list[float] = field(default_factory=list)  # ... and each step's squared norm
    _batch: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        self.every = max(self.every, CONSECUTIVE) if self.method == "steps" else self.every
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        self.estimate = NoiseScale(self.beta)

    def mode(self, iteration: int, batch: int) -> str | None:
        """How step ``iteration`` (a batch of ``batch`` clips on this rank) is measured: the method, or None."""
        if self.window is not None and iteration >= self.window:
            self.settle()
            return None
        if self.method == "steps":
            return "steps" if iteration % self.every < CONSECUTIVE else None
        if iteration % self.every:
            return None
        if self.method == "micro" and sub_batches(batch, self.base) < 2:
            return None
        return self.method

    def add_step(
        self, iteration: int, grads: list[torch.Tensor | None], batch: int, scale: float = 1.0
    ) -> tuple | None:
        """The steps method: add one step's gradients; (small², big², B_small, B_big) when the window of
        ``CONSECUTIVE`` equal batches is complete, else None."""
        if iteration % self.every == 0 or batch != self._batch:  # a new window (also after a resume)
            self._sum, self._small, self._batch = None, [], batch
        self._small.append(squared_norm(grads, scale))
        found = [g.detach().float() for g in grads if g is not None]
        self._sum = [g.clone() for g in found] if self._sum is None else [a.add_(g) for a, g in zip(self._sum, found)]
        if len(self._small) < CONSECUTIVE:
            return None
        big = squared_norm([g / CONSECUTIVE for g in self._sum], scale)
        small = sum(self._small) / CONSECUTIVE
        self._sum, self._small = None, []
        return small, big, batch, batch * CONSECUTIVE

    def record(self, small_sq: float, big_sq: float, b_small: float, b_big: float) -> dict:
        """Add one measured step; the ``metrics.jsonl`` record (``kind: noise``)."""
        ok = self.estimate.update(small_sq, big_sq, b_small, b_big)
        if self.estimate.measurements >= self.ready_after:
            self.settle()
        return {
            "kind": "noise",
            "b_small": b_small,
            "b_big": b_big,
            "small_sq": small_sq,
            "big_sq": big_sq,
            "finite": ok,
            "method": self.method,
            **{k: v for k, v in self.estimate.to_dict().items() if k in ("g_sq", "trace", "b_simple")},
        }

    def settle(self) -> None:
        """Call ``on_ready`` once: after ``ready_after`` measurements, or when the window or the run ends first."""
        callback, self.on_ready = self.on_ready, None
        if callback is not None:
            callback(self.estimate)

    def time_step(self, shape: tuple, clips: int, seconds: float, measured: bool) -> None:
        """Forward-backward seconds of one step of input ``shape``."""
        if measured:
            self.measured.append((shape, clips, seconds))
        else:
            clock = self.clocks.setdefault(shape, _ShapeClock())
            clock.seconds += seconds
            clock.clips += clips

    def overhead_seconds(self) -> float | None:
        """Seconds the measured steps took beyond unmeasured steps of the same input shape (per clip); None
        when no measured step has an unmeasured one of its shape to compare with."""
        extra, compared = 0.0, 0
        for shape, clips, seconds in self.measured:
            per_clip = self.clocks.get(shape, _ShapeClock()).per_clip()
            if per_clip is not None:
                extra += seconds - clips * per_clip
                compared += 1
        return extra if compared else None

    def summary(self, train_seconds: float) -> dict:
        """The estimate and its measured cost, for the run's summary."""
        overhead = self.overhead_seconds()
        return {
            **self.estimate.to_dict(),
            "overhead_seconds": overhead,
            "overhead_fraction": overhead / train_seconds if overhead is not None and train_seconds > 0 else None,
        }


def noise_scale_line(summary: dict) -> str:
    """One line for a run's noise-scale summary: the last smoothed B_simple and the measured overhead."""
    b = summary.get("b_simple")
    head = f"gradient noise scale B_simple ≈ {b:.3g} clips" if b is not None else "gradient noise scale: |G|² <= 0"
    fraction = summary.get("overhead_fraction")
    cost = (
        f"{100 * fraction:.1f}% of training time"
        if fraction is not None
        else "not measurable (no unmeasured step of the same shape)"
    )
    return f"{head} ({summary['measurements']} measurements); measuring it cost {cost}"
