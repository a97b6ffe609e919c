"""X3D-XS on the synthetic set: vidact's model against PyTorchVideo's under one hand-written loop.

Both models see the same batches (same clips, starts, scale jitter and crops), the same recipe
(SGD momentum 0.9, weight decay 1e-4 off biases and norms, cosine LR, dropout) and the same seed;
only the module differs (PyTorchVideo's ``create_x3d`` with its own initialisation, width and
depth set to the same X3D-XS point). Clips are rendered in memory by the synthetic set's own
renderer (the same clips as ``vidact data synth``, without the H.264 round trip), optionally
keeping every ``--frame-step``-th frame as the demo's 12.5 fps frame extraction does. The loop
trains on clips held in memory, so the timings measure training, not decoding.

Prints, per implementation and epoch, the training loss, training top-1 and val top-1, then a
table of final/best val top-1 and training seconds with the ratio to the first implementation
(parity: the two curves should agree within noise). The same loop is the X3D recipe search
(``--impls vidact`` with other ``--frames/--stride/--size/--per-class/--epochs``).

    .venv/bin/python benchmarks/x3d_parity.py                          # the demo's X3D recipe, both models
    .venv/bin/python benchmarks/x3d_parity.py --impls vidact --epochs 30   # the README's X3D figure (99%)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_clips import MEAN, STD, render_split  # noqa: E402


def make_batch(
    videos: torch.Tensor, index: torch.Tensor, frames: int, stride: int, size: int, rng: np.random.Generator | None
) -> torch.Tensor:
    """(B, 3, T, S, S) float clips: random start, short-side jitter 8/7..10/7 x S and random crop when
    ``rng`` is given (training, as vidact's dataset), else the centre clip, short side 8/7 x S, centre crop."""
    clips = []
    n = videos.shape[1]
    stride = min(stride, max(1, (n - 1) // max(frames - 1, 1)))
    span = (frames - 1) * stride + 1
    for i in index.tolist():
        start = int(rng.integers(0, n - span + 1)) if rng is not None else (n - span) // 2
        clip = videos[i, start : start + span : stride].float()
        side = (
            int(rng.integers(round(size * 8 / 7), round(size * 10 / 7) + 1)) if rng is not None else round(size * 8 / 7)
        )
        clip = F.interpolate(clip, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        room = side - size
        top, left = (int(rng.integers(0, room + 1)) for _ in range(2)) if rng is not None else (room // 2,) * 2
        clips.append(clip[..., top : top + size, left : left + size])
    x = (torch.stack(clips) / 255.0 - MEAN) / STD
    return x.permute(0, 2, 1, 3, 4).contiguous()


def make_model(impl: str, num_classes: int, frames: int, size: int, width_mult: float, dropout: float) -> nn.Module:
    if impl == "vidact":
        from vidact.models import create_model

        return create_model("x3d-xs", num_classes=num_classes, width_mult=width_mult, dropout=dropout)
    if impl == "pytorchvideo":
        from pytorchvideo.models.x3d import create_x3d

        return create_x3d(
            input_clip_length=frames,
            input_crop_size=size,
            model_num_class=num_classes,
            dropout_rate=dropout,
            width_factor=2.0 * width_mult,
            depth_factor=2.2,
            head_activation=None,
        )
    raise SystemExit(f"unknown implementation {impl!r} (vidact, pytorchvideo)")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(model: nn.Module, data, args) -> float:
    model.eval()
    videos, labels = data
    correct = 0
    for lo in range(0, len(labels), 32):
        idx = torch.arange(lo, min(lo + 32, len(labels)))
        logits = model(make_batch(videos, idx, args.frames, args.stride, args.size, None))
        correct += int((logits.argmax(1) == labels[idx]).sum())
    return correct / len(labels)


def train(impl: str, splits, num_classes: int, args, log=print) -> dict:
    """One run of the shared loop; returns the per-epoch curve and the training seconds."""
    torch.manual_seed(args.seed)
    model = make_model(impl, num_classes, args.frames, args.size, args.width_mult, args.dropout)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.SGD(param_groups(model, args.weight_decay), lr=args.lr, momentum=0.9)
    videos, labels = splits["train"]
    iters = len(labels) // args.batch_size  # the last partial batch is dropped
    total = iters * args.epochs
    warmup = int(round(args.warmup_epochs * iters))
    curve, seconds, step = [], 0.0, 0
    for epoch in range(args.epochs):
        rng = np.random.default_rng([args.seed, epoch])  # same batches and crops for every implementation
        order = torch.from_numpy(rng.permutation(len(labels)))
        model.train()
        started = time.perf_counter()
        loss_sum, hits = 0.0, 0
        for it in range(iters):
            idx = order[it * args.batch_size : (it + 1) * args.batch_size]
            x, y = make_batch(videos, idx, args.frames, args.stride, args.size, rng), labels[idx]
            lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            if step < warmup:
                lr *= 0.1 + 0.9 * step / warmup
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            hits += int((logits.argmax(1) == y).sum())
            step += 1
        seconds += time.perf_counter() - started
        val = evaluate(model, splits["val"], args)
        curve.append(
            {
                "epoch": epoch + 1,
                "seconds": seconds,
                "train_loss": loss_sum / iters,
                "train_top1": hits / (iters * args.batch_size),
                "val_top1": val,
            }
        )
        log(
            f"  {impl:12s} epoch {epoch + 1:3d}  {seconds:7.1f} s  loss {loss_sum / iters:.3f}  "
            f"train {100 * hits / (iters * args.batch_size):5.1f}%  val {100 * val:5.1f}%"
        )
    return {
        "impl": impl,
        "params": params,
        "iterations": total,
        "train_s": seconds,
        "curve": curve,
        "final_top1": curve[-1]["val_top1"],
        "best_top1": max(c["val_top1"] for c in curve),
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impls", default="vidact,pytorchvideo")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--per-class", type=int, default=48)
    p.add_argument("--clip-frames", type=int, default=30, help="frames rendered per clip (the demo's 30)")
    p.add_argument("--clip-size", type=int, default=64, help="rendered frame size (the demo's 64)")
    p.add_argument("--style", default="dots", help="synthetic style: dots (the demo's) or natural")
    p.add_argument("--frame-step", type=int, default=2, help="keep every k-th frame (the demo extracts at 12.5 fps)")
    p.add_argument("--frames", type=int, default=8, help="clip frames T")
    p.add_argument("--stride", type=int, default=2, help="frame stride (after --frame-step)")
    p.add_argument("--size", type=int, default=48, help="crop size")
    p.add_argument("--width-mult", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=24, help="24: the demo's X3D run; 30 reach 99%% (README)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.classes, args.per_class, args.clip_frames, args.clip_size, args.size, args.frames = 3, 4, 16, 32, 32, 4
        args.epochs = 1
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    splits = render_split(
        args.classes,
        args.per_class,
        args.clip_frames,
        args.clip_size,
        frame_step=args.frame_step,
        seed=args.seed,
        style=args.style,
    )
    print(
        f"synthetic set: {len(splits['train'][1])} train / {len(splits['val'][1])} val clips, {args.classes} classes, "
        f"{splits['train'][0].shape[1]} frames of {args.clip_size}px "
        f"(rendered in {time.perf_counter() - started:.0f} s); "
        f"x3d-xs width {args.width_mult} at {args.frames}x{args.size}, stride {args.stride}; batch {args.batch_size}, "
        f"SGD lr {args.lr}, cosine, {args.epochs} epochs; torch threads {args.threads}",
        flush=True,
    )
    results = [train(impl, splits, args.classes, args) for impl in args.impls.split(",")]
    ref = results[0]
    print(
        f"\n| implementation | params (M) | iterations | train s | ratio to {ref['impl']} | final val top-1 "
        f"| best val top-1 | final train loss |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['impl']} | {r['params'] / 1e6:.2f} | {r['iterations']} | {r['train_s']:.1f} | "
            f"{r['train_s'] / ref['train_s']:.2f} | {100 * r['final_top1']:.1f}% | {100 * r['best_top1']:.1f}% | "
            f"{r['curve'][-1]['train_loss']:.3f} |"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1)
        )
    return results


if __name__ == "__main__":
    main()
