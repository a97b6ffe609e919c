"""Video files through PyAV: probe, decode chosen frames with keyframe-aware seeking, time ranges."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vidact.errors import VideoDecodeError, first_line
from vidact.io.atomic import atomic_path

# A forward gap (in frames) beyond which seeking to the nearest keyframe beats decoding through.
SEEK_GAP = 48
# Missing frames at the very end that are tolerated (container frame counts are often off by one).
TAIL_SLACK = 2

# Decoder threads per opened stream; 0 lets FFmpeg choose (one per core). Processes that decode
# side by side (data loader and extraction workers) set it so that processes x threads fit the cores.
_decoder_threads = 0


def set_decoder_threads(count: int) -> None:
    """Threads each stream opened from now on decodes with in this process (0: FFmpeg's choice)."""
    global _decoder_threads
    if count < 0:
        raise ValueError(f"decoder threads must be >= 0, got {count}")
    _decoder_threads = int(count)


def decoder_threads() -> int:
    """The decoder thread count set by :func:`set_decoder_threads` (0: FFmpeg's choice)."""
    return _decoder_threads


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video file."""

    path: str
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str

    def to_dict(self) -> dict:
        return asdict(self)


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises many error types; all mean "not a readable video"
        raise VideoDecodeError(path, f"cannot open: {first_line(exc)}") from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    return container


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def probe(path: str | Path, count_frames: bool = True) -> VideoInfo:
    """Frame count, fps, duration, size and codec of ``path``.

    The frame count comes from the container header when present, else (or when
    ``count_frames``) from counting demuxed video packets, which is exact and cheap.
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        n = int(stream.frames or 0)
        if count_frames or n <= 0:
            try:
                n = sum(1 for p in container.demux(stream) if p.size > 0)
            except Exception as exc:
                raise VideoDecodeError(path, f"cannot demux: {first_line(exc)}") from exc
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = n / fps if fps else 0.0
        if n <= 0:
            raise VideoDecodeError(path, "no decodable video frames")
        ctx = stream.codec_context
        return VideoInfo(str(path), n, fps, duration, int(ctx.width), int(ctx.height), ctx.name)
    finally:
        container.close()


def _video_stream(container):
    """The first video stream, set to decode with the process's thread count (frame or slice threads)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = _decoder_threads
    return stream


def _frame_index(frame, time_base: float, fps: float, start: float) -> int | None:
    if frame.pts is None or not time_base or not fps:
        return None
    return int(round((frame.pts * time_base - start) * fps))


PIXEL_FORMATS = ("rgb24", "bgr24")  # what frames are returned as: RGB, or OpenCV's BGR order


class _RGB:
    """Decoded frames as (H, W, 3) uint8 arrays (``rgb24``, or ``bgr24`` for OpenCV), scaled to ``size``
    (width, height) when given.

    One swscale context per step for the whole stream, on the calling thread: a fresh context
    per frame (what ``frame.to_ndarray(format=...)`` makes) costs about 1 ms and starts its own
    threads, which made the conversion of a small frame cost 100x its work.
    """

    def __init__(self, size: tuple[int, int] | None, pixel_format: str = "rgb24"):
        from av.video.reformatter import VideoReformatter

        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"pixel_format must be one of {', '.join(PIXEL_FORMATS)}, got {pixel_format!r}")
        self.size, self.pixel_format = size, pixel_format
        self._scale, self._convert = VideoReformatter(), VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        if self.size is not None:  # scale in the source's pixel format, then convert (as frame.reformat did)
            frame = self._scale.reformat(frame, width=self.size[0], height=self.size[1], threads=1)
        return self._convert.reformat(frame, format=self.pixel_format, threads=1).to_ndarray()


def iter_frames(
    path: str | Path, size: tuple[int, int] | None = None, pixel_format: str = "rgb24"
) -> Iterator[np.ndarray]:
    """Every frame of ``path`` in order, as (H, W, 3) uint8 RGB (``pixel_format="bgr24"``: BGR, as OpenCV
    writes it); ``size`` is (width, height).

    A decode error after the first frame ends the frames there, whatever the decoder's threads
    (a frame-threaded decoder ends a cut stream quietly, a single thread raises): callers compare
    the count with :func:`probe`'s to report a truncated video. An error before any frame raises.
    """
    container = _open(path)
    decoded = 0
    try:
        stream = _video_stream(container)
        to_rgb = _RGB(size, pixel_format)
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except Exception as exc:
                if decoded:
                    return
                raise VideoDecodeError(path, f"decode failed: {first_line(exc)}") from exc
            decoded += 1
            yield to_rgb(frame)
    finally:
        container.close()


def decode_frames(
    path: str | Path,
    indices: Sequence[int],
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode the frames at ``indices`` (0-based, any order, repeats allowed).

    Returns (len(indices), H, W, 3) uint8 RGB. Decoding walks forward and seeks to the
    nearest preceding keyframe only across gaps longer than ``SEEK_GAP`` frames.
    """
    if len(indices) == 0:
        raise ValueError("decode_frames needs at least one index")
    wanted = sorted(set(int(i) for i in indices))
    if wanted[0] < 0:
        raise ValueError(f"negative frame index {wanted[0]}")
    got: dict[int, np.ndarray] = {}
    container = _open(path)
    try:
        stream = _video_stream(container)
        to_rgb = _RGB(size)
        fps = _stream_fps(stream)
        time_base = float(stream.time_base) if stream.time_base is not None else 0.0
        start = stream.start_time * time_base if stream.start_time is not None else 0.0
        pos = -1  # index of the last decoded frame
        k = 0
        try:
            while k < len(wanted):
                if wanted[k] - pos > SEEK_GAP and fps and stream.time_base:
                    ts = int((start + wanted[k] / fps) / stream.time_base)
                    container.seek(ts, stream=stream, backward=True, any_frame=False)
                exhausted = True
                for frame in container.decode(stream):
                    idx = _frame_index(frame, time_base, fps, start)
                    pos = idx if idx is not None else pos + 1
                    if pos < wanted[k]:
                        continue  # decoded (the next frames depend on it) but never converted
                    arr = to_rgb(frame)
                    while k < len(wanted) and wanted[k] <= pos:
                        got[wanted[k]] = arr  # an imprecise seek falls back to the next frame
                        k += 1
                    if k >= len(wanted) or wanted[k] - pos > SEEK_GAP:
                        exhausted = False
                        break
                if exhausted:
                    break
        except Exception as exc:
            if not got:
                raise VideoDecodeError(path, f"decode failed: {first_line(exc)}") from exc
    finally:
        container.close()
    missing = [i for i in wanted if i not in got]
    if missing:
        if got and len(missing) <= TAIL_SLACK and min(missing) > max(got):
            last = got[max(got)]
            for i in missing:
                got[i] = last
        else:
            raise VideoDecodeError(
                path, f"could not decode frame {missing[0]} ({len(missing)} of {len(wanted)} missing)"
            )
    return np.stack([got[int(i)] for i in indices])


def decode_range(
    path: str | Path,
    start_sec: float,
    end_sec: float,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """All frames whose timestamps fall in ``[start_sec, end_sec)``, as (N, H, W, 3) uint8."""
    if end_sec <= start_sec:
        raise ValueError("end_sec must be greater than start_sec")
    info = probe(path, count_frames=False)
    first = max(0, int(math.ceil(start_sec * info.fps - 1e-6)))
    last = min(info.num_frames, int(math.ceil(end_sec * info.fps - 1e-6)))
    if last <= first:
        raise VideoDecodeError(path, f"no frames in [{start_sec}, {end_sec}) s")
    return decode_frames(path, list(range(first, last)), size=size)


def short_side_size(*, width: int, height: int, short_side: int, even: bool = False) -> tuple[int, int]:
    """(width, height) of a ``width`` x ``height`` frame scaled so its shorter side is ``short_side``.

    The aspect ratio is kept: the other side is rounded (at least 1). ``even=True`` rounds both
    sides to even sizes (at least 2), as encoders and yuv420p need: frame and flow extraction ask
    for it, clip transforms do not. A square frame counts as landscape.
    """
    if height <= width:
        w, h = width * short_side / height, short_side
    else:
        w, h = short_side, height * short_side / width
    if even:
        return max(2, int(round(w / 2)) * 2), max(2, int(round(h / 2)) * 2)
    return max(1, int(round(w))), max(1, int(round(h)))


def write_video(path: str | Path, frames: np.ndarray, fps: int = 25, codec: str = "libx264") -> None:
    """Encode (T, H, W, 3) uint8 RGB frames to ``path`` atomically (yuv420p, short GOP)."""
    import av

    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
            stream.pix_fmt = "yuv420p"
            # Same frames, same bytes: one encoder thread (x264's output depends on the thread
            # count; a "threads" entry in stream.options is not applied) and no B-frames: with
            # them, x264 (core 165) encoded about one clip in three differently from run to run
            # even on one thread (measured; without them every repeat was identical).
            stream.codec_context.thread_count = 1
            if codec == "libx264":
                stream.options = {"crf": "16", "g": "12", "preset": "veryfast", "x264-params": "bframes=0"}
            for arr in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
