"""The built-in synthetic motion data set: classes differ only by how things move.

Every clip has a random textured background and many small random foreground shapes;
the class decides only the motion of the foreground layer (translation direction,
rotation sense, zoom in/out, still, flicker). One frame therefore carries no class
information, while two frames do. Clips are deterministic in ``seed`` and written as
real H.264 files with PyAV.

Two styles. ``dots`` (the default): a dense random-dot kinematogram of small shapes over a
smooth background; every clip carries the motion everywhere, so the classes are easy and small
3D nets learn them in minutes. ``natural``: closer to real video in the ways large-batch and
coarse-to-fine training depend on: shapes of sizes from a few pixels to a third of the frame,
each with its own texture; a background with texture at several scales that drifts as a camera
pan would (the same for every class, so it is a nuisance); and the moving layer covers only
part of the frame. A coarse (fewer frames, smaller crop) clip still shows the large structures
move, and clips differ more within a class, so gradients differ more from clip to clip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from vidact.data.annotations import write_dataset_options
from vidact.io.atomic import atomic_write_text
from vidact.io.video import write_video

STYLES = ("dots", "natural")
MOTIONS = (
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "rotate_cw",
    "rotate_ccw",
    "zoom_in",
    "zoom_out",
    "still",
    "flicker",
)


@dataclass(frozen=True)
class SynthConfig:
    classes: int = 8
    per_class: int = 48  # 384 clips: fewer and small 3D nets memorise appearance instead of motion
    frames: int = 24
    size: int = 64
    fps: int = 25
    val_fraction: float = 0.25
    seed: int = 0
    codec: str = "libx264"
    style: str = "dots"  # dots | natural (see the module docstring)

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}")
        if not 2 <= self.classes <= len(MOTIONS):
            raise ValueError(f"classes must be in 2..{len(MOTIONS)}")
        if self.per_class < 2:
            raise ValueError("per_class must be at least 2 (one train, one val clip)")
        if self.frames < 2:
            raise ValueError("frames must be at least 2")
        if self.size < 16:
            raise ValueError("size must be at least 16")


def _texture(rng: np.random.Generator, h: int, w: int, blur: float) -> np.ndarray:
    """Smooth random colour texture, (h, w, 3) float32 in [0, 255]."""
    noise = rng.random((h, w, 3), dtype=np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), blur)
    tex -= tex.min()
    tex /= max(float(tex.max()), 1e-6)
    lo, hi = rng.uniform(0, 80), rng.uniform(150, 255)
    return (lo + tex * (hi - lo)).astype(np.float32)


def _shape_mask(rng: np.random.Generator, size: int, cx: int, cy: int, r: int) -> np.ndarray:
    """A random disc, bar or triangle of radius ``r`` at (cx, cy), as a (size, size) bool mask."""
    mask = np.zeros((size, size), np.uint8)
    kind = rng.integers(3)
    if kind == 0:
        cv2.circle(mask, (cx, cy), r, 1, -1)
    elif kind == 1:
        cv2.rectangle(mask, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 1, -1)
    else:
        pts = (rng.uniform(-r, r, size=(3, 2)) + (cx, cy)).astype(np.int32)
        cv2.fillConvexPoly(mask, pts, 1)
    return mask.astype(bool)


def _foreground(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Many small high-contrast shapes (a random-dot kinematogram): (rgb, alpha) layers.

    Motion evidence then covers the whole frame, so a small 3D network learns the motion
    classes in a few epochs, while any single frame stays uninformative.
    """
    rgb = np.zeros((size, size, 3), np.float32)
    alpha = np.zeros((size, size), np.float32)
    grain = _texture(rng, size, size, blur=1.0)
    lo, hi = max(2, size // 20), max(3, size // 9)
    for _ in range(int(rng.integers(12, 24))):
        cx, cy = (int(v) for v in rng.integers(0, size, size=2))
        r = int(rng.integers(lo, hi + 1))
        m = _shape_mask(rng, size, cx, cy, r)
        rgb[m] = 0.75 * rng.uniform(0, 255, size=3) + 0.25 * grain[m]
        alpha[m] = 1.0
    return rgb, alpha


def _multiscale_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Colour texture with structure at several scales (fine grain to blobs), (h, w, 3) in [0, 255]."""
    tex = sum(rng.uniform(0.3, 1.0) * _texture(rng, size, size, blur=b) for b in (0.7, 2.0, 6.0))
    tex -= tex.min()
    return (tex * (255.0 / max(float(tex.max()), 1e-6))).astype(np.float32)


def _foreground_natural(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Textured shapes of many sizes (radius size/24 .. size/4, log-uniform) in a random part of the frame."""
    rgb = np.zeros((size, size, 3), np.float32)
    alpha = np.zeros((size, size), np.float32)
    # the moving layer covers a random window of half to all of the frame
    span = int(rng.integers(size // 2, size + 1))
    x0, y0 = (int(v) for v in rng.integers(0, size - span + 1, size=2))
    lo, hi = np.log(max(2.0, size / 24)), np.log(size / 4)
    for _ in range(int(rng.integers(6, 16))):
        cx, cy = int(x0 + rng.integers(0, span)), int(y0 + rng.integers(0, span))
        r = int(round(np.exp(rng.uniform(lo, hi))))
        m = _shape_mask(rng, size, cx, cy, r)
        own = _texture(rng, size, size, blur=float(rng.uniform(0.5, 3.0)))
        rgb[m] = 0.55 * rng.uniform(0, 255, size=3) + 0.45 * own[m]
        alpha[m] = 1.0
    return rgb, alpha


def _affine(motion: str, t: int, size: int, speed: float, scale0: float, angle0: float) -> np.ndarray:
    """2x3 affine matrix for the foreground at frame ``t``."""
    c = (size / 2, size / 2)
    dx = dy = 0.0
    angle, scale = angle0, scale0
    if motion == "move_left":
        dx = -speed * t
    elif motion == "move_right":
        dx = speed * t
    elif motion == "move_up":
        dy = -speed * t
    elif motion == "move_down":
        dy = speed * t
    elif motion == "rotate_cw":
        angle = angle0 - 4.0 * speed * t  # OpenCV angles are counter-clockwise
    elif motion == "rotate_ccw":
        angle = angle0 + 4.0 * speed * t
    elif motion == "zoom_in":
        scale = scale0 * (1.0 + 0.025 * speed) ** t
    elif motion == "zoom_out":
        scale = scale0 * (1.0 + 0.025 * speed) ** (-t)
    m = cv2.getRotationMatrix2D(c, angle, scale)
    m[:, 2] += (dx, dy)
    return m


def _composite(
    background: np.ndarray, fg_rgb: np.ndarray, fg_alpha: np.ndarray, m: np.ndarray, motion: str, phase: float, t: int
) -> np.ndarray:
    """Frame ``t``: the foreground layer warped by ``m`` (wrapping for ``move_*``), flickered when the
    class is ``flicker``, over ``background``; (H, W, 3) uint8."""
    size = background.shape[0]
    border = cv2.BORDER_WRAP if motion.startswith("move_") else cv2.BORDER_CONSTANT
    rgb = cv2.warpAffine(fg_rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
    a = cv2.warpAffine(fg_alpha, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)[..., None]
    if motion == "flicker":
        rgb = rgb * (0.55 + 0.45 * np.cos(phase + 1.3 * t))
    return np.clip(background * (1 - a) + rgb * a, 0, 255).astype(np.uint8)


def render_clip(motion: str, frames: int, size: int, seed: int, style: str = "dots") -> np.ndarray:
    """Render one clip as (T, H, W, 3) uint8 RGB; deterministic in ``seed`` (and ``style``)."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}")
    if style == "natural":
        return _render_natural(motion, frames, size, seed)
    if style != "dots":
        raise ValueError(f"unknown style {style!r}")
    rng = np.random.default_rng(seed)
    background = _texture(rng, size, size, blur=rng.uniform(1.0, 4.0))
    fg_rgb, fg_alpha = _foreground(rng, size)
    speed = float(rng.uniform(0.8, 1.6))
    scale0 = float(rng.uniform(0.85, 1.15))
    angle0 = float(rng.uniform(0, 360))
    phase = float(rng.uniform(0, 2 * np.pi))
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        m = _affine(motion, t, size, speed, scale0, angle0)
        out[t] = _composite(background, fg_rgb, fg_alpha, m, motion, phase, t)
    return out


def _render_natural(motion: str, frames: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pad = size // 2  # the background is larger than the frame so the pan never shows its edge
    background = _multiscale_texture(rng, size + 2 * pad)
    fg_rgb, fg_alpha = _foreground_natural(rng, size)
    speed = float(rng.uniform(0.6, 1.8))
    scale0 = float(rng.uniform(0.85, 1.15))
    angle0 = float(rng.uniform(0, 360))
    phase = float(rng.uniform(0, 2 * np.pi))
    pan_speed = float(rng.uniform(0.0, 0.5))  # camera drift: slower than the class motion, any direction
    pan_angle = float(rng.uniform(0, 2 * np.pi))
    pan = np.array([np.cos(pan_angle), np.sin(pan_angle)]) * pan_speed
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        shift = np.float32([[1, 0, -pad + pan[0] * t], [0, 1, -pad + pan[1] * t]])
        bg = cv2.warpAffine(background, shift, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        m = _affine(motion, t, size, speed, scale0, angle0)
        m[:, 2] += pan * t  # the camera moves the foreground too
        out[t] = _composite(bg, fg_rgb, fg_alpha, m, motion, phase, t)
    return out


def clip_seed(seed: int, label: int, index: int) -> int:
    digest = hashlib.sha256(f"{seed}:{label}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def generate(out: str | Path, cfg: SynthConfig = SynthConfig(), progress=None) -> dict:
    """Write the data set folder: videos, ``classes.txt``, ``train.csv``, ``val.csv``, ``synth.json``.

    Existing clips from a run with the same configuration are kept (the job resumes).
    ``progress`` is an optional callable invoked once per finished clip.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "synth.json"
    manifest = {"generator": "vidact.data.synthetic", **asdict(cfg)}
    if cfg.style == "dots":
        del manifest["style"]  # folders written before styles existed stay resumable
    if manifest_path.exists() and json.loads(manifest_path.read_text()) != manifest:
        raise ValueError(f"{out} holds a synthetic set made with other settings; choose another folder")
    names = list(MOTIONS[: cfg.classes])
    n_val = max(1, int(round(cfg.per_class * cfg.val_fraction)))
    rows = {"train": [], "val": []}
    for label, name in enumerate(names):
        for i in range(cfg.per_class):
            rel = f"videos/{name}/{name}_{i:04d}.mp4"
            path = out / rel
            if not path.exists():
                clip = render_clip(name, cfg.frames, cfg.size, clip_seed(cfg.seed, label, i), style=cfg.style)
                write_video(path, clip, fps=cfg.fps, codec=cfg.codec)
            split = "val" if i >= cfg.per_class - n_val else "train"
            rows[split].append((rel, label))
            if progress is not None:
                progress()
    atomic_write_text(out / "classes.txt", "".join(n + "\n" for n in names))
    for split, items in rows.items():
        atomic_write_text(out / f"{split}.csv", "path,label\n" + "".join(f"{p},{y}\n" for p, y in items))
    # Mirroring swaps move_left/move_right and the rotation senses: training must not flip.
    write_dataset_options(out, horizontal_flip=False)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return {"out": str(out), "classes": names, "train": len(rows["train"]), "val": len(rows["val"])}
