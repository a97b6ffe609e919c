"""Live and long video sources through PyAV: files, network URLs, standard input, capture devices and
FFmpeg filter sources, decoded once, frame by frame, as they arrive.

A source is written as:

- a file path: ``clip.mp4``;
- a URL: ``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``srt://``, ``rtp://``;
- ``-``: a stream on standard input (MPEG-TS, Matroska, ... from another program: ``ffmpeg ... -f mpegts -``);
- a capture device: ``/dev/video0`` (V4L2) or ``v4l2:/dev/video0``;
- an FFmpeg filter source for testing: ``lavfi:testsrc=size=320x240:rate=25`` (anything after
  ``lavfi:`` is an FFmpeg source filter graph; ``duration=SECONDS`` ends it).

``live`` sources (devices, rtsp, rtmp, rtp, udp, srt) deliver frames in real time whether or not they are
read: a reader that falls behind must drop frames instead of stalling them. The others (files, http,
tcp, standard input, lavfi) wait for the reader.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidact.errors import UsageError, VidactError, VideoDecodeError, first_line

STDIN = "-"
LAVFI = "lavfi:"
V4L2 = "v4l2:"
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "rtp", "udp", "srt")
PACED_SCHEMES = ("http", "https", "tcp")
FILE, NETWORK, PIPE, DEVICE, FILTER = "file", "network", "stdin", "device", "lavfi"


class StreamCut(VidactError):
    """A stream that broke off (an I/O error, a connection reset, no data for the read timeout): exit 1."""

    exit_code = 1


@dataclass(frozen=True)
class StreamSource:
    """Where frames come from: what the user wrote, what PyAV opens, and how."""

    text: str
    url: str
    kind: str  # file | network | stdin | device | lavfi
    format: str | None = None  # PyAV/FFmpeg input format; None lets FFmpeg probe
    live: bool = False
    options: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"source": self.text, "kind": self.kind, "live": self.live}


def parse_source(text: str, options: dict[str, str] | None = None) -> StreamSource:
    """The :class:`StreamSource` written as ``text`` (see the module docstring); bad syntax is a UsageError."""
    options = dict(options or {})
    if text == STDIN:
        return StreamSource(text, "pipe:0", PIPE, options=options)
    if text.startswith(LAVFI):
        graph = text[len(LAVFI) :]
        if not graph:
            raise UsageError("lavfi: needs an FFmpeg source filter, e.g. lavfi:testsrc=size=320x240:rate=25")
        return StreamSource(text, graph, FILTER, "lavfi", options=options)
    if text.startswith(V4L2) or text.startswith("/dev/video"):
        return StreamSource(text, text.removeprefix(V4L2), DEVICE, "v4l2", live=True, options=options)
    scheme, sep, _ = text.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme not in LIVE_SCHEMES + PACED_SCHEMES:
            known = ", ".join(f"{s}://" for s in LIVE_SCHEMES + PACED_SCHEMES)
            raise UsageError(f"{text}: unsupported URL scheme {scheme!r}; vidact reads {known}")
        return StreamSource(text, text, NETWORK, live=scheme in LIVE_SCHEMES, options=options)
    return StreamSource(text, text, FILE, options=options)


def is_stream(text: str) -> bool:
    """Whether ``text`` names a stream (URL, ``-``, device, lavfi) rather than a file or folder."""
    return parse_source(text).kind != FILE


@dataclass
class ArrivedFrame:
    """One decoded frame: its position in the stream, its time, when it arrived, and its pixels."""

    index: int
    time: float  # seconds from the stream's first frame (timestamps, else index / fps)
    arrival: float  # time.monotonic() when it was decoded
    image: np.ndarray  # (H, W, 3) uint8 RGB


class FrameStream:
    """An open source: ``fps`` (0 when the source does not say), ``frames()`` decodes in order.

    ``timeout`` seconds bound the open and every read (a silent network source ends with
    :class:`StreamCut`); a source that cannot be opened is a one-line :class:`VideoDecodeError`.
    """

    def __init__(self, source: StreamSource, timeout: float = 10.0):
        import av

        self.source = source
        self.timeout = timeout
        if source.kind == FILE and not Path(source.url).is_file():
            raise UsageError(f"{source.url}: video file not found")
        if source.kind == DEVICE and not any(source.format in f.split(",") for f in av.formats_available):
            raise VideoDecodeError(source.text, "this PyAV build has no v4l2 input")
        try:
            self.container = av.open(
                source.url, format=source.format, options=source.options, timeout=(timeout, timeout)
            )
        except Exception as exc:  # PyAV raises many error types; all mean "cannot open this source"
            raise VideoDecodeError(source.text, f"cannot open: {first_line(exc)}") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoDecodeError(source.text, "no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self.fps = float(rate) if rate else 0.0

    def frames(self) -> Iterator[ArrivedFrame]:
        """Every frame as it is decoded; ends at the end of the stream, raises :class:`StreamCut` if it breaks."""
        stream, first_pts, index = self.stream, None, 0
        try:
            for frame in self.container.decode(stream):
                if frame.pts is not None and stream.time_base is not None:
                    first_pts = frame.pts if first_pts is None else first_pts
                    seconds = float((frame.pts - first_pts) * stream.time_base)
                else:
                    seconds = index / self.fps if self.fps else 0.0
                yield ArrivedFrame(index, seconds, time.monotonic(), frame.to_ndarray(format="rgb24"))
                index += 1
        except GeneratorExit:
            raise
        except Exception as exc:  # decode, I/O or timeout errors of the source: the stream broke off
            raise StreamCut(f"{self.source.text}: {self._why(exc)} after {index} frames") from None

    def _why(self, exc: BaseException) -> str:
        import av

        if isinstance(exc, av.error.ExitError):  # PyAV's read timeout interrupts FFmpeg this way
            return f"no data for {self.timeout:g} s"
        return first_line(exc)

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
