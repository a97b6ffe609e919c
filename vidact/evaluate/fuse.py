"""Late fusion of saved multi-view scores (two-stream: RGB and flow), weighted per input."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidact.errors import UsageError
from vidact.evaluate.metrics import confusion_matrix, mean_class_accuracy, topk_accuracy
from vidact.evaluate.multiview import ViewScores, aggregate


def parse_weights(text: str | None, n: int) -> list[float]:
    """``"1,1.5"`` -> [1.0, 1.5]; None -> equal weights; the count must match the inputs."""
    if not text:
        return [1.0] * n
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise UsageError(f"--weights must be numbers separated by commas, got {text!r}") from None
    if len(weights) != n:
        raise UsageError(f"--weights has {len(weights)} values for {n} score files")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UsageError(f"--weights must be non-negative and not all zero, got {text!r}")
    return weights


def fuse_scores(
    inputs: list[ViewScores], weights: list[float], method: str = "softmax-mean", names: list[str] | None = None
) -> dict:
    """Aggregate each input per video, then take the weighted mean; top-1/top-5 of each and of the fusion."""
    if len(inputs) < 2:
        raise UsageError("fusion needs at least two score files")
    names = names or [f"input{i}" for i in range(len(inputs))]
    videos = [aggregate(s, method) for s in inputs]
    ref = videos[0]
    for name, v, s in zip(names[1:], videos[1:], inputs[1:]):
        if v.scores.shape[1] != ref.scores.shape[1]:
            raise UsageError(f"{name}: {v.scores.shape[1]} classes, but {names[0]} has {ref.scores.shape[1]}")
        if inputs[0].classes and s.classes and list(s.classes) != list(inputs[0].classes):
            raise UsageError(f"{name}: class names differ from {names[0]}")
        if len(v.video) != len(ref.video) or not np.array_equal(v.video, ref.video):
            raise UsageError(
                f"{name} covers {len(v.video)} videos, {names[0]} {len(ref.video)}: "
                f"they must score the same videos (same --data and --split)"
            )
        if not np.array_equal(v.labels, ref.labels):
            raise UsageError(f"{name}: labels differ from {names[0]} for the same videos")
    fused = sum(w * v.scores for w, v in zip(weights, videos)) / sum(weights)
    conf = confusion_matrix(fused.argmax(axis=1), ref.labels, fused.shape[1])
    return {
        "aggregation": method,
        "weights": weights,
        "videos": int(len(ref.video)),
        "inputs": [
            {
                "scores": n,
                "video_top1": topk_accuracy(v.scores, v.labels, 1),
                "video_top5": topk_accuracy(v.scores, v.labels, 5),
            }
            for n, v in zip(names, videos)
        ],
        "fused_top1": topk_accuracy(fused, ref.labels, 1),
        "fused_top5": topk_accuracy(fused, ref.labels, 5),
        "fused_mean_class_accuracy": mean_class_accuracy(conf),
        "fused_scores": fused,
        "video": ref.video,
        "labels": ref.labels,
    }


def fuse_files(paths: list[str | Path], weights: str | None = None, method: str = "softmax-mean") -> dict:
    """:func:`fuse_scores` over ``.npz`` files written by ``vidact eval --save-scores``."""
    inputs = [ViewScores.load(p) for p in paths]
    result = fuse_scores(inputs, parse_weights(weights, len(paths)), method, names=[str(p) for p in paths])
    for key in ("fused_scores", "video", "labels"):
        result.pop(key)
    return result
