"""Predict the action in a video file with a trained checkpoint, for the whole video or per time window.

Each clip is a test view of ``VideoClipDataset`` with one crop, placed by the checkpoint's test
protocol (:mod:`vidact.weights.test_protocol`: vidact's uniform clips, or the publishers' clips at the
crop their zoo row was published at for a converted zoo checkpoint): short side scaled, centre crop,
normalised; clip probabilities (softmax) are averaged. Windows (``window``) come from one pass over
the file (:mod:`vidact.predict.stream`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidact.data import transforms, views
from vidact.errors import UsageError, VideoDecodeError
from vidact.io.video import decode_frames, probe
from vidact.predict.predictor import Predictor, load_predictor, top_classes


def _clip_tensor(path: str, indices: np.ndarray, view: views.SpatialParams) -> torch.Tensor:
    frames = torch.from_numpy(decode_frames(path, indices)).permute(3, 0, 1, 2)  # (3, T, H, W) uint8
    return transforms.normalize(views.apply_view(frames, view), transforms.RGB_MEAN, transforms.RGB_STD)


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
    hop: float | None = None,
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
    whole = [
        _clip_tensor(
            str(video), p.protocol.clip_indices(info.num_frames, info.fps, inp.frames, inp.stride, k, clips), p.view()
        )
        for k in range(clips)
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
        "protocol": p.protocol.name,
        "crop_size": p.view().crop_size,
        "aggregation": "softmax-mean",
        "top": top_classes(probs, classes, topk),
    }
    if features:
        result["features"] = _pre_logits(model, whole, dev, p.arch).mean(axis=0)
    if window is not None:
        from vidact.io.stream import parse_source
        from vidact.predict.stream import predict_windows

        rows: list[dict] = []
        report = predict_windows(p, parse_source(str(video)), window=window, hop=hop, topk=topk, on_window=rows.append)
        if report.exit_code:
            raise VideoDecodeError(video, report.ended)
        result.update({"window": window, "hop": hop or window, "windows": rows})
    return result


def predict_video(
    checkpoint: str | Path,
    video: str | Path,
    *,
    topk: int = 5,
    window: float | None = None,
    hop: float | None = None,
    clips: int = 3,
    device: str = "auto",
    protocol: str = "auto",
) -> dict:
    """Top-k classes for ``video`` (mean of ``clips`` test clips), and per window when ``window`` is set
    (windows of ``window`` seconds every ``hop`` seconds, default ``window``)."""
    _check_options(topk, clips, window)
    if not Path(video).is_file():
        raise UsageError(f"{video}: video file not found")
    predictor = load_predictor(checkpoint, device, protocol)
    return predict_with(predictor, video, topk=topk, window=window, hop=hop, clips=clips)
