"""Clip samplers: indices in range, sorted, right count, padding, coverage, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidact.data.sampling import clip_span, dense_clip, random_clip, tsn_segments, uniform_clips

lengths = st.integers(1, 400)
clip_frames = st.integers(1, 64)
strides = st.integers(1, 8)
seeds = st.integers(0, 2**32 - 1)


def _valid(idx: np.ndarray, n: int, count: int) -> None:
    assert idx.dtype.kind == "i"
    assert len(idx) == count
    assert idx.min() >= 0 and idx.max() < n
    assert np.all(np.diff(idx) >= 0)


@settings(max_examples=200, deadline=None)
@given(lengths, clip_frames, strides, seeds)
def test_random_clip_in_range_sorted_right_count(n, t, stride, seed):
    idx = random_clip(n, t, stride, np.random.default_rng(seed))
    _valid(idx, n, t)
    if n >= clip_span(t, stride):
        assert np.all(np.diff(idx) == stride)


@settings(max_examples=200, deadline=None)
@given(lengths, clip_frames, strides, st.integers(1, 12))
def test_uniform_clips_in_range_sorted_right_count(n, t, stride, k):
    clips = uniform_clips(n, t, stride, k)
    assert len(clips) == k
    for idx in clips:
        _valid(idx, n, t)


@settings(max_examples=200, deadline=None)
@given(lengths, st.integers(1, 32), st.one_of(st.none(), seeds))
def test_tsn_segments_in_range_sorted_right_count(n, k, seed):
    rng = None if seed is None else np.random.default_rng(seed)
    _valid(tsn_segments(n, k, rng), n, k)


@settings(max_examples=100, deadline=None)
@given(lengths, clip_frames, st.one_of(st.none(), seeds))
def test_dense_clip_in_range_sorted_right_count(n, t, seed):
    rng = None if seed is None else np.random.default_rng(seed)
    _valid(dense_clip(n, t, rng), n, t)


def test_short_video_repeats_last_frame():
    idx = random_clip(10, 8, 2, np.random.default_rng(0))
    assert idx.tolist() == [0, 2, 4, 6, 8, 9, 9, 9]
    assert uniform_clips(3, 4, 1, 2)[1].tolist() == [0, 1, 2, 2]
    assert dense_clip(2, 5).tolist() == [0, 1, 1, 1, 1]


def test_random_clip_exact_fit_and_start_range():
    assert random_clip(15, 8, 2, np.random.default_rng(1)).tolist() == list(range(0, 15, 2))
    starts = {int(random_clip(20, 4, 2, np.random.default_rng(s))[0]) for s in range(300)}
    assert starts == set(range(0, 14))  # slack = 20 - 7 = 13: every start 0..13 drawn


def test_uniform_clips_cover_the_video():
    clips = uniform_clips(100, 8, 4, 3)
    assert clips[0][0] == 0 and clips[-1][-1] == 99
    assert [int(c[0]) for c in clips] == [0, 36, 71]
    assert uniform_clips(100, 8, 4, 1)[0].tolist() == list(range(35, 35 + 29, 4))  # centred
    covered = set(np.concatenate(uniform_clips(64, 16, 1, 4)).tolist())
    assert covered == set(range(64))


def test_tsn_segments_centres_and_random_within_segments():
    assert tsn_segments(10, 3).tolist() == [1, 4, 8]  # segments [0,2], [3,5], [6,9]
    assert tsn_segments(2, 4).tolist() == [0, 0, 1, 1]
    assert tsn_segments(30, 3, offset=0.0).tolist() == [0, 10, 20]
    for s in range(50):
        idx = tsn_segments(30, 3, np.random.default_rng(s))
        assert 0 <= idx[0] <= 9 and 10 <= idx[1] <= 19 and 20 <= idx[2] <= 29


def test_dense_clip_consecutive_centred_in_test():
    assert dense_clip(30, 10).tolist() == list(range(10, 20))
    idx = dense_clip(30, 10, np.random.default_rng(3))
    assert np.all(np.diff(idx) == 1)


def test_same_seed_same_clip_other_seed_differs():
    a = [random_clip(300, 8, 2, np.random.default_rng(7)).tolist() for _ in range(2)]
    assert a[0] == a[1]
    others = {tuple(random_clip(300, 8, 2, np.random.default_rng(s))) for s in range(20)}
    assert len(others) > 10
    assert (
        tsn_segments(100, 8, np.random.default_rng(5)).tolist()
        == tsn_segments(100, 8, np.random.default_rng(5)).tolist()
    )


@pytest.mark.parametrize("args", [(0, 8, 1), (10, 0, 1), (10, 8, 0)])
def test_bad_arguments_raise(args):
    with pytest.raises(ValueError):
        random_clip(*args, np.random.default_rng(0))
