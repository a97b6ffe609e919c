"""Multigrid batch sampler: one shape per batch, disjoint per-rank slices, determinism."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from vidact.data.dataset import ClipSpec
from vidact.errors import UsageError
from vidact.train.config import TrainConfig
from vidact.train.lr import LRSchedule
from vidact.train.multigrid import build_schedule
from vidact.train.samplers import MultigridBatchSampler

BASE = LRSchedule(base_lr=0.1, epochs=4, kind="cosine")


def _schedule(mode: str, batch_size: int = 2, frames: int = 8, size: int = 32, stride: int = 2):
    return build_schedule(mode, BASE, frames=frames, size=size, batch_size=batch_size, stride=stride)


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("mode", ["none", "long", "short", "long+short"])
def test_one_shape_per_batch_following_the_schedule(mode):
    schedule = _schedule(mode)
    sampler = MultigridBatchSampler(120, schedule, rank=0, world_size=1)
    for epoch in range(schedule.total_epochs):
        plans = sampler.plan(epoch)
        for plan, batch in zip(plans, _epoch(sampler, epoch)):
            specs = {spec for _, spec in batch}
            assert {(s.num_frames, s.crop_size) for s in specs} == {(plan.frames, plan.crop_size)}
            assert plan.phase == schedule.phase_at(plan.epoch)
            lo, hi = plan.stride_range
            assert all(lo <= s.stride <= hi for s in specs)


def test_short_clips_span_the_full_time_unless_the_stride_rule_keeps_the_base_stride():
    # 8 frames at stride 2: a 2-frame clip draws strides 2..8 (PySlowFast), or keeps 2
    span = build_schedule("long", BASE, frames=8, size=32, batch_size=8, stride=2)
    base = build_schedule("long", BASE, frames=8, size=32, batch_size=8, stride=2, stride_rule="base")
    assert {(p.frames, span.stride_range(p)) for p in span.phases} == {(2, (2, 8)), (4, (2, 4)), (8, (2, 2))}
    assert {base.stride_range(p) for p in base.phases} == {(2, 2)}
    drawn = {
        spec.stride for batch in _epoch(MultigridBatchSampler(400, span, rank=0, world_size=1), 0) for _, spec in batch
    }
    assert drawn == set(range(2, 9))
    kept = {
        spec.stride for batch in _epoch(MultigridBatchSampler(400, base, rank=0, world_size=1), 0) for _, spec in batch
    }
    assert kept == {2}
    assert [row["stride"] for row in base.rows()] == [[2, 2]] * len(base.phases)
    with pytest.raises(UsageError, match="multigrid_stride='half' is not one of span, base"):
        build_schedule("long", BASE, frames=8, size=32, batch_size=8, stride_rule="half")
    with pytest.raises(UsageError, match="multigrid_stride"):
        TrainConfig(multigrid="long", multigrid_stride="half").validate()


def test_short_cycle_batches_cycle_4x_2x_1x():
    sampler = MultigridBatchSampler(200, _schedule("short"), rank=0, world_size=1)
    batches = _epoch(sampler, 0)
    assert [len(b) for b in batches[:6]] == [8, 4, 2, 8, 4, 2]
    assert [b[0][1].crop_size for b in batches[:3]] == [16, 23, 32]


def test_long_cycle_switches_shape_mid_epoch():
    # 4 base epochs -> 6 multigrid epochs; epoch 1 holds phases [0.98, 1.47), [1.47, 1.71),
    # [1.71, 1.84) and [1.84, 2.82): T/S (4, 23), (4, 32), (8, 32), then (2, 23) again
    schedule = _schedule("long", batch_size=1)
    sampler = MultigridBatchSampler(64, schedule, rank=0, world_size=1)
    shapes = [(b[0][1].num_frames, b[0][1].crop_size) for b in _epoch(sampler, 1)]
    assert list(dict.fromkeys(shapes)) == [(4, 23), (4, 32), (8, 32), (2, 23)]
    kept = sampler.plan(1)
    dropped = 64 - sum(len(b) for b in _epoch(sampler, 1))  # the last partial batch is dropped
    assert 0 <= dropped < kept[-1].size
    every = MultigridBatchSampler(64, schedule, rank=0, world_size=1, drop_last=False)
    assert sum(len(b) for b in _epoch(every, 1)) == 64


@pytest.mark.parametrize("num_samples,world", [(96, 3), (100, 3), (7, 2), (64, 4)])
@pytest.mark.parametrize("mode", ["none", "long+short"])
def test_rank_slices_are_disjoint_and_cover_the_data(num_samples, world, mode):
    schedule = _schedule(mode)
    per_rank = [
        _epoch(MultigridBatchSampler(num_samples, schedule, rank=r, world_size=world, seed=5, drop_last=False), 1)
        for r in range(world)
    ]
    # every rank runs the same iterations at the same shapes
    assert len({len(batches) for batches in per_rank}) == 1
    for step in zip(*per_rank):
        assert len({len(b) for b in step}) == 1
        assert len({(b[0][1].num_frames, b[0][1].crop_size) for b in step}) == 1
    seen = Counter(i for batches in per_rank for batch in batches for i, _ in batch)
    assert set(seen) == set(range(num_samples))
    pad = (-num_samples) % world  # DistributedSampler-style padding repeats a few items
    assert sum(seen.values()) == num_samples + pad
    if pad == 0:
        assert set(seen.values()) == {1}


def test_deterministic_per_epoch_and_seed():
    schedule = _schedule("long+short")
    a = MultigridBatchSampler(50, schedule, rank=0, world_size=1, seed=3)
    b = MultigridBatchSampler(50, schedule, rank=0, world_size=1, seed=3)
    assert _epoch(a, 2) == _epoch(b, 2)
    assert _epoch(a, 2) != _epoch(a, 3)
    assert _epoch(a, 2) != _epoch(MultigridBatchSampler(50, schedule, rank=0, world_size=1, seed=4), 2)
    assert len(a) == len(_epoch(a, 2))


def test_the_partial_last_batch_is_dropped_by_default():
    sampler = MultigridBatchSampler(21, _schedule("none", batch_size=4), rank=0, world_size=1)
    assert [len(b) for b in _epoch(sampler, 0)] == [4] * 5
    keep = MultigridBatchSampler(21, _schedule("none", batch_size=4), rank=0, world_size=1, drop_last=False)
    assert [len(b) for b in _epoch(keep, 0)] == [4] * 5 + [1]
    # ranks drop the same batch: equal counts, every batch full
    ranks = [
        _epoch(MultigridBatchSampler(21, _schedule("none", batch_size=4), rank=r, world_size=2), 0) for r in range(2)
    ]
    assert [len(b) for b in ranks[0]] == [len(b) for b in ranks[1]] == [4, 4]


def test_feeds_the_clip_dataset_through_a_dataloader(synth_dir):
    from vidact.data.annotations import load_dataset_dir
    from vidact.data.dataset import VideoClipDataset

    samples = load_dataset_dir(synth_dir).split("train")
    dataset = VideoClipDataset(samples, num_frames=8, stride=1, crop_size=32)
    schedule = _schedule("long+short", batch_size=1, frames=8, size=32, stride=1)
    sampler = MultigridBatchSampler(len(dataset), schedule, rank=0, world_size=1)
    loader = DataLoader(dataset, batch_sampler=sampler)
    for plan, batch in zip(sampler.plan(0), loader):
        assert batch["video"].shape == (plan.per_rank, 3, plan.frames, plan.crop_size, plan.crop_size)
        assert batch["video"].dtype == torch.float32


def test_keys_are_clip_specs():
    batch = _epoch(MultigridBatchSampler(10, _schedule("none"), rank=0, world_size=1, shuffle=False), 0)[0]
    assert batch == [(0, ClipSpec(8, 32, 2)), (1, ClipSpec(8, 32, 2))]


def test_resume_skips_the_batches_already_done():
    sampler = MultigridBatchSampler(64, _schedule("long+short", batch_size=1), rank=0, world_size=1)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.set_epoch(1, start_batch=2)
    assert list(sampler) == full[2:] and len(sampler) == len(full) - 2
    assert sampler.total_batches(2) == len(sampler.plan(0)) + len(full)
    assert sampler.epoch_at(1, 0) == 1.0 and sampler.epoch_at(1, len(full)) == 2.0
    assert sampler.epoch_at(1, 1) == pytest.approx(1 + len(full[0]) / 64)
