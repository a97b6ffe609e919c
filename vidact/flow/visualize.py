"""Middlebury colour-wheel rendering of optical flow (Baker et al., "A Database and Evaluation
Methodology for Optical Flow"): hue = direction, saturation = magnitude; ``vidact flow show``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidact.errors import UsageError
from vidact.io import flowio
from vidact.io.atomic import atomic_path

# Hue segments of the wheel: red-yellow, yellow-green, green-cyan, cyan-blue, blue-magenta, magenta-red.
_SEGMENTS = (15, 6, 4, 11, 13, 6)


def color_wheel() -> np.ndarray:
    """(55, 3) float RGB colours in [0, 255] around the Middlebury wheel."""
    ry, yg, gc, cb, bm, mr = _SEGMENTS
    ramps = [
        (np.full(ry, 255.0), np.arange(ry) * 255.0 / ry, np.zeros(ry)),
        (255.0 - np.arange(yg) * 255.0 / yg, np.full(yg, 255.0), np.zeros(yg)),
        (np.zeros(gc), np.full(gc, 255.0), np.arange(gc) * 255.0 / gc),
        (np.zeros(cb), 255.0 - np.arange(cb) * 255.0 / cb, np.full(cb, 255.0)),
        (np.arange(bm) * 255.0 / bm, np.zeros(bm), np.full(bm, 255.0)),
        (np.full(mr, 255.0), np.zeros(mr), 255.0 - np.arange(mr) * 255.0 / mr),
    ]
    return np.concatenate([np.stack(r, axis=1) for r in ramps])


def flow_to_color(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """(2, H, W) flow -> (H, W, 3) uint8 RGB; magnitudes are divided by ``max_flow`` (default: the largest)."""
    u, v = np.asarray(flow[0], np.float64), np.asarray(flow[1], np.float64)
    rad = np.sqrt(u * u + v * v)
    if max_flow is None:
        max_flow = float(rad.max())
    scale = max(float(max_flow), 1e-6)
    u, v, rad = u / scale, v / scale, rad / scale
    wheel = color_wheel()
    n = len(wheel)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    fk = (angle + 1) / 2 * (n - 1)
    k0 = np.floor(fk).astype(int)
    k1 = (k0 + 1) % n
    f = (fk - k0)[..., None]
    col = ((1 - f) * wheel[k0] + f * wheel[k1]) / 255.0
    inside = (rad <= 1)[..., None]
    r = rad[..., None]
    col = np.where(inside, 1 - r * (1 - col), col * 0.75)  # desaturate towards white near zero
    return np.clip(np.floor(255 * col), 0, 255).astype(np.uint8)


def flow_grid(flows: np.ndarray, columns: int = 4, max_flow: float | None = None, gap: int = 4) -> np.ndarray:
    """Colour-code (N, 2, H, W) flows with one shared scale and tile them, white gaps between."""
    if max_flow is None:
        max_flow = float(np.sqrt((flows.astype(np.float64) ** 2).sum(1)).max())
    n, _, h, w = flows.shape
    cols = min(columns, n)
    rows = -(-n // cols)
    grid = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for k, flow in enumerate(flows):
        r, c = divmod(k, cols)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = flow_to_color(flow, max_flow)
    return grid


def load_flows_for_show(src: str | Path, max_pairs: int, backend: str = "torch", device: str = "cpu") -> np.ndarray:
    """Up to ``max_pairs`` flows from a flow folder, or computed from the first frames of a video."""
    src = Path(src)
    if src.is_dir() and (
        flowio.read_manifest(src) is not None or (src / flowio.NPZ_FILE).is_file() or any(src.glob("*x_*.jpg"))
    ):
        n = min(flowio.count_flow(src), max_pairs)
        return flowio.read_flow(src, range(n))
    if not src.exists():
        raise UsageError(f"{src}: no such flow folder or video")
    from vidact.flow.inputs import load_frames
    from vidact.flow.options import FlowOptions
    from vidact.flow.solvers import compute_flows, make_estimator

    frames = load_frames(src)[: max_pairs + 1]
    options = FlowOptions(backend=backend, device=device)
    return compute_flows(frames, make_estimator(options), options.pairs_per_call)


def write_flow_image(path: str | Path, flows: np.ndarray, columns: int = 4) -> Path:
    """Write a PNG (or JPEG) grid of colour-coded flows."""
    import cv2

    path = Path(path)
    grid = flow_grid(flows, columns)
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        if not ok:
            raise UsageError(f"{path}: cannot encode an image with suffix {path.suffix!r}")
        tmp.write_bytes(buf.tobytes())
    return path


def write_flow_video(path: str | Path, flows: np.ndarray, fps: int = 10) -> Path:
    """Write an MP4 with one colour-coded frame per flow (one shared scale)."""
    from vidact.io.video import write_video

    max_flow = float(np.sqrt((flows.astype(np.float64) ** 2).sum(1)).max())
    frames = np.stack([flow_to_color(f, max_flow) for f in flows])
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # yuv420p: even sizes
    write_video(path, frames, fps=fps)
    return Path(path)


def show_flow(
    src: str | Path,
    out: str | Path,
    max_pairs: int = 8,
    columns: int = 4,
    fps: int = 10,
    backend: str = "torch",
    device: str = "cpu",
) -> dict:
    """Render the flow of ``src`` (flow folder or video) to ``out`` (.png/.jpg grid or .mp4)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg", ".mp4"):
        raise UsageError(f"{out}: output must end in .png, .jpg or .mp4")
    if max_pairs < 1:
        raise UsageError(f"--max-pairs must be >= 1, got {max_pairs}")
    flows = load_flows_for_show(src, max_pairs, backend, device)
    if suffix == ".mp4":
        write_flow_video(out, flows, fps)
    else:
        write_flow_image(out, flows, columns)
    mags = np.sqrt((flows.astype(np.float64) ** 2).sum(1))
    return {
        "out": str(out),
        "pairs": int(len(flows)),
        "height": int(flows.shape[2]),
        "width": int(flows.shape[3]),
        "max_flow": float(mags.max()),
        "mean_flow": float(mags.mean()),
    }
