"""Multi-view testing: per-view logits of K clips x C crops, averaged into one score per video.

Aggregation is **softmax-then-mean** by default: each view's logits go through a softmax
and the video's score is the mean of those probabilities (``logit-mean`` averages raw
logits instead). The per-view logits are kept (``--save-scores``) so any aggregation can
be redone later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidact.errors import UsageError, first_line
from vidact.evaluate.metrics import (
    confusion_matrix,
    mean_class_accuracy,
    per_class_table,
    topk_accuracy,
)
from vidact.io.atomic import atomic_path
from vidact.runtime.device import autocast, to_device

AGGREGATIONS = ("softmax-mean", "logit-mean")


@dataclass
class ViewScores:
    """One row per view: logits, the video's label, the video index and the view index."""

    logits: np.ndarray  # (N, K) float32
    labels: np.ndarray  # (N,) int64
    video: np.ndarray  # (N,) int64
    view: np.ndarray  # (N,) int64
    classes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` with ``logits``, ``labels``, ``video``, ``view``, ``classes``, ``meta``."""
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(
                    f,
                    logits=self.logits.astype(np.float32),
                    labels=self.labels,
                    video=self.video,
                    view=self.view,
                    classes=np.array(self.classes, dtype=str),
                    meta=np.array(json.dumps(self.meta)),
                )
        return path

    @classmethod
    def load(cls, path: str | Path) -> ViewScores:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"{path}: scores file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(
                    z["logits"],
                    z["labels"].astype(np.int64),
                    z["video"].astype(np.int64),
                    z["view"].astype(np.int64),
                    [str(c) for c in z["classes"]],
                    json.loads(str(z["meta"])) if "meta" in z else {},
                )
        except (KeyError, ValueError, OSError) as exc:
            raise UsageError(f"{path}: not a vidact scores file ({first_line(exc)})") from None


@dataclass
class VideoScores:
    """Aggregated scores, one row per video (sorted by video index)."""

    video: np.ndarray  # (V,)
    scores: np.ndarray  # (V, K): probabilities for softmax-mean
    labels: np.ndarray  # (V,)


@torch.no_grad()
def collect_view_scores(
    model: nn.Module, loader, device: torch.device, *, amp: str = "none", channels_last: bool = False, on_batch=None
) -> ViewScores:
    """Run ``model`` in eval mode over every view the loader yields; keep the raw logits."""
    was_training = model.training
    model.eval()
    logits, labels, videos, views = [], [], [], []
    try:
        for batch in loader:
            x = to_device(batch["video"], device, channels_last)
            with autocast(device, amp):
                out = model(x)
            logits.append(out.float().cpu())
            labels.append(torch.as_tensor(batch["label"]).long())
            videos.append(torch.as_tensor(batch["index"]).long())
            view = batch.get("view")
            views.append(torch.as_tensor(view).long() if view is not None else torch.zeros(len(out), dtype=torch.long))
            if on_batch is not None:
                on_batch(len(out))
    finally:
        model.train(was_training)
    if not logits:
        raise UsageError("no clips to evaluate (empty split?)")
    return ViewScores(
        torch.cat(logits).numpy(), torch.cat(labels).numpy(), torch.cat(videos).numpy(), torch.cat(views).numpy()
    )


def drop_replaced_views(scores: ViewScores) -> ViewScores:
    """Keep the first row of every (video, view) pair.

    The dataset stands in another video's view for an unreadable one; that stand-in repeats a
    view the other video already has, so dropping repeats leaves only the readable videos, each
    view once, and the unreadable video out of every metric.
    """
    pairs = np.stack([scores.video, scores.view], axis=1)
    _, first = np.unique(pairs, axis=0, return_index=True)
    keep = np.sort(first)
    return ViewScores(
        scores.logits[keep], scores.labels[keep], scores.video[keep], scores.view[keep], scores.classes, scores.meta
    )


def _writable_folder(folder: Path) -> Path:
    """Create ``folder`` now, so a bad output path fails before the evaluation, not after it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{folder}: cannot create the output folder: {exc.strerror or exc}") from None
    return folder


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def aggregate(scores: ViewScores, method: str = "softmax-mean") -> VideoScores:
    """Average the views of each video (``softmax-mean``: mean of per-view probabilities)."""
    if method not in AGGREGATIONS:
        raise UsageError(f"aggregation {method!r} is not one of {', '.join(AGGREGATIONS)}")
    per_view = (
        softmax(scores.logits.astype(np.float64)) if method == "softmax-mean" else scores.logits.astype(np.float64)
    )
    video_ids, inverse = np.unique(scores.video, return_inverse=True)
    sums = np.zeros((len(video_ids), per_view.shape[1]))
    np.add.at(sums, inverse, per_view)
    counts = np.bincount(inverse, minlength=len(video_ids))[:, None]
    labels = np.zeros(len(video_ids), dtype=np.int64)
    labels[inverse] = scores.labels
    return VideoScores(video_ids, sums / counts, labels)


def evaluate_scores(scores: ViewScores, classes: list[str] | None = None, method: str = "softmax-mean") -> dict:
    """Clip- and video-level top-1/top-5, mean class accuracy, per-class table, confusion matrix."""
    classes = list(classes or scores.classes or [str(i) for i in range(scores.logits.shape[1])])
    videos = aggregate(scores, method)
    pred = videos.scores.argmax(axis=1)
    conf = confusion_matrix(pred, videos.labels, len(classes))
    views_per_video = np.bincount(np.unique(scores.video, return_inverse=True)[1])
    return {
        "aggregation": method,
        "videos": int(len(videos.video)),
        "views": int(len(scores.video)),
        "views_per_video": int(views_per_video.max()) if len(views_per_video) else 0,
        "clip_top1": topk_accuracy(scores.logits, scores.labels, 1),
        "clip_top5": topk_accuracy(scores.logits, scores.labels, 5),
        "video_top1": topk_accuracy(videos.scores, videos.labels, 1),
        "video_top5": topk_accuracy(videos.scores, videos.labels, 5),
        "mean_class_accuracy": mean_class_accuracy(conf),
        "per_class": per_class_table(conf, classes),
        "confusion": conf.tolist(),
    }


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path | None = None,
    *,
    split: str = "val",
    protocol: str = "auto",
    clips: int | None = None,
    crops: int | None = None,
    crop_size: int = 0,
    short_side: int = 0,
    batch_size: int = 8,
    workers: int = -1,
    device: str = "auto",
    method: str = "softmax-mean",
    out_dir: str | Path | None = None,
    save_scores: str | Path | None = None,
    progress: bool | None = None,
) -> dict:
    """Multi-view test of a checkpoint on a split: report dict, ``confusion.png``, optional scores npz.

    ``protocol`` (:mod:`vidact.weights.test_protocol`) places the views; ``clips``/``crops`` (default: the
    protocol's), ``crop_size`` and ``short_side`` (default: the protocol's, else the training crop)
    override it. ``workers`` -1: one loader worker per usable core (:func:`vidact.data.loader.plan_loading`),
    no more than there are batches.
    """
    from vidact.data.annotations import load_dataset_dir
    from vidact.data.dataset import VideoClipDataset
    from vidact.data.loader import make_loader, plan_loading
    from vidact.evaluate.metrics import plot_confusion
    from vidact.io.progress import make_progress
    from vidact.runtime.build import model_from_checkpoint
    from vidact.runtime.checkpoint import check_classes, load_checkpoint
    from vidact.runtime.device import select_device
    from vidact.weights.test_protocol import checkpoint_protocol

    if method not in AGGREGATIONS:
        raise UsageError(f"aggregation {method!r} is not one of {', '.join(AGGREGATIONS)}")
    checkpoint = Path(checkpoint)
    out_dir = _writable_folder(Path(out_dir) if out_dir else checkpoint.parent)
    if save_scores:
        _writable_folder(Path(save_scores).parent)
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt["config"]
    source = str(data) if data is not None and str(data) else cfg.get("data") or ""
    if not source:
        raise UsageError("no data: pass --data LISTS/ (the checkpoint names none)")
    data = Path(source)
    splits = load_dataset_dir(data)
    check_classes(ckpt, splits.classes, checkpoint, data)
    dev = select_device(device)
    model, inp = model_from_checkpoint(ckpt, checkpoint, dev)
    chosen, origin = checkpoint_protocol(
        ckpt, inp.size, protocol, clips=clips, crops=crops, crop_size=crop_size, short_side=short_side
    )
    if chosen.publisher and inp.modality != "rgb":
        raise UsageError(f"the {chosen.name} protocol tests RGB models; {checkpoint} is a {inp.modality} model")
    clips, crops = chosen.clips, chosen.crops
    flow_root = cfg.get("flow_root") or None
    if not splits.split(split):
        raise UsageError(f"{data / (split + '.csv')}: no samples listed")
    try:
        dataset = VideoClipDataset(
            splits.split(split),
            modality=inp.modality,
            num_frames=inp.frames,
            stride=inp.stride,
            crop_size=chosen.crop_size or inp.size,
            train=False,
            num_clips=clips,
            num_crops=crops,
            flow_root=flow_root,
            data_root=data if flow_root else None,
            protocol=chosen,
        )
    except ValueError as exc:
        raise UsageError(f"{data}: {first_line(exc)}") from None
    try:
        loading = plan_loading(workers=workers)
    except ValueError as exc:
        raise UsageError(f"--workers: {exc}") from None
    batches = -(-len(dataset) // max(1, batch_size))
    loader = make_loader(
        dataset,
        batch_size=batch_size,
        workers=min(loading.workers, batches),
        decoder_threads=loading.decoder_threads,
        device=dev,
    )
    amp = cfg.get("amp", "none") if dev.type == "cuda" else "none"
    with make_progress(disable=None if progress is not False else True) as bar:
        task = bar.add_task(f"eval {split} {clips}x{crops}", total=len(dataset), status="")
        try:
            scores = drop_replaced_views(
                collect_view_scores(model, loader, dev, amp=amp, on_batch=lambda n: bar.advance(task, n))
            )
        finally:
            loader.close()
    scores.classes = list(splits.classes)
    scores.meta = {
        "arch": ckpt["arch"],
        "checkpoint": str(checkpoint),
        "data": str(data),
        "split": split,
        "clips": clips,
        "crops": crops,
        "modality": inp.modality,
        "protocol": chosen.to_dict(),
    }
    report = evaluate_scores(scores, splits.classes, method)
    report.update(
        {
            "checkpoint": str(checkpoint),
            "arch": ckpt["arch"],
            "data": str(data),
            "split": split,
            "clips": clips,
            "crops": crops,
            "protocol": {**chosen.to_dict(), "crop_size": chosen.crop_size or inp.size, "from": origin},
            "skipped": dataset.skipped,
            "unreadable_videos": len(dataset.samples) - report["videos"],
        }
    )
    report["confusion_png"] = str(
        plot_confusion(
            np.array(report["confusion"]),
            splits.classes,
            out_dir / "confusion.png",
            title=f"{ckpt['arch']} {split} {clips}x{crops}: video top-1 {100 * report['video_top1']:.1f}%",
        )
    )
    if save_scores:
        report["scores"] = str(scores.save(save_scores))
    return report
