"""Property tests (hypothesis): invariants that must hold for any input size, not just the examples.

Samplers: indices in range, sorted, the right count for any video length (shorter than the
clip included). Transforms: output shapes, flip twice = identity. Flow quantisation: round trip
error <= B/255. Multigrid: total iterations, shapes, batch x T x H x W constant.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidact.data import sampling, transforms, views
from vidact.io import flowio

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

video_lengths = st.integers(1, 300)
clip_lengths = st.integers(1, 48)
strides = st.integers(1, 8)
seeds = st.integers(0, 2**32 - 1)


def assert_valid_clip(idx: np.ndarray, video_len: int, count: int) -> None:
    assert len(idx) == count
    assert idx.min() >= 0 and idx.max() <= video_len - 1
    assert np.all(np.diff(idx) >= 0)


# ------------------------------------------------------------------------------- samplers
@FAST
@given(video_lengths, clip_lengths, strides, seeds)
def test_random_clip_is_a_strided_window_or_padded(n, t, stride, seed):
    idx = sampling.random_clip(n, t, stride, np.random.default_rng(seed))
    assert_valid_clip(idx, n, t)
    steps = np.diff(idx)
    # consecutive frames are exactly `stride` apart until the video runs out, then repeat the last
    assert np.all((steps == stride) | (idx[1:] == n - 1))
    if n >= sampling.clip_span(t, stride):
        assert np.all(steps == stride)  # a long enough video is never padded


@FAST
@given(video_lengths, clip_lengths, strides, st.integers(1, 10))
def test_uniform_clips_cover_first_to_last(n, t, stride, k):
    clips = sampling.uniform_clips(n, t, stride, k)
    assert len(clips) == k
    for idx in clips:
        assert_valid_clip(idx, n, t)
    starts = [int(c[0]) for c in clips]
    assert starts == sorted(starts)
    if k > 1:
        assert starts[0] == 0
        if n >= sampling.clip_span(t, stride):
            assert clips[-1][-1] == n - 1  # the last view ends on the last frame


@FAST
@given(video_lengths, clip_lengths, st.one_of(st.none(), seeds))
def test_dense_clip_consecutive(n, t, seed):
    rng = None if seed is None else np.random.default_rng(seed)
    idx = sampling.dense_clip(n, t, rng)
    assert_valid_clip(idx, n, t)
    assert np.all(np.diff(idx) <= 1)


@FAST
@given(video_lengths, st.integers(1, 40), st.one_of(st.none(), seeds))
def test_tsn_one_frame_inside_each_segment(n, k, seed):
    rng = None if seed is None else np.random.default_rng(seed)
    idx = sampling.tsn_segments(n, k, rng)
    assert_valid_clip(idx, n, k)
    for i, frame in enumerate(idx):
        lo = math.floor(i * n / k)
        hi = max(math.floor((i + 1) * n / k) - 1, lo)
        assert lo <= frame <= min(hi, n - 1)


@FAST
@given(st.integers(-5, 0), clip_lengths)
def test_empty_video_is_refused(n, t):
    with pytest.raises(ValueError, match="at least one frame"):
        sampling.random_clip(n, t, 1, np.random.default_rng(0))


# ----------------------------------------------------------------------------- transforms
clip_shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 24), st.integers(1, 24))


def random_clip_tensor(shape, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@FAST
@given(clip_shapes, st.integers(1, 40), seeds)
def test_short_side_scale_shape(shape, size, seed):
    x = random_clip_tensor(shape, seed)
    c, t, h, w = shape
    y = transforms.short_side_scale(x, size)
    assert y.shape[:2] == (c, t) and min(y.shape[-2:]) == size
    if h <= w:
        assert y.shape[-1] == max(1, round(w * size / h))
    else:
        assert y.shape[-2] == max(1, round(h * size / w))


@FAST
@given(clip_shapes, st.data(), seeds)
def test_crops_have_the_asked_shape_and_come_from_the_clip(shape, data, seed):
    x = random_clip_tensor(shape, seed)
    c, t, h, w = shape
    ch, cw = data.draw(st.integers(1, h)), data.draw(st.integers(1, w))
    fraction = st.floats(0.0, 1.0)
    size, no_scale = min(ch, cw), min(h, w)  # a short side the frame already has: the views only crop
    rng = np.random.default_rng(seed)
    for crop in [
        transforms.crop_at(x, (ch, cw), data.draw(fraction), data.draw(fraction)),
        views.apply_view(x, views.train_view(rng, size, (no_scale, no_scale), hflip=False)),
        *(views.apply_view(x, views.eval_view(size, k, 3, short_side=no_scale)) for k in range(3)),
    ]:
        assert crop.shape[:2] == (c, t) and crop.shape[-2:] in ((ch, cw), (size, size))
        # the crop is a window of x: find it by its top-left value
        kh, kw = crop.shape[-2:]
        found = any(
            torch.equal(crop, x[..., i : i + kh, j : j + kw]) for i in range(h - kh + 1) for j in range(w - kw + 1)
        )
        assert found


@FAST
@given(clip_shapes, st.booleans(), seeds)
def test_flip_twice_is_identity(shape, is_flow, seed):
    shape = (2, *shape[1:]) if is_flow else shape
    x = random_clip_tensor(shape, seed)
    once = transforms.horizontal_flip(x, is_flow=is_flow)
    assert once.shape == x.shape
    assert torch.equal(transforms.horizontal_flip(once, is_flow=is_flow), x)
    if is_flow:
        assert torch.equal(once[0], -x[0].flip(-1)) and torch.equal(once[1], x[1].flip(-1))


@FAST
@given(clip_shapes, seeds)
def test_normalize_is_invertible(shape, seed):
    x = random_clip_tensor(shape, seed)
    c = shape[0]
    mean, std = tuple(0.1 * (i + 1) for i in range(c)), tuple(0.2 + 0.1 * i for i in range(c))
    y = transforms.normalize(x, mean, std)
    back = y * torch.tensor(std).view(-1, 1, 1, 1) + torch.tensor(mean).view(-1, 1, 1, 1)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------- flow quantisation
bounds = st.floats(0.5, 64.0, allow_nan=False)


@FAST
@given(bounds, st.integers(1, 16), st.integers(1, 16), seeds)
def test_quantise_round_trip_within_bound_over_255(bound, h, w, seed):
    flow = np.random.default_rng(seed).uniform(-bound, bound, (2, h, w)).astype(np.float32)
    q = flowio.quantize(flow, bound)
    assert q.dtype == np.uint8
    err = np.abs(flowio.dequantize(q, bound) - flow)
    assert err.max() <= bound * (1 / 255 + 1e-6)


@FAST
@given(bounds, st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=64))
def test_quantise_clips_outside_the_bound_and_is_monotone(bound, values):
    flow = np.sort(np.asarray(values, dtype=np.float32))
    q = flowio.quantize(flow, bound)
    assert np.all(np.diff(q.astype(int)) >= 0)
    back = flowio.dequantize(q, bound)
    assert np.all(np.abs(back - np.clip(flow, -bound, bound)) <= bound * (1 / 255 + 1e-6))
    assert flowio.quantize(np.zeros(1, np.float32), bound)[0] == 128


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), seeds)
def test_npz_round_trip_is_float16_exact(tmp_path_factory, n, h, w, seed):
    folder = tmp_path_factory.mktemp("npz")
    flows = np.random.default_rng(seed).uniform(-30, 30, (n, 2, h, w)).astype(np.float32)
    flowio.write_flow_npz(folder, flows)
    back = flowio.read_flow(folder)
    np.testing.assert_array_equal(back, flows.astype(np.float16).astype(np.float32))


# ------------------------------------------------------------------------------ multigrid
from vidact.train import multigrid  # noqa: E402
from vidact.train.lr import LRSchedule  # noqa: E402
from vidact.train.samplers import MultigridBatchSampler  # noqa: E402

modes = st.sampled_from(["long", "short", "long+short"])
bases = st.builds(
    LRSchedule,
    base_lr=st.floats(0.01, 1.0),
    epochs=st.integers(4, 200),
    kind=st.sampled_from(["cosine", "constant"]),
)


@FAST
@given(modes, bases, st.sampled_from([4, 8, 16, 32]), st.sampled_from([32, 64, 112, 160, 224, 256]))
def test_schedule_phases_tile_the_stretched_run(mode, base, frames, size):
    sched = multigrid.build_schedule(mode, base, frames=frames, size=size, batch_size=2)
    assert sched.total_epochs == round(base.epochs * multigrid.EPOCH_FACTOR)
    assert sched.phases[0].start == 0.0
    assert math.isclose(sched.phases[-1].end, sched.total_epochs)
    for a, b in zip(sched.phases, sched.phases[1:]):
        assert a.end == b.start and a.end > a.start
    for phase in sched.phases:
        assert 1 <= phase.frames <= frames and 1 <= phase.size <= size
        assert phase.lr_mult == phase.batch_mult
    if sched.long_cycle:
        assert sched.phases[-1].fine_tune and (sched.phases[-1].frames, sched.phases[-1].size) == (frames, size)


@FAST
@given(st.sampled_from([8, 16, 32, 64]), st.sampled_from([64, 112, 160, 224, 256, 312]))
def test_long_cycle_keeps_batch_x_t_x_h_x_w_constant(frames, size):
    full = frames * size * size
    shapes = multigrid.long_cycle_shapes(frames, size)
    assert [m for _, _, m in shapes] == [8, 4, 2, 1]
    for t, s, mult in shapes:
        assert mult == max(1, round(full / (t * s * s)))  # the multiplier is the rounded ratio
        assert abs(mult * t * s * s - full) <= 0.06 * full  # so the work per batch stays ~constant
    for sc in multigrid.short_cycle_shapes(size):
        assert abs(sc.batch_mult * sc.size**2 - size**2) <= 0.06 * size**2
    assert [sc.batch_mult for sc in multigrid.short_cycle_shapes(size)] == [4, 2, 1]


@FAST
@given(bases, st.sampled_from([8, 16]), st.sampled_from([112, 224]))
def test_every_long_cycle_shape_gets_equal_iterations_per_stage(base, frames, size):
    sched = multigrid.build_schedule("long", base, frames=frames, size=size, batch_size=1)
    cycled = [p for p in sched.phases if not p.fine_tune]
    assert len(cycled) % 4 == 0
    for k in range(0, len(cycled), 4):
        stage = cycled[k : k + 4]
        assert [p.batch_mult for p in stage] == [8, 4, 2, 1]
        iters = [(p.end - p.start) / p.batch_mult for p in stage]  # epochs / batch ~ iterations
        assert max(iters) - min(iters) <= 1e-9 * max(iters)


def _wanted(sched, plan) -> int:
    """The batch a plan's shape asks for (one rank)."""
    phase = sched.phase_at(plan.epoch)
    return sched.batch_size * phase.batch_mult * sched.short_shapes(phase)[plan.short_index].batch_mult


