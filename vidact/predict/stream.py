"""Sliding-window prediction as frames arrive: files decoded once, network streams, standard input,
capture devices and FFmpeg filter sources (:mod:`vidact.io.stream`).

A reader thread decodes each frame and reduces it at once to the model's test view (short side
scaled, centre crop), so what is kept is ``window`` small crops plus a short queue: memory stays flat
however long the stream runs. Window ``k`` covers frames ``[k * hop, k * hop + window)`` and is scored
as soon as its last frame arrives: ``frames`` of the model's clip evenly spread over it (PyTorchVideo's
``UniformTemporalSubsample``), one softmax. When the stream ends between two windows, one last window
covers its final ``window`` frames. The latency of a window is the time from its last frame's arrival
to its prediction.

Live sources (cameras, rtsp, udp, ...) do not wait: at most one hop of frames queues for the scorer, and
when scoring falls behind the oldest queued frames are dropped (and counted) rather than letting the
delay grow. A stream that breaks off (I/O error,
connection reset, no data for ``timeout`` seconds) ends the run with the windows scored so far kept:
exit code 1; the end of the stream is exit code 0, Ctrl-C 130 (with the summary all the same).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from vidact.data import transforms
from vidact.errors import UsageError
from vidact.io.stream import FrameStream, StreamCut, StreamSource
from vidact.predict.predictor import Predictor, top_classes

DEFAULT_FPS = 30.0  # assumed when a source gives no frame rate (said once)
INTERRUPTED = 130  # the exit code of a run stopped with Ctrl-C
QUEUE_FRAMES = 64  # decoded frames that may wait for the scorer (a live source: one hop's worth)


@dataclass
class StreamReport:
    """What a streaming run did: windows, frames, how it ended, latency and throughput."""

    source: str
    fps: float
    window_frames: int
    hop_frames: int
    windows: int = 0
    frames: int = 0
    dropped_frames: int = 0
    seconds: float = 0.0  # wall time from the first frame to the end
    windows_per_second: float = 0.0
    latency_ms: dict = field(default_factory=dict)  # mean, p50, p95, max
    ended: str = "end of stream"
    exit_code: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _latency_summary(latencies: list[float]) -> dict:
    if not latencies:
        return {}
    ms = np.asarray(latencies) * 1000
    return {
        "mean": round(float(ms.mean()), 2),
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p95": round(float(np.percentile(ms, 95)), 2),
        "max": round(float(ms.max()), 2),
    }


def window_sizes(predictor: Predictor, fps: float, window: float | None, hop: float | None) -> tuple[int, int]:
    """(window, hop) in frames; the default window is the model's clip at 30 fps (its training span)."""
    if window is not None and window <= 0:
        raise UsageError(f"--window must be a positive number of seconds, got {window}")
    if hop is not None and hop <= 0:
        raise UsageError(f"--hop must be a positive number of seconds, got {hop}")
    seconds = window if window is not None else predictor.inp.frames * predictor.inp.stride / DEFAULT_FPS
    frames = max(1, round(seconds * fps))
    return frames, max(1, round((hop if hop is not None else seconds) * fps))


class _Reader(threading.Thread):
    """Decodes the stream into a bounded queue of test-view crops; drops the oldest when live and full."""

    END = object()

    def __init__(self, stream: FrameStream, prepare: Callable[[np.ndarray], torch.Tensor], live: bool, hop: int):
        super().__init__(daemon=True, name="vidact-stream-reader")
        self.stream, self.prepare, self.live = stream, prepare, live
        self.queue: queue.Queue = queue.Queue(maxsize=max(2, hop) if live else QUEUE_FRAMES)
        self.dropped = 0
        self.error: StreamCut | None = None
        self.failure: BaseException | None = None
        self.stop = threading.Event()

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                if self.live:
                    self.queue.put_nowait(item)
                else:
                    self.queue.put(item, timeout=0.1)  # wait for the scorer, but notice a stop
                return
            except queue.Full:
                if self.live:  # the scorer is behind a real-time source: forget the oldest frame
                    try:
                        self.queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass

    def run(self) -> None:
        try:
            for frame in self.stream.frames():
                if self.stop.is_set():
                    break
                self._put((frame.index, frame.time, frame.arrival, self.prepare(frame.image)))
        except StreamCut as exc:
            self.error = exc
        except BaseException as exc:  # a bug, not the source: raised again in the scoring thread
            self.failure = exc
        finally:
            self._put(self.END)


