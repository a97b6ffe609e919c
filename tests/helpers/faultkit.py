"""Bad inputs for the fault suite (tests/faults/: each command fed broken inputs) and the checks every fault test makes.

``faults`` makes each bad input on demand in a fresh temporary folder, small and fast:
broken videos (zero bytes, truncated, random bytes, audio only), odd but valid videos
(1 frame, variable frame rate, 1x1 / 2x2 / 4097-wide, a non-UTF-8 file name), bad data set
folders (missing file, path escaping the root, duplicates, unknown label, empty list),
an output folder nobody can write to, and bad checkpoints (pickled code, truncated,
another architecture). ``assert_no_partial_output`` checks that a run left no staging debris.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

# Broken videos: factory name -> the cause every command must name (a substring of the line).
BROKEN_VIDEOS = {
    "zero_byte": "empty file (0 bytes)",
    "truncated": "cannot open",
    "truncated_faststart": "decode failed",  # index intact, frame data cut
    "random_bytes": "cannot open",
    "audio_only": "no video stream",
}
# Odd but valid videos: every command must process them (or refuse them with a clear line).
ODD_VIDEOS = ("one_frame", "variable_frame_rate", "tiny_1x1", "tiny_2x2", "wide_4097", "non_utf8_name")


def encode_video(
    path: Path,
    frames: np.ndarray,
    codec: str = "libx264",
    fmt: str | None = None,
    pix_fmt: str = "yuv420p",
    pts_ms: list[int] | None = None,
    faststart: bool = False,
) -> Path:
    """Encode (T, H, W, 3) uint8 frames with PyAV; ``pts_ms`` sets irregular timestamps (VFR)."""
    import av

    options = {"movflags": "faststart"} if faststart else {}
    with av.open(
        os.fsencode(path).decode("utf-8", "surrogateescape"), mode="w", format=fmt, options=options
    ) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = pix_fmt
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def moving_frames(n: int = 16, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    """A textured square sliding right over noise: real motion for flow, cheap to make."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    square = rng.integers(0, 256, (max(1, height // 3), max(1, width // 3), 3), dtype=np.uint8)
    out = np.repeat(background[None], n, axis=0)
    sh, sw = square.shape[:2]
    for t in range(n):
        x = min(width - sw, t)
        out[t, height // 3 : height // 3 + sh, x : x + sw] = square
    return out


class Faults:
    """Makes bad inputs under ``root``; each method returns the path it made."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dest(self, name: str, folder: Path | None) -> Path:
        folder = Path(folder) if folder is not None else self.root
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    # --- videos -------------------------------------------------------------------------
    def good_clip(
        self, name: str = "good.mp4", folder: Path | None = None, frames: int = 16, size: int = 32, seed: int = 0
    ) -> Path:
        return encode_video(self._dest(name, folder), moving_frames(frames, size, size, seed))

    def zero_byte(self, name: str = "zero_byte.mp4", folder: Path | None = None) -> Path:
        path = self._dest(name, folder)
        path.write_bytes(b"")
        return path

    def truncated(self, name: str = "truncated.mp4", folder: Path | None = None) -> Path:
        """A real clip cut in half; its moov atom (at the end) is gone."""
        path = self.good_clip(name, folder)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    def truncated_faststart(self, name: str = "truncated_faststart.mp4", folder: Path | None = None) -> Path:
        """A clip whose index (moov first) survives but whose frame data is cut in half."""
        path = self._dest(name, folder)
        encode_video(path, moving_frames(16), faststart=True)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    def random_bytes(self, name: str = "random_bytes.mp4", folder: Path | None = None) -> Path:
        path = self._dest(name, folder)
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return path

    def audio_only(self, name: str = "audio_only.mp4", folder: Path | None = None) -> Path:
        """An .mp4 holding one AAC audio stream and no video stream."""
        import av

        path = self._dest(name, folder)
        with av.open(str(path), mode="w", format="mp4") as container:
            stream = container.add_stream("aac", rate=16000)
            stream.layout = "mono"
            for k in range(8):
                frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 16000, k * 1024
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path

    def one_frame(self, name: str = "one_frame.mp4", folder: Path | None = None) -> Path:
        return encode_video(self._dest(name, folder), moving_frames(1))

    def variable_frame_rate(self, name: str = "variable_frame_rate.mp4", folder: Path | None = None) -> Path:
        """16 frames with irregular gaps between timestamps (10 ms to 200 ms)."""
        pts = [0, 40, 50, 200, 210, 260, 400, 410, 420, 430, 600, 640, 680, 700, 900, 1000]
        return encode_video(self._dest(name, folder), moving_frames(16), pts_ms=pts)

    def tiny(self, size: int = 1, name: str | None = None, folder: Path | None = None) -> Path:
        """A ``size`` x ``size`` video (FFV1 in Matroska accepts any size)."""
        path = self._dest(name or f"tiny_{size}x{size}.mkv", folder)
        return encode_video(path, moving_frames(4, size, size), codec="ffv1", fmt="matroska", pix_fmt="yuv444p")

    def tiny_1x1(self, name: str = "tiny_1x1.mkv", folder: Path | None = None) -> Path:
        return self.tiny(1, name, folder)

    def tiny_2x2(self, name: str = "tiny_2x2.mkv", folder: Path | None = None) -> Path:
        return self.tiny(2, name, folder)

    def wide_4097(self, name: str = "wide_4097.mkv", folder: Path | None = None) -> Path:
        """4097 x 8 pixels: wider than 4096, odd width."""
        path = self._dest(name, folder)
        return encode_video(path, moving_frames(4, 8, 4097), codec="ffv1", fmt="matroska", pix_fmt="yuv444p")

    def non_utf8_name(self, folder: Path | None = None) -> Path:
        """A good clip whose file name is not valid UTF-8 (``clip_\\xff.mp4`` as raw bytes)."""
        folder = Path(folder) if folder is not None else self.root
        folder.mkdir(parents=True, exist_ok=True)
        path = Path(os.fsdecode(os.fsencode(folder) + b"/clip_\xff.mp4"))
        encode_video(path, moving_frames(16, seed=3))
        assert os.fsencode(path).endswith(b"clip_\xff.mp4")
        return path

    def make(self, kind: str, folder: Path | None = None) -> Path:
        """Any video fault by its name in ``BROKEN_VIDEOS`` or ``ODD_VIDEOS``."""
        if kind == "non_utf8_name":
            return self.non_utf8_name(folder)
        return getattr(self, kind)(folder=folder)

    # --- data set folders ---------------------------------------------------------------
    def dataset(self, name: str = "data", train=None, val=None, classes=("a", "b"), clips: int = 4) -> Path:
        """A clean data set folder: ``clips`` train clips ``videos/c{i}.mp4`` and two val clips
        ``videos/v{i}.mp4``, labels alternating over ``classes``.

        ``train`` / ``val`` are lists of ``(path, label)`` rows written verbatim in place of
        the defaults; ``val=[]`` writes an empty list.
        """
        root = self.root / name
        for i in range(clips):
            self.good_clip(f"c{i}.mp4", root / "videos", seed=i)
        for i in range(2):
            self.good_clip(f"v{i}.mp4", root / "videos", seed=100 + i)
        train = [(f"videos/c{i}.mp4", i % len(classes)) for i in range(clips)] if train is None else train
        val = [(f"videos/v{i}.mp4", i % len(classes)) for i in range(2)] if val is None else val
        (root / "classes.txt").write_text("".join(c + "\n" for c in classes))
        for split, items in (("train", train), ("val", val)):
            (root / f"{split}.csv").write_text(
                "path,label\n" + "".join(f"{p},{y}\n" for p, y in items), encoding="utf-8", errors="surrogateescape"
            )
        return root

    def dataset_missing_file(self) -> Path:
        return self._with_extra_row("missing", ("videos/not_there.mp4", 0))

    def dataset_escaping_path(self) -> Path:
        outside = self.good_clip("outside.mp4", self.root / "elsewhere")
        assert outside.exists()
        return self._with_extra_row("escaping", ("../elsewhere/outside.mp4", 0))

    def dataset_duplicate(self) -> Path:
        return self._with_extra_row("duplicate", ("videos/c0.mp4", 0))

    def dataset_unknown_label(self) -> Path:
        root = self._with_extra_row("unknown_label", ("videos/zebra.mp4", "zebra"))
        self.good_clip("zebra.mp4", root / "videos", seed=7)
        return root

    def dataset_empty_list(self) -> Path:
        return self.dataset("empty_list", val=[])

    def _with_extra_row(self, name: str, row) -> Path:
        rows = [(f"videos/c{i}.mp4", i % 2) for i in range(4)]
        return self.dataset(name, train=rows + [row])

    # --- output folders -----------------------------------------------------------------
    def unwritable_dir(self) -> Path:
        """An output folder that cannot be written to.

        As an ordinary user this is a folder with mode 0o500. As root (as in CI containers)
        permission bits do not stop writes, so it is a path whose parent is a regular file:
        neither the folder nor anything under it can ever be created.
        """
        folder = self.root / "readonly_out"
        folder.mkdir(exist_ok=True)
        folder.chmod(0o500)
        probe = folder / ".probe"
        try:
            probe.write_bytes(b"")
        except PermissionError:
            return folder
        probe.unlink()
        folder.chmod(0o700)
        blocker = self.root / "a_regular_file"
        blocker.write_text("not a folder\n")
        return blocker / "out"

    # --- checkpoints --------------------------------------------------------------------
    def pickled_code_checkpoint(self) -> tuple[Path, Path]:
        """A checkpoint whose unpickling runs code (creates a marker file); returns (ckpt, marker).

        ``torch.load(weights_only=True)`` must refuse it without running anything.
        """
        import torch

        marker = self.root / "PICKLED_CODE_RAN"
        path = self.root / "pickled_code.pt"
        torch.save({"model": _RunsCode(str(marker)), "arch": "c3d"}, path)
        return path, marker

    def truncated_checkpoint(self, source: Path, name: str = "truncated.pt") -> Path:
        data = Path(source).read_bytes()
        path = self.root / name
        path.write_bytes(data[: len(data) // 2])
        return path


class _RunsCode:
    """Pickles into ``exec(code)``: loading it with ``weights_only=False`` writes the marker."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


# --- checks every fault test makes --------------------------------------------------------
DEBRIS_MARKERS = (".partial", ".tmp")


def leftover_debris(folder: Path) -> list[str]:
    """Staging folders and temp files left anywhere under ``folder`` (should be none)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(folder)):
        for name in dirnames + filenames:
            text = os.fsdecode(name)
            if any(m in text for m in DEBRIS_MARKERS):
                found.append(os.fsdecode(os.path.join(dirpath, name)))
    return found


def assert_no_partial_output(folder: Path) -> None:
    debris = leftover_debris(folder)
    assert not debris, f"partial output left behind: {debris}"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:") or "\t" in line]


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), for byte-identical comparisons."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# Subprocesses run single-threaded: runs compared byte for byte use the same thread count,
# and a reference run beside an interrupted one does not oversubscribe the CPU.
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def vidact_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "vidact", *[str(a) for a in args]]


def run_quiet(cmd: list[str]) -> subprocess.Popen:
    """Start ``cmd`` in the background (single-threaded, output discarded)."""
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **SUBPROCESS_ENV}
    )


def run_json(cmd: list[str]) -> dict:
    """Run ``cmd`` (single-threaded) to the end; it must exit 0; returns its JSON stdout."""
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **SUBPROCESS_ENV})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def kill_when(cmd: list[str], ready, timeout: float = 60.0, env: dict | None = None) -> int:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` is true; returns its exit status.

    Fails the test if the command finished before ``ready()`` ever held (nothing was interrupted).
    """
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **SUBPROCESS_ENV, **(env or {})}
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if ready():
                proc.send_signal(signal.SIGKILL)
                return proc.wait(10)
            if proc.poll() is not None:
                raise AssertionError(
                    f"{cmd} finished (rc {proc.returncode}) before it could be killed: "
                    f"{proc.stderr.read().decode(errors='replace')[-500:]}"
                )
            time.sleep(0.01)
        raise AssertionError(f"{cmd}: nothing to kill after {timeout} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest
