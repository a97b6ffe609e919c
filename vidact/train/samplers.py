"""Multigrid batch sampler: one clip shape per batch, each rank its own slice of every batch.

Every epoch walks a permutation of the data set (deterministic in seed and epoch, the same
on every rank). The current fractional epoch picks the long-cycle phase, the iteration
counter picks the short-cycle shape, so the shape may change mid-epoch with no rebuild of
model or loader. A *global* batch of ``batch x world_size`` items is cut into one
contiguous slice per rank, so all ranks run the same number of iterations at the same
shape, and their slices are disjoint and cover the data (the order is padded by repeating
its first items to a multiple of ``world_size``, as ``DistributedSampler`` does).

Items are ``(index, ClipSpec(frames, crop, stride))`` keys for
``VideoClipDataset.__getitem__``; the stride is drawn per clip in [rate, rate·T/t] (frame-rate
jitter, so short clips still span the full time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from vidact.data.dataset import ClipSpec
from vidact.train import distributed
from vidact.train.multigrid import MultigridSchedule, Phase, schedule_for_config


@dataclass(frozen=True)
class BatchPlan:
    """One iteration: where it starts in the epoch's order and the shape it uses."""

    epoch: float  # fractional epoch at the batch's first item (for the LR)
    start: int  # offset into the epoch's padded order
    size: int  # items in the global batch (all ranks)
    per_rank: int  # items in this rank's slice
    phase: Phase
    short_index: int
    frames: int
    crop_size: int
    stride_range: tuple[int, int]


class MultigridBatchSampler(Sampler):
    """Yields this rank's list of ``(index, ClipSpec)`` keys for each multigrid iteration."""

    def __init__(self, num_samples: int, schedule: MultigridSchedule, *, rank: int | None = None,
                 world_size: int | None = None, seed: int = 0, shuffle: bool = True, drop_last: bool = False):
        if num_samples < 1:
            raise ValueError("the data set is empty")
        self.num_samples = num_samples
        self.schedule = schedule
        self.world_size = distributed.get_world_size() if world_size is None else world_size
        self.rank = distributed.get_rank() if rank is None else rank
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world size {self.world_size}")
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch, self.start_batch = 0, 0
        self._plans: dict[int, list[BatchPlan]] = {}

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch; a resumed run skips the ``start_batch`` batches it has already done."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The epoch's global order of indices, padded to a multiple of the world size."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        pad = (-len(order)) % self.world_size
        return np.concatenate([order, np.resize(order, pad)]) if pad else order

    def plan(self, epoch: int | None = None) -> list[BatchPlan]:
        """Every iteration of the epoch (the same on all ranks)."""
        epoch = self.epoch if epoch is None else epoch
        if epoch not in self._plans:
            self._plans = {epoch: self._make_plan(epoch)}  # keep one epoch: plans are cheap to redo
        return self._plans[epoch]

    def _make_plan(self, epoch: int) -> list[BatchPlan]:
        total = len(self.order(epoch))
        plans, start, it = [], 0, 0
        while start < total:
            frac = epoch + start / total
            phase = self.schedule.phase_at(frac)
            shapes = self.schedule.short_shapes(phase)
            shape = shapes[it % len(shapes)]
            per_rank = self.schedule.batch_size * phase.batch_mult * shape.batch_mult
            size = min(per_rank * self.world_size, total - start)
            if size < per_rank * self.world_size and self.drop_last:
                break
            plans.append(BatchPlan(frac, start, size, size // self.world_size, phase, it % len(shapes),
                                   phase.frames, shape.size, self.schedule.stride_range(phase)))
            start += size
            it += 1
        return plans

    def __len__(self) -> int:
        return max(len(self.plan()) - self.start_batch, 0)

    def total_batches(self, num_epochs: int) -> int:
        """Iterations of a whole run of ``num_epochs`` epochs."""
        return sum(len(self.plan(e)) for e in range(num_epochs))

    def epoch_at(self, epoch: int, batch: int) -> float:
        """Fractional epoch at the start of iteration ``batch`` of ``epoch`` (by clips seen, not iterations)."""
        plans = self.plan(epoch)
        return plans[batch].epoch if batch < len(plans) else float(epoch + 1)

    def keys(self, plan: BatchPlan, order: np.ndarray, iteration: int, epoch: int) -> list[tuple[int, ClipSpec]]:
        """This rank's keys for one planned iteration."""
        lo, hi = plan.stride_range
        strides = np.random.default_rng([self.seed, epoch, iteration, 0x57]).integers(lo, hi + 1, size=plan.size)
        first = plan.start + self.rank * plan.per_rank
        return [(int(order[first + j]), ClipSpec(plan.frames, plan.crop_size, int(strides[self.rank * plan.per_rank + j])))
                for j in range(plan.per_rank)]

    def __iter__(self) -> Iterator[list[tuple[int, ClipSpec]]]:
        epoch = self.epoch
        order = self.order(epoch)
        for it, plan in enumerate(self.plan(epoch)):
            if it >= self.start_batch:
                yield self.keys(plan, order, it, epoch)


class PlannedLR:
    """The multigrid LR at the engine's ``epoch + batch / iters_per_epoch``.

    The engine counts iterations; multigrid batches differ in size, so the iteration is
    mapped back to the fraction of the epoch's clips already seen before asking the schedule.
    """

    def __init__(self, schedule: MultigridSchedule, sampler: MultigridBatchSampler):
        self.schedule, self.sampler = schedule, sampler

    def __call__(self, epoch_f: float) -> float:
        epoch = int(math.floor(epoch_f + 1e-9))
        iters = len(self.sampler.plan(epoch))
        batch = int(round((epoch_f - epoch) * iters))
        return self.schedule.lr(self.sampler.epoch_at(epoch, batch))


@dataclass(frozen=True)
class MultigridTraining:
    """What the engine swaps in for a multigrid run: batches, LR and the number of epochs."""

    schedule: MultigridSchedule
    sampler: MultigridBatchSampler
    lr_at: PlannedLR

    @property
    def epochs(self) -> int:
        return self.schedule.total_epochs


def multigrid_training(cfg, num_samples: int) -> MultigridTraining:
    """Schedule, distributed batch sampler and LR for a training config with ``multigrid != none``."""
    schedule = schedule_for_config(cfg)
    sampler = MultigridBatchSampler(num_samples, schedule, seed=cfg.seed)
    return MultigridTraining(schedule, sampler, PlannedLR(schedule, sampler))