@settings(max_examples=25, deadline=None)
@given(modes, st.integers(4, 12), st.integers(1, 300), st.integers(1, 4))
def test_sampler_visits_every_clip_once_per_epoch_at_planned_shapes(mode, epochs, n, batch):
    base = LRSchedule(base_lr=0.1, epochs=epochs)
    sched = multigrid.build_schedule(mode, base, frames=16, size=64, batch_size=batch)
    sampler = MultigridBatchSampler(n, sched, rank=0, world_size=1, seed=3, drop_last=False)
    dropping = MultigridBatchSampler(n, sched, rank=0, world_size=1, seed=3)
    for epoch in range(sched.total_epochs):
        sampler.set_epoch(epoch)
        dropping.set_epoch(epoch)
        full, kept = sampler.plan(epoch), dropping.plan(epoch)
        # dropping keeps every batch but a short last one (one batch is always kept)
        short_last = len(full) > 1 and full[-1].per_rank < _wanted(sched, full[-1])
        assert kept == (full[:-1] if short_last else full)
        seen = []
        for plan, keys in zip(full, sampler):
            phase = sched.phase_at(plan.epoch)
            shape = sched.short_shapes(phase)[plan.short_index]
            assert len(keys) <= batch * phase.batch_mult * shape.batch_mult
            assert all(spec.num_frames == phase.frames and spec.crop_size == shape.size for _, spec in keys)
            lo, hi = sched.stride_range(phase)
            assert all(lo <= spec.stride <= hi for _, spec in keys)
            seen += [i for i, _ in keys]
        assert sorted(seen) == list(range(n))  # one pass over the data per epoch, whatever the shapes
