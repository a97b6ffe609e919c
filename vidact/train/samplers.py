"""Batch samplers: every one yields this rank's list of data set keys per iteration.

One rank-splitting rule serves all of them. An epoch walks a permutation of the data set
(deterministic in seed and epoch, the same on every rank), padded by repeating its first items
to a multiple of the world size, as ``DistributedSampler`` does. It is cut into *global*
batches of ``batch x world_size`` items, and every rank takes its own contiguous slice of each
global batch. So all ranks run the same number of iterations (a short last batch is split
evenly, or dropped), their slices are disjoint and, together, they cover the data.

- :class:`EpochBatchSampler`: fixed-size shuffled batches (plain training, validation order).
- :class:`IterationBudgetSampler`: exactly N batches as one epoch (X3D search budgets).
- :class:`MultigridBatchSampler`: one clip shape per batch. The current fractional epoch picks
  the long-cycle phase, the iteration counter the short-cycle shape, so the shape may change
  mid-epoch with no rebuild of model or loader. Its items are ``(index, ClipSpec(frames, crop,
  stride))`` keys for ``VideoClipDataset.__getitem__``; the stride is drawn per clip in
  [rate, rate·T/t] (frame-rate jitter, so short clips still span the full time).

``set_epoch(epoch, start_batch)`` selects the epoch and skips the batches a resumed run has
already done, so the data order continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import Sampler

from vidact.data.dataset import ClipSpec
from vidact.runtime import distributed
from vidact.train.multigrid import MultigridSchedule, Phase, schedule_for_config


def pad_to_world(order: np.ndarray, world_size: int) -> np.ndarray:
    """``order`` padded by repeating its first items to a multiple of ``world_size``."""
    pad = (-len(order)) % world_size
    return np.concatenate([order, np.resize(order, pad)]) if pad else order


def rank_slice(order: np.ndarray, start: int, size: int, rank: int, world_size: int) -> list[int]:
    """This rank's contiguous share of the global batch ``order[start:start + size]`` (size % world == 0)."""
    per_rank = size // world_size
    first = start + rank * per_rank
    return [int(i) for i in order[first : first + per_rank]]


def global_batch_sizes(total: int, global_batch: int, world_size: int, drop_last: bool) -> list[int]:
    """Sizes of the global batches over ``total`` items (``total`` and ``global_batch`` multiples of ``world_size``).

    A data set smaller than one global batch still gives one (smaller) batch.
    """
    full, rest = divmod(total, global_batch)
    sizes = [global_batch] * full
    if rest and (not drop_last or not sizes):
        sizes.append(rest)
    return sizes


@runtime_checkable
class TrainingBatches(Protocol):
    """What the training loop asks of its batch sampler (every sampler here is one)."""

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch; skip the ``start_batch`` batches a resumed run has already done."""

    def __iter__(self) -> Iterator[list]:
        """This rank's keys, one list per iteration (indices, or ``(index, ClipSpec)`` pairs)."""

    def __len__(self) -> int:
        """Iterations left in the selected epoch."""

    def total_batches(self, num_epochs: int) -> int:
        """Iterations of a whole run of ``num_epochs`` epochs (for progress and schedules)."""


class _RankSampler(Sampler):
    """What every sampler shares: rank and world size, seed, epoch and resume position."""

    def __init__(self, seed: int, rank: int | None, world_size: int | None):
        self.world_size = distributed.get_world_size() if world_size is None else world_size
        self.rank = distributed.get_rank() if rank is None else rank
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world size {self.world_size}")
        self.seed = seed
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch; a resumed run skips the ``start_batch`` batches it has already done."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)


class EpochBatchSampler(_RankSampler):
    """Shuffled batches of ``batch_size`` per rank whose order depends only on (seed, epoch)."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__(seed, rank, world_size)
        if num_samples < 1:
            raise ValueError("the data set is empty")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The epoch's global order of indices, padded to a multiple of the world size."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.num_samples, generator=g).numpy()
        else:
            order = np.arange(self.num_samples)
        return pad_to_world(order, self.world_size)

    def batches(self) -> list[list[int]]:
        """Every batch of this rank for the current epoch (before skipping)."""
        order = self.order()
        out, start = [], 0
        for size in global_batch_sizes(len(order), self.batch_size * self.world_size, self.world_size, self.drop_last):
            out.append(rank_slice(order, start, size, self.rank, self.world_size))
            start += size
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.start_batch :])

    def __len__(self) -> int:
        return max(len(self.batches()) - self.start_batch, 0)

    def total_batches(self, num_epochs: int) -> int:
        """Iterations of ``num_epochs`` epochs (the same number every epoch)."""
        return num_epochs * len(self.batches())


class IterationBudgetSampler(_RankSampler):
    """Exactly ``iterations`` shuffled batches as one epoch, passing over the data as often as needed."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        iterations: int,
        seed: int = 0,
        *,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__(seed, rank, world_size)
        self.passes = EpochBatchSampler(num_samples, batch_size, seed, rank=self.rank, world_size=self.world_size)
        self.iterations = iterations

    def batches(self) -> list[list[int]]:
        out: list[list[int]] = []
        n = 0
        while len(out) < self.iterations:
            self.passes.set_epoch(self.epoch * 10_007 + n)
            out += self.passes.batches()
            n += 1
        return out[: self.iterations]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.start_batch :])

    def __len__(self) -> int:
        return max(self.iterations - self.start_batch, 0)

    def total_batches(self, num_epochs: int) -> int:
        """Iterations of ``num_epochs`` epochs of ``iterations`` each."""
        return num_epochs * self.iterations


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


class MultigridBatchSampler(_RankSampler):
    """Yields this rank's list of ``(index, ClipSpec)`` keys for each multigrid iteration.

    The last global batch of an epoch is dropped when it is shorter than the shape asks for
    (as PySlowFast and the plain sampler do), unless ``drop_last=False``.
    """

    def __init__(
        self,
        num_samples: int,
        schedule: MultigridSchedule,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ):
        super().__init__(seed, rank, world_size)
        if num_samples < 1:
            raise ValueError("the data set is empty")
        self.num_samples = num_samples
        self.schedule = schedule
        self.shuffle = shuffle
        self.drop_last = drop_last
        self._plans: dict[int, list[BatchPlan]] = {}

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The epoch's global order of indices, padded to a multiple of the world size."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        return pad_to_world(order, self.world_size)

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
            wanted = per_rank * self.world_size
            size = min(wanted, total - start)
            if size < wanted and self.drop_last and plans:
                break  # a data set smaller than one batch still trains
            plans.append(
                BatchPlan(
                    frac,
                    start,
                    size,
                    size // self.world_size,
                    phase,
                    it % len(shapes),
                    phase.frames,
                    shape.size,
                    self.schedule.stride_range(phase),
                )
            )
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
        mine = strides[self.rank * plan.per_rank : (self.rank + 1) * plan.per_rank]
        indices = rank_slice(order, plan.start, plan.size, self.rank, self.world_size)
        return [(i, ClipSpec(plan.frames, plan.crop_size, int(s))) for i, s in zip(indices, mine)]

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