def predict_windows(
    predictor: Predictor,
    source: StreamSource,
    *,
    window: float | None = None,
    hop: float | None = None,
    topk: int = 5,
    timeout: float = 10.0,
    live: bool | None = None,
    on_window: Callable[[dict], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> StreamReport:
    """Score sliding windows of ``source`` as its frames arrive; ``on_window`` gets each window's row."""
    if topk < 1:
        raise UsageError(f"--topk must be at least 1, got {topk}")
    live = source.live if live is None else live
    with FrameStream(source, timeout=timeout) as stream:
        report = StreamReport(source.text, stream.fps or DEFAULT_FPS, 0, 0)
        if not stream.fps:
            report.notes.append(f"{source.text}: no frame rate given; windows assume {DEFAULT_FPS:g} fps")
            if on_note is not None:
                on_note(report.notes[-1])
        report.window_frames, report.hop_frames = window_sizes(predictor, report.fps, window, hop)
        view = predictor.view()
        reader = _Reader(stream, lambda image: _prepare(image, view), live, report.hop_frames)
        reader.start()
        try:
            _score(predictor, reader, report, topk, on_window)
        except KeyboardInterrupt:  # Ctrl-C ends a live run like the end of its stream, windows kept
            report.ended, report.exit_code = "interrupted", INTERRUPTED
        finally:
            reader.stop.set()
            reader.join(timeout=timeout + 1)
    if reader.failure is not None:
        raise reader.failure
    report.dropped_frames = reader.dropped
    if reader.error is not None and not report.exit_code:
        report.ended, report.exit_code = f"stream cut: {reader.error}", reader.error.exit_code
    return report


def _prepare(image: np.ndarray, view) -> torch.Tensor:
    """One RGB frame (H, W, 3) -> its test-view crop (3, S, S), as the clip transform would make it."""
    from vidact.data import views

    frame = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(1)  # (3, 1, H, W)
    return views.apply_view(frame, view)[:, 0]


def _score(predictor: Predictor, reader: _Reader, report: StreamReport, topk: int, on_window) -> None:
    size, hop = report.window_frames, report.hop_frames
    buffer: deque = deque(maxlen=size)
    latencies: list[float] = []
    count, last_scored, started = 0, 0, time.monotonic()
    try:
        while True:
            item = reader.queue.get()
            if item is reader.END:
                break
            started = started if count else time.monotonic()
            buffer.append(item)
            count += 1
            if count >= size and (count - size) % hop == 0:
                latencies.append(_emit(predictor, buffer, report, topk, on_window))
                last_scored = count
        if count > last_scored:  # the stream ended between two windows: one last window on its final frames
            latencies.append(_emit(predictor, buffer, report, topk, on_window))
    finally:  # also when interrupted: the summary covers what was scored
        report.frames = count
        report.seconds = round(time.monotonic() - started, 3) if count else 0.0
        report.windows_per_second = round(report.windows / report.seconds, 3) if report.seconds > 0 else 0.0
        report.latency_ms = _latency_summary(latencies)


@torch.no_grad()
def _emit(predictor: Predictor, buffer: deque, report: StreamReport, topk: int, on_window) -> float:
    frames = list(buffer)
    pick = torch.linspace(0, len(frames) - 1, predictor.inp.frames).long().tolist()
    clip = torch.stack([frames[i][3] for i in pick], dim=1)  # (3, T, S, S)
    x = transforms.normalize(clip, transforms.RGB_MEAN, transforms.RGB_STD).unsqueeze(0).to(predictor.device)
    probs = torch.softmax(predictor.model(x).float(), dim=1)[0].cpu().numpy()
    latency = time.monotonic() - frames[-1][2]
    row = {
        "window": report.windows,
        "start": round(frames[0][1], 3),
        "end": round(frames[-1][1] + 1 / report.fps, 3),
        "frames": [frames[0][0], frames[-1][0]],
        "top": top_classes(probs, predictor.classes, topk),
        "latency_ms": round(latency * 1000, 2),
    }
    report.windows += 1
    if on_window is not None:
        on_window(row)
    return latency
