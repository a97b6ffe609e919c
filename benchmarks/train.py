"""Training throughput per architecture, and top-1 on the synthetic set after a fixed budget.

Part 1 (speed): forward + backward + SGD step on random clips of each architecture at a tiny
width, clips/s and the ratio to ``c3d`` measured in the same run.
Part 2 (accuracy): ``vidact train`` on the ``vidact data synth`` defaults (8 classes x 16 clips,
24 frames, 64x64) for a fixed number of epochs, then video top-1 on the val split with
3 clips x 1 crop (softmax-mean). Motion-only classes: 3D models learn them, a single frame
cannot (chance is 12.5%).

    .venv/bin/python benchmarks/train.py [--threads 1] [--epochs 15] [--skip-speed] [--skip-accuracy]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

# arch -> (width_mult, frames, size, stride) for both parts: tiny enough for 2 CPU cores.
ARCHS = {
    "c3d": (0.125, 16, 56, 1),
    "single-frame": (0.25, 1, 56, 1),
    "early-fusion": (0.25, 10, 56, 1),
    "slow-fusion": (0.25, 10, 56, 1),
    "x3d-xs": (0.5, 4, 56, 4),
    "i3d": (0.25, 16, 56, 1),
    "slowfast-r50-8x8": (0.25, 16, 56, 1),
}
REFERENCE = "c3d"


def train_speed(arch: str, batch: int, iters: int) -> tuple[str, float, int]:
    """(input shape, clips/s, parameters) of SGD training steps on random clips."""
    from vidact.models import create_model, get_entry

    width, frames, size, _ = ARCHS[arch]
    model = create_model(arch, num_classes=8, width_mult=width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = get_entry(arch).example_input(batch, frames, size)
    y = torch.randint(0, 8, (batch,))
    step = lambda: (opt.zero_grad(), torch.nn.functional.cross_entropy(model(x), y).backward(), opt.step())  # noqa: E731
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(iters):
        step()
    seconds = time.perf_counter() - start
    shape = "x".join(str(s) for s in (x.shape[1:] if isinstance(x, torch.Tensor) else x[0].shape[1:]))
    return shape, batch * iters / seconds, sum(p.numel() for p in model.parameters())


def accuracy_run(arch: str, data: Path, out: Path, epochs: int, threads: int, workers: int) -> dict:
    from vidact.evaluate.multiview import evaluate_checkpoint
    from vidact.train.config import load_config
    from vidact.train.engine import train

    width, frames, size, stride = ARCHS[arch]
    cfg = load_config(
        arch=arch,
        data=str(data),
        out=str(out / arch),
        frames=frames,
        size=size,
        stride=stride,
        epochs=epochs,
        batch_size=8,
        lr=0.05,
        workers=workers,
        overrides=[f"width_mult={width}", f"threads={threads}", "warmup_epochs=1", "dropout=0.3"],
    )
    start = time.perf_counter()
    summary = train(cfg, progress=False)
    seconds = time.perf_counter() - start
    report = evaluate_checkpoint(out / arch / "last.pt", data, clips=3, crops=1, workers=workers, progress=False)
    return {
        "arch": arch,
        "input": f"3x{frames}x{size}x{size}/{stride}",
        "epochs": epochs,
        "seconds": seconds,
        "clips_per_s": summary["clips_per_s"],
        "best_val_top1": summary["best_val_top1"],
        "video_top1": report["video_top1"],
        "clip_top1": report["clip_top1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(ARCHS), help="comma-separated architectures")
    parser.add_argument("--accuracy-archs", default="c3d,single-frame", help="architectures for part 2")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared machine)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--data", type=Path, help="synthetic data folder (generated when missing)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), CPU" + (" + CUDA" if torch.cuda.is_available() else "")
    )

    if not args.skip_speed:
        archs = [a for a in args.archs.split(",") if a]
        if REFERENCE not in archs:
            archs.insert(0, REFERENCE)
        rows = {}
        for arch in archs:
            try:
                rows[arch] = train_speed(arch, args.batch, args.iters)
            except Exception as exc:  # an architecture that cannot take the tiny input is reported, not fatal
                rows[arch] = (f"n/a ({type(exc).__name__}: {str(exc).splitlines()[0][:60]})", 0.0, 0)
        ref = rows[REFERENCE][1]
        print(f"\n## Training throughput (batch {args.batch}, SGD, fp32)\n")
        print(f"| arch | width | input (C x T x H x W) | params | clips/s | vs {REFERENCE} |")
        print("|---|---|---|---|---|---|")
        for arch, (shape, speed, params) in rows.items():
            ratio = f"{speed / ref:.2f}x" if speed and ref else "-"
            print(f"| {arch} | {ARCHS[arch][0]} | {shape} | {params / 1e6:.2f} M | {speed:.1f} | {ratio} |")

    if not args.skip_accuracy:
        from vidact.data.synthetic import SynthConfig, generate

        with tempfile.TemporaryDirectory() as tmp:
            data = args.data or Path(tmp) / "synth"
            if not (data / "synth.json").exists():
                generate(data, SynthConfig())
            results = [
                accuracy_run(a, data, Path(tmp) / "runs", args.epochs, args.threads, args.workers)
                for a in args.accuracy_archs.split(",")
                if a
            ]
        print(
            f"\n## Top-1 on `vidact data synth` defaults after {args.epochs} epochs "
            f"(val: 32 videos, 3 clips x 1 crop, softmax-mean; chance 12.5%)\n"
        )
        print("| arch | input | epochs | train wall s | clips/s | video top-1 | clip top-1 |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            print(
                f"| {r['arch']} | {r['input']} | {r['epochs']} | {r['seconds']:.0f} | {r['clips_per_s']:.1f} | "
                f"{100 * r['video_top1']:.1f}% | {100 * r['clip_top1']:.1f}% |"
            )


if __name__ == "__main__":
    main()
