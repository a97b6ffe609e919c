"""A short probe before training: the gradient noise scale, an LR range test and what a coarse clip costs.

The probe trains the run's freshly initialised model for a few steps (its weights, the random
generators and nothing else are restored afterwards, so the run that follows is the run a user
would get by giving the probe's decisions by hand). Its time is bounded: ``PROBE_FRACTION`` of
the planned run's training, estimated from its first steps (a few at the full shape and base
batch: seconds per clip, loading included) and the planned run's clips (a clip of T' frames at
crop S' counting T'·S'²/(T·S²)), split between the parts asked for:

- **noise scale**: steps of ``NOISE_MICRO_BATCHES`` micro-batches of the 8-clip BatchNorm
  sub-batch at the full shape (the shape the run ends at and is judged at; at the coarsest
  shape, at the start of training, B_simple came out 10-20x larger on the synthetic sets, where
  the full shape's agreed with the clips a batch size needs, ``benchmarks/multigrid.py
  --batch-scaling``), measured by :func:`vidact.train.noise_scale.micro_batch_backward` and
  smoothed by :class:`vidact.train.noise_scale.NoiseScale`, at the run's LR;
- **what a clip costs**: seconds per clip (loading included) of a few coarsest-shape steps
  against the full-shape steps (the first step of each left out: it starts the loader); and, when the measured
  noise scale allows a larger batch, a few coarse steps at the base batch against as many at the
  larger one: whether growing the batch makes a clip cheaper here at all;
- **LR range test** (:mod:`vidact.train.lr_finder`): steps at the base batch at the finest
  long-cycle shape whose steps fit ``MIN_LR_STEPS`` into its share (the coarsest otherwise), as
  many as fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from vidact.data.dataset import ClipSpec
from vidact.data.loader import make_loader
from vidact.runtime.checkpoint import capture_rng_state, restore_rng_state
from vidact.runtime.device import autocast, to_device
from vidact.train.lr import set_lr
from vidact.train.lr_finder import BELOW_RISE, RANGES, geometric_lrs, range_test
from vidact.train.multigrid import long_cycle_shapes
from vidact.train.noise_scale import NoiseScale, micro_batch_backward
from vidact.train.samplers import IterationBudgetSampler
from vidact.train.subbatch_bn import BN_BASE

PROBE_FRACTION = 0.025  # of the planned run's training time
NOISE_MICRO_BATCHES = 4  # micro-batches of 8 clips per noise step: B_small 8, B_big 32
MIN_NOISE_STEPS, MAX_NOISE_STEPS = 4, 60
MIN_LR_STEPS, MAX_LR_STEPS = 30, 100
COST_STEPS = 3  # full-shape steps that time a clip (the first is not counted: it starts the loader)
GROWTH_STEPS = 3  # coarse steps at the base and at a larger batch that time the growth (the first not counted)
CALIBRATION_STEPS = 2  # range-test steps at its first LR that time a step


@dataclass(frozen=True)
class ProbeShape:
    """A clip shape of the probe and its cost relative to the full shape."""

    frames: int
    size: int
    stride: int
    cost: float

    def spec(self) -> ClipSpec:
        return ClipSpec(self.frames, self.size, self.stride)


def probe_shapes(frames: int, size: int, stride: int) -> list[ProbeShape]:
    """The long-cycle shapes, coarsest first (the last is the full shape), each spanning the full clip's time."""
    full = frames * size * size
    return [
        ProbeShape(t, s, max(stride, stride * frames // t), t * s * s / full)
        for t, s, _ in long_cycle_shapes(frames, size)
    ]


@dataclass
class ProbeReport:
    """What the probe measured, what it cost and what it used of its budget."""

    budget_clips: float  # PROBE_FRACTION of the planned run in full-shape clips
    budget_seconds: float = 0.0  # the same in seconds, from the time of the probe's full-shape clips
    seconds: float = 0.0
    noise: dict | None = None
    cost: dict | None = None
    lr: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _AtShape:
    """A batch sampler yielding ``(index, spec)`` keys of another sampler's indices (``spec`` None: the indices)."""

    def __init__(self, sampler: IterationBudgetSampler, spec: ClipSpec | None):
        self.sampler, self.spec = sampler, spec

    def __iter__(self) -> Iterator[list]:
        for batch in self.sampler:
            yield batch if self.spec is None else [(i, self.spec) for i in batch]

    def __len__(self) -> int:
        return len(self.sampler)


@dataclass
class Probe:
    """The probe over one model and training set; see the module's docstring."""

    model: nn.Module
    train_set: object
    device: torch.device
    criterion: nn.Module
    make_optimizer: Callable[[float], torch.optim.Optimizer]  # an optimizer over model at an LR
    batch_size: int
    lr: float
    shapes: list[ProbeShape]
    amp: str = "none"
    workers: int = 0
    decoder_threads: int = 0
    seed: int = 0
    clip_grad: float = 0.0
    loaders: list = field(default_factory=list)  # every loader made, closed when the probe ends

    def batches(self, shape: ProbeShape, batch: int, steps: int, seed: int) -> Iterator[dict]:
        """``steps`` shuffled batches of ``batch`` clips at ``shape`` from the whole training set (rank 0 alone)."""
        sampler = IterationBudgetSampler(len(self.train_set), batch, steps, seed, rank=0, world_size=1)
        spec = None if shape is self.shapes[-1] else shape.spec()
        loader = make_loader(
            self.train_set,
            batch_sampler=_AtShape(sampler, spec),
            workers=self.workers,
            decoder_threads=self.decoder_threads,
            seed=seed,
            device=self.device,
        )
        self.loaders.append(loader)
        return iter(loader)

    def close(self) -> None:
        """End the workers of every loader the probe made (its parts stop reading before a loader ends)."""
        for loader in self.loaders:
            loader.close()
        self.loaders.clear()

    def _xy(self, batch: dict):
        return to_device(batch["video"], self.device), torch.as_tensor(batch["label"]).to(self.device)

    def _loss_of(self, x, y) -> torch.Tensor:
        with autocast(self.device, self.amp):
            return self.criterion(self.model(x).float(), y)

    def _step(self, optimizer, loss: torch.Tensor | float) -> bool:
        """The optimizer step after a backward, unless the loss or a gradient is not finite."""
        finite = math.isfinite(float(loss)) and all(
            p.grad is None or bool(torch.isfinite(p.grad).all()) for p in self.model.parameters()
        )
        if finite:
            if self.clip_grad > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
            optimizer.step()
        return finite

    # ------------------------------------------------------------------ the parts
    def noise_scale(self, seconds: float) -> tuple[dict, list[float]]:
        """B_simple at the full shape over as many steps as fit in ``seconds`` (``MIN_NOISE_STEPS`` to
        ``MAX_NOISE_STEPS``); also each step's seconds per clip."""
        shape, k = self.shapes[-1], min(NOISE_MICRO_BATCHES, len(self.train_set) // BN_BASE)
        estimate = NoiseScale(beta=0.99)  # bias-corrected: about the mean over the probe's few steps
        if k < 2:  # a set of fewer than 16 clips has no two micro-batches to compare
            return {**estimate.to_dict(), "steps": 0, "b_small": BN_BASE, "b_big": 0, "shape": asdict(shape)}, []
        optimizer = self.make_optimizer(self.lr)
        per_clip = []
        self.model.train()
        started = last = time.perf_counter()
        for batch in self.batches(shape, BN_BASE * k, MAX_NOISE_STEPS, self.seed + 0x5EED):
            x, y = self._xy(batch)
            optimizer.zero_grad(set_to_none=True)
            step = micro_batch_backward(self.model, x, y, k, self._loss_of)
            estimate.update(step.small_sq, step.big_sq, step.micro_size, step.batch_size)
            self._step(optimizer, step.loss)
            now = time.perf_counter()
            per_clip.append((now - last) / len(y))
            last = now
            if len(per_clip) >= MIN_NOISE_STEPS and now - started >= seconds:
                break
        return {
            **estimate.to_dict(),
            "steps": len(per_clip),
            "b_small": BN_BASE,
            "b_big": BN_BASE * k,
            "shape": asdict(shape),
            "lr": self.lr,
        }, per_clip

    def full_shape_seconds_per_clip(self, steps: int = COST_STEPS) -> list[float]:
        """Seconds per clip (loading included) of ``steps`` training steps at the full shape and base batch."""
        return self.seconds_per_clip(self.shapes[-1], self.batch_size, steps)

    def seconds_per_clip(self, shape: ProbeShape, clips: int, steps: int) -> list[float]:
        """Seconds per clip (loading included) of ``steps`` training steps of ``clips`` clips at ``shape``."""
        optimizer = self.make_optimizer(self.lr)
        per_clip, last = [], time.perf_counter()
        self.model.train()
        for batch in self.batches(shape, clips, steps, self.seed + 0xC057):
            x, y = self._xy(batch)
            optimizer.zero_grad(set_to_none=True)
            loss = self._loss_of(x, y)
            loss.backward()
            self._step(optimizer, loss.detach())
            now = time.perf_counter()
            per_clip.append((now - last) / len(y))
            last = now
        return per_clip

    def range_test(self, shape: ProbeShape, seconds: float, optimizer_name: str) -> dict:
        """The LR range test at ``shape`` and the base batch over the optimizer's LR range, in about ``seconds``:
        two steps at the range's start time a step, which sets the number of steps (``MIN_LR_STEPS`` to
        ``MAX_LR_STEPS``)."""
        start, end = RANGES[optimizer_name]
        optimizer = self.make_optimizer(start)
        batches = self.batches(shape, self.batch_size, MAX_LR_STEPS + CALIBRATION_STEPS, self.seed + 0x1F)
        self.model.train()

        def step(lr: float) -> float:
            x, y = self._xy(next(batches))
            set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
            loss = self._loss_of(x, y)
            if not torch.isfinite(loss):
                return math.inf
            loss.backward()
            return float(loss.detach()) if self._step(optimizer, loss.detach()) else math.inf

        began = time.perf_counter()
        for _ in range(CALIBRATION_STEPS):
            last = time.perf_counter()
            step(start)
        per_step = time.perf_counter() - last  # the last one: the first starts the loader
        left = seconds - (time.perf_counter() - began)
        steps = max(MIN_LR_STEPS, min(MAX_LR_STEPS, int(left / max(per_step, 1e-9))))
        test = range_test(step, geometric_lrs(start, end, steps), BELOW_RISE[optimizer_name])
        return {**test.to_dict(), "steps": len(test.losses), "planned_steps": steps, "shape": asdict(shape)}


def run_probe(
    probe: Probe,
    *,
    planned_clips: float,
    noise: bool,
    lr_test: bool,
    optimizer_name: str,
    growth: Callable[[dict], int] | None = None,
    notify: Callable[[str], None] | None = None,
) -> ProbeReport:
    """Run the asked parts within ``PROBE_FRACTION`` of the planned run's training time, estimated as
    ``planned_clips`` (full-shape clip equivalents) x the seconds a full-shape clip took in the probe's first
    steps; the model's weights and buffers and the random generators are restored after. ``growth(noise)``
    names the batch multiplier whose coarse steps to time against the base batch's (1: none), given the noise
    measurement."""
    report = ProbeReport(budget_clips=PROBE_FRACTION * planned_clips)
    saved = {k: v.detach().clone() for k, v in probe.model.state_dict().items()}
    rng = capture_rng_state()
    started = time.perf_counter()
    try:
        full = probe.full_shape_seconds_per_clip()
        probe.model.load_state_dict(saved)
        full_s = _typical(full[1:])
        report.budget_seconds = PROBE_FRACTION * planned_clips * full_s
        share = (report.budget_seconds - (time.perf_counter() - started)) / (int(noise) + int(lr_test))
        if lr_test:
            shape = _lr_test_shape(probe, share / (full_s * probe.batch_size))
            report.lr = probe.range_test(shape, share, optimizer_name)
            probe.model.load_state_dict(saved)
            if report.lr["lr"] is not None:
                probe.lr = report.lr["lr"]
        if noise:
            report.noise, _ = probe.noise_scale(share)
            probe.model.load_state_dict(saved)
            coarse_s = _typical(probe.seconds_per_clip(probe.shapes[0], probe.batch_size, GROWTH_STEPS)[1:])
            report.cost = {
                "coarse_seconds_per_clip": coarse_s,
                "full_seconds_per_clip": full_s,
                "ratio": coarse_s / full_s if full_s > 0 else None,
                "coarse_shape_cost": probe.shapes[0].cost,
            }
            mult = growth(report.noise) if growth is not None else 1
            batch = probe.batch_size * mult
            if mult > 1 and batch <= len(probe.train_set):
                grown_s = _typical(probe.seconds_per_clip(probe.shapes[0], batch, GROWTH_STEPS)[1:])
                report.cost.update(growth_mult=mult, growth_speedup=coarse_s / grown_s if grown_s > 0 else None)
    finally:
        probe.close()
        probe.model.load_state_dict(saved)
        restore_rng_state(rng)
        probe.model.zero_grad(set_to_none=True)
    report.seconds = time.perf_counter() - started
    if report.seconds > 1.5 * report.budget_seconds + 2.0:  # (a tiny run's probe is its minimum steps)
        report.notes.append(
            f"took {report.seconds:.1f} s against its budget of {report.budget_seconds:.1f} s "
            f"({100 * PROBE_FRACTION:g}% of the planned run's training, estimated)"
        )
    if notify is not None:
        for note in report.notes:
            notify(f"probe: {note}")
    return report


def _typical(values: list[float]) -> float:
    """The median (robust to a slow first batch of a loader or a busy moment)."""
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else math.nan


def _lr_test_shape(probe: Probe, budget_clips: float) -> ProbeShape:
    """The finest shape whose steps at the base batch fit ``MIN_LR_STEPS`` into ``budget_clips`` (full-shape
    clip equivalents, by the shapes' compute), else the coarsest."""
    for shape in reversed(probe.shapes):
        if budget_clips / (probe.batch_size * shape.cost) >= MIN_LR_STEPS:
            return shape
    return probe.shapes[0]
