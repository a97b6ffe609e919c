"""Predict the action in a video file with a trained checkpoint, for the whole video or per time window.

Each clip is a test view of ``VideoClipDataset`` with one crop (uniform clip;
:func:`vidact.data.views.eval_view`: short side scaled to the crop size, centre crop; normalised);
clip probabilities (softmax) are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidact.data import sampling, transforms, views
from vidact.errors import UsageError, VideoDecodeError
from vidact.io.video import decode_frames, probe
from vidact.runtime.build import ResolvedInput, model_from_checkpoint
from vidact.runtime.checkpoint import load_checkpoint
from vidact.runtime.device import select_device


def _clip_tensor(path: str, indices: np.ndarray, inp: ResolvedInput) -> torch.Tensor:
    frames = torch.from_numpy(decode_frames(path, indices)).permute(3, 0, 1, 2)  # (3, T, H, W) uint8
    x = views.apply_view(frames, views.eval_view(inp.size))
    return transforms.normalize(x, transforms.RGB_MEAN, transforms.RGB_STD)


def top_classes(probs: np.ndarray, classes: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[: min(k, len(classes))]
    return [{"label": int(i), "class": classes[i], "prob": float(probs[i])} for i in order]


def window_ranges(num_frames: int, fps: float, window: float) -> list[tuple[int, int]]:
    """Consecutive [start, end) frame ranges of ``window`` seconds covering the whole video."""
    length = max(1, int(round(window * fps)))
    return [(s, min(s + length, num_frames)) for s in range(0, num_frames, length)]


@torch.no_grad()
def _probs(model, clips: list[torch.Tensor], device: torch.device) -> np.ndarray:
    logits = model(torch.stack(clips).to(device)).float()
    return torch.softmax(logits, dim=1).cpu().numpy()


@torch.no_grad()
def _pre_logits(model, clips: list[torch.Tensor], device: torch.device, arch: str) -> np.ndarray:
    """Pooled pre-logit features of each clip: ``forward_head(forward_features(x), pre_logits=True)``."""
    x = torch.stack(clips).to(device)
    try:
        return model.forward_head(model.forward_features(x), pre_logits=True).float().cpu().numpy()
    except (TypeError, AttributeError):
        raise UsageError(f"{arch} does not expose pre-logit features (forward_head(x, pre_logits=True))") from None


@dataclass
class Predictor:
    """A checkpoint's model, in eval mode on its device, with the input it expects and its class names."""

    checkpoint: Path
    arch: str
    classes: list[str]
    model: torch.nn.Module
    inp: ResolvedInput
    device: torch.device


def load_predictor(checkpoint: str | Path, device: str = "auto") -> Predictor:
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    dev = select_device(device)
    model, inp = model_from_checkpoint(ckpt, checkpoint, dev)
    if inp.modality != "rgb":
        raise UsageError(
            f"{checkpoint}: a {inp.modality} model needs precomputed flow; "
            f"predict reads RGB video files (use vidact eval on a flow data set)"
        )
    return Predictor(checkpoint, ckpt["arch"], list(ckpt["classes"]), model, inp, dev)


def _check_options(topk: int, clips: int, window: float | None) -> None:
    if topk < 1:
        raise UsageError(f"--topk must be at least 1, got {topk}")
    if clips < 1:
        raise UsageError(f"--clips must be at least 1, got {clips}")
    if window is not None and window <= 0:
        raise UsageError(f"--window must be a positive number of seconds, got {window}")


def predict_with(
    p: Predictor,
    video: str | Path,
    *,
    topk: int = 5,
    window: float | None = None,
    clips: int = 3,
    features: bool = False,
) -> dict:
    """:func:`predict_video` with a loaded :class:`Predictor`; ``features`` adds the mean pre-logit vector."""
    _check_options(topk, clips, window)
    video = Path(video)
    if not video.is_file():
        raise VideoDecodeError(video, "video file not found")
    model, inp, dev, classes = p.model, p.inp, p.device, p.classes
    info = probe(video)
    span = sampling.clip_span(inp.frames, inp.stride)
    whole = [
        _clip_tensor(str(video), idx, inp)
        for idx in sampling.uniform_clips(info.num_frames, inp.frames, inp.stride, clips)
    ]
    probs = _probs(model, whole, dev).mean(axis=0)
    result = {
        "video": str(video),
        "checkpoint": str(p.checkpoint),
        "arch": p.arch,
        "frames": info.num_frames,
        "fps": info.fps,
        "duration": info.duration,
        "clips": clips,
        "aggregation": "softmax-mean",
        "top": top_classes(probs, classes, topk),
    }
    if features:
        result["features"] = _pre_logits(model, whole, dev, p.arch).mean(axis=0)
    if window is not None:
        rows = []
        for start, end in window_ranges(info.num_frames, info.fps, window):
            # One clip centred in the window; a window shorter than the clip borrows frames after it.
            centre = (start + end) // 2
            first = min(max(centre - span // 2, 0), max(info.num_frames - span, 0))
            idx = sampling.clip_at(info.num_frames, first, inp.frames, inp.stride)
            pw = _probs(model, [_clip_tensor(str(video), idx, inp)], dev)[0]
            fps = info.fps or 1.0
            rows.append({"start": start / fps, "end": end / fps, "top": top_classes(pw, classes, topk)})
        result["window"] = window
        result["windows"] = rows
    return result


def predict_video(
    checkpoint: str | Path,
    video: str | Path,
    *,
    topk: int = 5,
    window: float | None = None,
    clips: int = 3,
    device: str = "auto",
) -> dict:
    """Top-k classes for ``video`` (mean of ``clips`` uniform clips), and per window when ``window`` is set."""
    _check_options(topk, clips, window)
    if not Path(video).is_file():
        raise UsageError(f"{video}: video file not found")
    return predict_with(load_predictor(checkpoint, device), video, topk=topk, window=window, clips=clips)
