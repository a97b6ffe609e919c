"""What a clip costs to load and to compute at each multigrid shape of a real ``vidact train`` run.

For the ``long+short`` schedule of c3d-bn (width 1/8) at 16x48, stride 2, batch 8 on a synthetic
set of video files (``vidact data synth``, 64x64, 40 frames), every distinct iteration shape
(frames T, crop S, clips per step) is measured twice, in this process:

- load: ``VideoClipDataset[(index, ClipSpec(T, S, stride))]`` per clip, as a loader worker reads it
  (one decoder thread; strides drawn from the shape's frame-rate jitter range);
- compute: one training step (forward, cross-entropy, backward, AdamW; sub-batch BatchNorm as in the
  multigrid run) per clip, on the torch threads a training process gets here.

The table gives both per clip, their ratio, and each shape's share of the run's iterations and clips;
the last lines say what the whole schedule costs to load and to compute, against the plain run's
(so whether loading can keep up with the coarse shapes, and with how many workers).

    python benchmarks/multigrid_loading.py [--data DIR] [--clips 48] [--steps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidact.data.annotations import load_dataset_dir
from vidact.data.dataset import ClipSpec, VideoClipDataset
from vidact.data.synthetic import SynthConfig, generate
from vidact.io import video
from vidact.models import create_model
from vidact.train.lr import LRSchedule
from vidact.train.multigrid import build_schedule
from vidact.train.samplers import MultigridBatchSampler
from vidact.train.subbatch_bn import convert_sub_batch_norm

FRAMES, SIZE, STRIDE, BATCH, EPOCHS = 16, 48, 2, 8, 6


def planned(mode: str, samples: int) -> Counter:
    """(T, S, clips per step, stride range) -> iterations over the whole run of ``mode``."""
    schedule = build_schedule(
        mode, LRSchedule(base_lr=1e-3, epochs=EPOCHS), frames=FRAMES, size=SIZE, batch_size=BATCH, stride=STRIDE
    )
    sampler = MultigridBatchSampler(samples, schedule, rank=0, world_size=1, shuffle=False)
    counts: Counter = Counter()
    for epoch in range(schedule.total_epochs):
        for plan in sampler.plan(epoch):
            counts[(plan.frames, plan.crop_size, plan.per_rank, plan.stride_range)] += 1
    return counts


def load_ms(ds: VideoClipDataset, frames: int, crop: int, strides: tuple[int, int], clips: int) -> float:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(clips):
        ds[(i % len(ds), ClipSpec(frames, crop, int(rng.integers(strides[0], strides[1] + 1))))]
    return 1000 * (time.perf_counter() - start) / clips


def compute_ms(model, opt, frames: int, crop: int, batch: int, steps: int) -> float:
    x = torch.randn(batch, 3, frames, crop, crop)
    y = torch.randint(0, 8, (batch,))

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - start) / (steps * batch)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a vidact data set folder of videos (default: a synthetic one)")
    ap.add_argument("--clips", type=int, default=48, help="clips loaded per shape")
    ap.add_argument("--steps", type=int, default=3, help="training steps timed per shape")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "dots"
            generate(data, SynthConfig(classes=8, per_class=16, frames=40, size=64, seed=7))
        samples = load_dataset_dir(data).split("train")
        ds = VideoClipDataset(samples, num_frames=FRAMES, stride=STRIDE, crop_size=SIZE, hflip=False)
        video.set_decoder_threads(1)  # as in a loader worker on this machine
        model = create_model("c3d-bn", num_classes=8, width_mult=0.125)
        convert_sub_batch_norm(model)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        counts = planned("long+short", len(samples))
        plain = planned("none", len(samples))
        rows = []
        for (t, s, b, strides), iters in sorted(counts.items(), key=lambda kv: (-kv[0][0] * kv[0][1] ** 2, kv[0][2])):
            rows.append(
                {
                    "frames": t,
                    "crop": s,
                    "batch": b,
                    "strides": list(strides),
                    "iterations": iters,
                    "clips": iters * b,
                    "load_ms": load_ms(ds, t, s, strides, args.clips),
                    "compute_ms": compute_ms(model, opt, t, s, b, args.steps),
                }
            )
        (t, s, b, strides), plain_iters = next(iter(plain.items()))
        full = next(r for r in rows if (r["frames"], r["crop"], r["batch"]) == (t, s, b))
    total_clips = sum(r["clips"] for r in rows)
    print(
        f"c3d-bn 1/8, long+short at {FRAMES}x{SIZE} stride {STRIDE}, batch {BATCH}, {EPOCHS} base epochs over "
        f"{len(samples)} clips; torch threads {torch.get_num_threads()}, 1 decoder thread; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print("| T x S | clips/step | strides | iterations | clips | load ms/clip | compute ms/clip | load / compute |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['frames']} x {r['crop']} | {r['batch']} | {r['strides'][0]}-{r['strides'][1]} | {r['iterations']} | "
            f"{r['clips']} ({r['clips'] / total_clips:.0%}) | {r['load_ms']:.2f} | {r['compute_ms']:.2f} | "
            f"{r['load_ms'] / r['compute_ms']:.2f} |"
        )
    load_s = sum(r["clips"] * r["load_ms"] for r in rows) / 1000
    compute_s = sum(r["clips"] * r["compute_ms"] for r in rows) / 1000
    plain_clips = plain_iters * b
    plain_load, plain_compute = plain_clips * full["load_ms"] / 1000, plain_clips * full["compute_ms"] / 1000
    print(
        f"whole run, one process: long+short loads {load_s:.0f} s and computes {compute_s:.0f} s "
        f"({total_clips} clips); plain loads {plain_load:.0f} s and computes {plain_compute:.0f} s "
        f"({plain_clips} clips)"
    )
    print(
        f"compute ratio long+short / plain {compute_s / plain_compute:.2f}; load ratio {load_s / plain_load:.2f}; "
        f"loading / computing: long+short {load_s / compute_s:.2f}, plain {plain_load / plain_compute:.2f}"
    )
    result = {
        "rows": rows,
        "long_short": {"load_s": load_s, "compute_s": compute_s, "clips": total_clips},
        "plain": {"load_s": plain_load, "compute_s": plain_compute, "clips": plain_clips},
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
