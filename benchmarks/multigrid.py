"""Multigrid vs the plain schedule on the synthetic set: wall-clock, top-1, time to the plain top-1.

For each architecture (tiny widths, small clips) one run per schedule — plain (``none``),
``long``, ``short`` and ``long+short`` — through the real training engine (``fit``: multigrid
sampler, sub-batch BN, LR schedule), all in this one process so the timings compare. The
clips are decoded once into memory, so the timings measure training, not H.264 decoding
(the loader is the same for every schedule). Wall-clock is training time; the validation
after every epoch (full shape, same for every schedule) is left out of it. Multigrid runs
recompute their BatchNorm statistics at the full shape before each validation ("precise BN",
20 batches); a point of their curve counts one such pass on top of the training time so far.

Prints a Markdown table with each run's training seconds, final and best val top-1, the
seconds it needed to first reach the plain run's final top-1 and that time as a fraction of
the plain run's; writes ``multigrid.png`` (top-1 vs wall-clock) and ``multigrid.json``.

    .venv/bin/python benchmarks/multigrid.py [--archs x3d-xs,c3d] [--epochs 10] [--per-class 48] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

MODES = ("none", "long", "short", "long+short")
# arch -> (width_mult, frames, size, stride, optimizer, lr): the demo's recipes, small enough for 2 CPU cores
ARCHS = {
    "c3d-bn": (0.125, 8, 48, 1, "adamw", 1e-3),
    "x3d-xs": (0.5, 4, 48, 2, "sgd", 0.05),
    "c3d": (0.125, 8, 48, 1, "adamw", 1e-3),  # BN-free: does not train from scratch at this scale
}
MEAN, STD = 0.45, 0.225


class MemoryClips(Dataset):
    """Decoded videos held in memory; items at any ``ClipSpec`` (``index`` or ``(index, ClipSpec)`` keys).

    Training items take a random start, the spec's stride, a crop of the spec's size from the
    frame scaled so the crop keeps the full crop's field of view, and a random flip.
    """

    def __init__(self, videos: list[torch.Tensor], labels: list[int], default, *, train: bool, seed: int = 0,
                 hflip: bool = True):
        self.videos, self.labels, self.default, self.train, self.seed = videos, labels, default, train, seed
        self.hflip = hflip  # False for the synthetic set: mirroring swaps its left/right classes
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, key):
        index, spec = key if isinstance(key, tuple) else (key, self.default)
        video = self.videos[index]  # (T0, 3, H, W) uint8
        rng = np.random.default_rng([self.seed, self.epoch, index])
        t, stride = spec.num_frames, spec.stride
        stride = min(stride, max(1, (len(video) - 1) // max(t - 1, 1)))
        span = (t - 1) * stride + 1
        start = int(rng.integers(0, len(video) - span + 1)) if self.train else (len(video) - span) // 2
        clip = video[start:start + span:stride].float()
        side = max(spec.crop_size, int(round(video.shape[-1] * spec.crop_size / self.default.crop_size)))
        clip = F.interpolate(clip, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        room = side - spec.crop_size
        top, left = (int(rng.integers(0, room + 1)) for _ in range(2)) if self.train else (room // 2, room // 2)
        clip = clip[..., top:top + spec.crop_size, left:left + spec.crop_size]
        if self.train and self.hflip and rng.random() < 0.5:
            clip = clip.flip(-1)
        clip = (clip / 255.0 - MEAN) / STD
        return {"video": clip.permute(1, 0, 2, 3).contiguous(), "label": self.labels[index], "index": index,
                "view": 0}


def load_split(samples) -> tuple[list[torch.Tensor], list[int]]:
    from vidact.io.video import decode_frames, probe

    videos, labels = [], []
    for s in samples:
        n = probe(s.path).num_frames
        frames = decode_frames(s.path, np.arange(n))  # (T, H, W, 3) uint8
        videos.append(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous())
        labels.append(s.label)
    return videos, labels


def run(arch: str, mode: str, splits, root: Path, args) -> dict:
    from vidact.data.dataset import ClipSpec
    from vidact.train.config import load_config
    from vidact.train.engine import TrainData, fit

    width, frames, size, stride, optimizer, lr = ARCHS[arch]
    default = ClipSpec(frames, size, stride)
    train_set = MemoryClips(*splits["train"], default, train=True, seed=args.seed, hflip=splits["hflip"])
    val_set = MemoryClips(*splits["val"], default, train=False, seed=args.seed)
    cfg = load_config(arch=arch, data=str(root), out=str(root / "runs" / f"{arch}-{mode.replace('+', '-')}"),
                      frames=frames, size=size, stride=stride, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr or lr, seed=args.seed,
                      overrides=[f"width_mult={width}", f"threads={args.threads}", "warmup_epochs=1",
                                 "dropout=0.3", f"multigrid={mode}", "val_every=1", "log_every=1000",
                                 f"clip_grad={args.clip_grad}", f"optimizer={args.optimizer or optimizer}", *args.set])
    start = time.perf_counter()
    summary = fit(cfg, TrainData(splits["classes"], train_set, val_set), progress=False)
    total = time.perf_counter() - start
    clock, bn_total, curve = 0.0, 0.0, []
    for rec in summary["history"]:
        clock += rec["seconds"]
        bn = rec.get("precise_bn_seconds", 0.0)
        bn_total += bn
        # a model taken at this epoch costs the training so far plus one precise-BN pass
        curve.append((clock + bn, rec.get("val_top1", 0.0)))
    return {"arch": arch, "mode": mode, "epochs": summary["epochs"], "iterations": summary["iterations"],
            "train_s": curve[-1][0] if curve else 0.0,
            "precise_bn_s": bn_total, "total_s": total, "final_top1": curve[-1][1], "best_top1": max(c[1] for c in curve),
            "curve": curve}


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    for seconds, top1 in curve:
        if top1 >= target - 1e-9:
            return seconds
    return None


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = list(dict.fromkeys(r["arch"] for r in results))
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 4), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        for r in (r for r in results if r["arch"] == arch):
            xs, ys = zip(*r["curve"])
            ax.plot(xs, [100 * y for y in ys], marker="o", ms=3, label=r["mode"])
        ax.set_title(f"{arch}: val top-1 vs training wall-clock (shared 2-core CPU)")
        ax.set_xlabel("training seconds")
        ax.set_ylabel("val top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="c3d-bn,x3d-xs", help=f"any of {','.join(ARCHS)}")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--epochs", type=int, default=16, help="epochs of the plain run (multigrid: x1.5)")
    parser.add_argument("--per-class", type=int, default=48)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None, help="default: the architecture's recipe")
    parser.add_argument("--clip-grad", type=float, default=5.0, help="gradient-norm clip (the 8x LR phases)")
    parser.add_argument("--optimizer", default=None, choices=("sgd", "adamw"), help="default: the recipe's")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra training setting")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the shared machine is oversubscribed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="an existing synthetic set (default: generate one)")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for multigrid.png and multigrid.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from vidact.data.annotations import load_dataset_dir
    from vidact.data.synthetic import SynthConfig, generate

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = args.data
        if data is None:
            data = root / "synth"
            generate(data, SynthConfig(classes=args.classes, per_class=args.per_class, seed=args.seed))
        ds = load_dataset_dir(data)
        splits = {"classes": ds.classes, "hflip": ds.horizontal_flip, "train": load_split(ds.split("train")), "val": load_split(ds.split("val"))}
        print(f"synthetic set: {len(splits['train'][0])} train / {len(splits['val'][0])} val clips, "
              f"{len(ds.classes)} classes; plain run {args.epochs} epochs, batch {args.batch_size}, lr {args.lr or 'recipe'}; "
              f"torch threads {args.threads}", flush=True)
        results = []
        for arch in args.archs.split(","):
            for mode in args.modes.split(","):
                r = run(arch, mode, splits, root, args)
                results.append(r)
                print(f"  {arch:8s} {mode:10s} {r['epochs']:3d} epochs {r['iterations']:5d} it "
                      f"{r['train_s']:7.1f} s  final top-1 {100 * r['final_top1']:5.1f}%", flush=True)

    print("\n| arch | schedule | epochs | iterations | train s | ratio to plain | final top-1 | best top-1 "
          "| s to plain's final top-1 | fraction of plain time |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        plain = next(p for p in results if p["arch"] == r["arch"] and p["mode"] == "none")
        reach = time_to_reach(r["curve"], plain["final_top1"])
        r["time_to_plain_top1"] = reach
        frac = f"{reach / plain['train_s']:.2f}" if reach is not None else "not reached"
        print(f"| {r['arch']} | {r['mode']} | {r['epochs']} | {r['iterations']} | {r['train_s']:.1f} | "
              f"{r['train_s'] / plain['train_s']:.2f} | {100 * r['final_top1']:.1f}% | {100 * r['best_top1']:.1f}% | "
              f"{reach:.1f} | {frac} |" if reach is not None else
              f"| {r['arch']} | {r['mode']} | {r['epochs']} | {r['iterations']} | {r['train_s']:.1f} | "
              f"{r['train_s'] / plain['train_s']:.2f} | {100 * r['final_top1']:.1f}% | {100 * r['best_top1']:.1f}% | "
              f"- | {frac} |")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "multigrid.png")
    (args.out / "multigrid.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out / 'multigrid.png'} and {args.out / 'multigrid.json'}")


if __name__ == "__main__":
    main()
