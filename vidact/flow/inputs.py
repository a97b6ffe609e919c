"""The inputs of a flow extraction: which videos and frame folders, their sizes, their frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vidact.data.videos import collect_jobs
from vidact.errors import VideoDecodeError
from vidact.io.frames import count_frames, read_frames
from vidact.io.jobs import VideoJob, output_rel
from vidact.io.video import TAIL_SLACK, iter_frames, probe, short_side_size


def is_frame_folder(path: Path) -> bool:
    return path.is_dir() and count_frames(path) > 0


def collect_flow_jobs(src: str | Path, list_path: str | Path | None = None) -> list[VideoJob]:
    """Videos and frame folders to process: ``src`` itself, those under it, or those listed."""
    src = Path(src)
    if is_frame_folder(src) and list_path is None:
        return [VideoJob(src, src.name)]
    if src.is_dir() and list_path is None:
        folders = sorted(Path(d) for d, _, files in os.walk(src) if any(f.startswith("img_") for f in files))
        folders = [f for f in folders if is_frame_folder(f)]
        if folders:
            return [VideoJob(f, output_rel(f, src)) for f in folders]
    return collect_jobs(src, list_path)[0]


def input_size(src: Path) -> tuple[int, int, int]:
    """(frames, width, height) of a video (container header) or frame folder, without decoding it all."""
    src = Path(src)
    if src.is_dir():
        n = count_frames(src)
        first = read_frames(src, [0])[0]
        return n, first.shape[1], first.shape[0]
    info = probe(src, count_frames=False)
    return info.num_frames, info.width, info.height


def load_frames(src: str | Path, short_side: int | None = None) -> np.ndarray:
    """All frames of a video file or frame folder as (T, H, W, 3) uint8 RGB, T >= 2."""
    import cv2

    src = Path(src)
    if src.is_dir():
        n = count_frames(src)
        if n == 0:
            raise VideoDecodeError(src, "no frames (img_*.jpg) in folder")
        frames = read_frames(src, range(n))
        if short_side:
            size = short_side_size(width=frames.shape[2], height=frames.shape[1], short_side=short_side, even=True)
            frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    else:
        info = probe(src, count_frames=False)
        size = (
            short_side_size(width=info.width, height=info.height, short_side=short_side, even=True)
            if short_side
            else None
        )
        frames_list = list(iter_frames(src, size=size))
        if not frames_list:
            raise VideoDecodeError(src, "no decodable video frames")
        if info.num_frames > len(frames_list) + TAIL_SLACK:
            raise VideoDecodeError(src, f"truncated: decoded {len(frames_list)} of {info.num_frames} frames")
        frames = np.stack(frames_list)
    if len(frames) < 2:
        raise VideoDecodeError(src, f"flow needs at least 2 frames, got {len(frames)}")
    return frames
