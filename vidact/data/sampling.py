"""Clip samplers: which 0-based frame indices of a video make up one clip.

Pure functions of the video length (and an ``np.random.Generator`` where random).
Every sampler returns sorted indices in ``[0, num_video_frames)``; a video shorter
than the clip is padded by repeating its last frame.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch


def _check(num_video_frames: int, num_frames: int, stride: int = 1) -> None:
    if num_video_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_video_frames}")
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {num_frames}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")


def clip_span(num_frames: int, stride: int) -> int:
    """How many video frames a clip of ``num_frames`` taken every ``stride`` frames covers."""
    return (num_frames - 1) * stride + 1


def clip_at(num_video_frames: int, start: int, num_frames: int, stride: int) -> np.ndarray:
    """The clip starting at ``start``; indices past the end repeat the last frame."""
    _check(num_video_frames, num_frames, stride)
    idx = int(start) + np.arange(num_frames, dtype=np.int64) * stride
    return np.clip(idx, 0, num_video_frames - 1)


def random_clip(num_video_frames: int, num_frames: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """A training clip: ``num_frames`` frames every ``stride`` frames from a random start."""
    _check(num_video_frames, num_frames, stride)
    slack = num_video_frames - clip_span(num_frames, stride)
    start = int(rng.integers(0, slack + 1)) if slack > 0 else 0
    return clip_at(num_video_frames, start, num_frames, stride)


def uniform_clips(num_video_frames: int, num_frames: int, stride: int, num_clips: int) -> list[np.ndarray]:
    """``num_clips`` test clips with evenly spaced starts (PySlowFast's multi-view testing).

    One clip is centred; several run from the first frame to the last, so together
    they cover the whole video.
    """
    _check(num_video_frames, num_frames, stride)
    if num_clips < 1:
        raise ValueError(f"num_clips must be at least 1, got {num_clips}")
    slack = max(num_video_frames - clip_span(num_frames, stride), 0)
    if num_clips == 1:
        starts = [slack // 2]
    else:
        starts = np.rint(np.linspace(0, slack, num_clips)).astype(np.int64).tolist()
    return [clip_at(num_video_frames, s, num_frames, stride) for s in starts]


def dense_clip(
    num_video_frames: int,
    num_frames: int,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Consecutive frames (stride 1), e.g. the L=10 stacked flows of a two-stream temporal net.

    Random start in training (``rng`` given), centred in testing (``rng`` None).
    """
    _check(num_video_frames, num_frames)
    slack = max(num_video_frames - num_frames, 0)
    start = int(rng.integers(0, slack + 1)) if rng is not None else slack // 2
    return clip_at(num_video_frames, start, num_frames, 1)


def tsn_segments(
    num_video_frames: int,
    num_segments: int,
    rng: np.random.Generator | None = None,
    *,
    offset: float = 0.5,
) -> np.ndarray:
    """TSN sampling: split the video into ``num_segments`` equal parts and take one frame of each.

    Training (``rng`` given) takes a random frame per segment; testing takes the frame
    at ``offset`` (0..1, default the centre) of each segment. A video with fewer frames
    than segments repeats frames.
    """
    _check(num_video_frames, num_segments)
    if not 0.0 <= offset <= 1.0:
        raise ValueError(f"offset must be in [0, 1], got {offset}")
    edges = np.arange(num_segments + 1, dtype=np.float64) * num_video_frames / num_segments
    lo = np.floor(edges[:-1]).astype(np.int64)
    hi = np.maximum(np.floor(edges[1:]).astype(np.int64) - 1, lo)  # last frame of each segment
    if rng is not None:
        idx = lo + np.floor(rng.random(num_segments) * (hi - lo + 1)).astype(np.int64)
    else:
        idx = lo + np.rint(offset * (hi - lo)).astype(np.int64)
    return np.clip(idx, 0, num_video_frames - 1)


# The frame rate the publishers' sampling rates are given at (PySlowFast's DATA.TARGET_FPS).
TARGET_FPS = 30.0


def pyslowfast_test_clip(
    num_video_frames: int,
    fps: float,
    num_frames: int,
    sampling_rate: int,
    clip: int,
    num_clips: int,
    target_fps: float = TARGET_FPS,
) -> np.ndarray:
    """Test clip ``clip`` of ``num_clips`` as PySlowFast's Kinetics test loader picks it (PyAV decoding).

    The clip spans ``sampling_rate * num_frames`` frames at ``target_fps``, i.e. ``span = sampling_rate
    * num_frames * fps / target_fps`` frames of this video (a float); clip ``k`` starts at ``start =
    max(N - span, 0) * k / num_clips``. The frames whose index lies in ``[start, start + span - 1]`` are
    decoded, plus the next one, and of those ``linspace(0, span - 1, num_frames)`` (float32, clipped to
    the decoded frames, truncated) are taken. Frame ``j`` is at time ``j / fps``, and the container's
    time base resolves a tenth of a frame (as MP4's does), so the first decoded frame is ``ceil(start)``.
    """
    _check(num_video_frames, num_frames, sampling_rate)
    fps = fps or target_fps
    span = sampling_rate * num_frames * fps / target_fps
    start = max(num_video_frames - span, 0.0) * clip / num_clips
    first = min(math.ceil(start - 1e-9), num_video_frames - 1)
    last = min(math.floor(start + span - 1 + 1e-9) + 1, num_video_frames - 1)
    offsets = torch.linspace(0, span - 1, num_frames).clamp(0, last - first).long().numpy()
    return first + offsets


def pytorchvideo_test_clip(
    num_video_frames: int,
    fps: float,
    num_frames: int,
    sampling_rate: int,
    clip: int,
    num_clips: int,
    target_fps: float = TARGET_FPS,
) -> np.ndarray:
    """Test clip ``clip`` of ``num_clips`` as PyTorchVideo's data API picks it (PySlowFast's
    ``Ptvkinetics``: ``ConstantClipsPerVideoSampler``, then ``UniformTemporalSubsample``).

    The clip lasts ``sampling_rate * num_frames / target_fps`` seconds and starts at ``max(duration -
    that, 0) * k / num_clips`` (exact fractions); the frames whose time ``j / fps`` lies in ``[start,
    end)`` are decoded and ``linspace(0, n - 1, num_frames)`` of them (float32, truncated) are taken.
    """
    _check(num_video_frames, num_frames, sampling_rate)
    rate = Fraction(fps or target_fps).limit_denominator(1001)
    length = Fraction(sampling_rate * num_frames) / Fraction(target_fps).limit_denominator(1001)
    start = max(Fraction(num_video_frames) / rate - length, Fraction(0)) * clip / num_clips
    first = min(math.ceil(start * rate), num_video_frames - 1)
    stop = max(min(math.ceil((start + length) * rate), num_video_frames), first + 1)
    n = stop - first
    offsets = torch.linspace(0, n - 1, num_frames).clamp(0, n - 1).long().numpy()
    return first + offsets
