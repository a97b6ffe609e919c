"""Frame folders in the MMAction2 "rawframes" layout: ``img_00001.jpg``, 1-based, RGB JPEGs.

Indices in this API are 0-based (frame ``i`` lives in ``frame_name(i)`` = ``img_{i+1:05d}.jpg``),
matching :func:`vidact.io.video.decode_frames`, so a sampler can use either source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from vidact.errors import VideoDecodeError

PREFIX = "img_"
EXT = ".jpg"
_JPEG_END = b"\xff\xd9"


def frame_name(i: int, prefix: str = PREFIX, ext: str = EXT) -> str:
    """File name of the 0-based frame ``i``: ``frame_name(0) == "img_00001.jpg"``."""
    if i < 0:
        raise ValueError(f"negative frame index {i}")
    return f"{prefix}{i + 1:05d}{ext}"


def _pattern(prefix: str, ext: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(prefix)}\d+{re.escape(ext)}$")


def count_frames(folder: str | Path, prefix: str = PREFIX, ext: str = EXT) -> int:
    """Number of ``<prefix>NNNNN<ext>`` files in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoDecodeError(folder, "frame folder not found")
    pattern = _pattern(prefix, ext)
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if pattern.match(e.name))


def _decode_jpeg(path: Path) -> np.ndarray:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise VideoDecodeError(path, "missing frame file") from None
    except OSError as exc:
        raise VideoDecodeError(path, f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise VideoDecodeError(path, "empty frame file (0 bytes)")
    if path.suffix.lower() in (".jpg", ".jpeg") and _JPEG_END not in data[-16:]:
        raise VideoDecodeError(path, "corrupt JPEG (truncated, no end marker)")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise VideoDecodeError(path, "corrupt image (cannot decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_frames(folder: str | Path, indices: Sequence[int], prefix: str = PREFIX, ext: str = EXT) -> np.ndarray:
    """Frames at 0-based ``indices`` (any order, repeats allowed) as (N, H, W, 3) uint8 RGB."""
    if len(indices) == 0:
        raise ValueError("read_frames needs at least one index")
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoDecodeError(folder, "frame folder not found")
    cache: dict[int, np.ndarray] = {}
    for i in indices:
        i = int(i)
        if i not in cache:
            cache[i] = _decode_jpeg(folder / frame_name(i, prefix, ext))
    shapes = {a.shape for a in cache.values()}
    if len(shapes) > 1:
        raise VideoDecodeError(folder, f"frames differ in size: {sorted(shapes)}")
    return np.stack([cache[int(i)] for i in indices])


def write_frames(
    folder: str | Path,
    frames: Iterable[np.ndarray],
    quality: int = 95,
    prefix: str = PREFIX,
    ext: str = EXT,
    *,
    bgr: bool = False,
) -> int:
    """Write (H, W, 3) uint8 RGB frames (``bgr``: already in OpenCV's BGR order) as ``img_00001.jpg``,
    ``img_00002.jpg``, ...; returns the count.

    Write into a staging folder (:func:`vidact.io.atomic.atomic_dir`) when the folder must
    appear only once complete.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    n = 0
    for n, frame in enumerate(frames, 1):
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {n - 1}: expected (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
        ok, buf = cv2.imencode(ext, frame if bgr else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise VideoDecodeError(folder / frame_name(n - 1, prefix, ext), "JPEG encoding failed")
        (folder / frame_name(n - 1, prefix, ext)).write_bytes(buf)  # the encoded buffer, not a copy of it
    return n
