"""Multigrid training speed at full scale: step time per shape, and the schedule's wall-clock.

No data is read: for each architecture, every distinct iteration shape of the ``long+short``
(and ``long``, ``short``) schedule is timed on random clips as full training steps (forward,
cross-entropy, backward, SGD step; sub-batch BN as in a multigrid run), and each schedule's
training time is predicted as the sum over its planned iterations of the measured step time
of that iteration's shape, against the plain schedule timed the same way in the same run. It
isolates what multigrid changes on the accelerator (iterations and their shapes) from I/O.

    python benchmarks/multigrid_speed.py --device cuda                      # X3D-M and SlowFast R50 8x8
    python benchmarks/multigrid_speed.py --device cpu --archs x3d-xs --size 64 --batch 2 --steps 1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import torch
import torch.nn.functional as F

from vidact.models import create_model, get_entry
from vidact.train.lr import LRSchedule
from vidact.train.multigrid import build_schedule
from vidact.train.samplers import MultigridBatchSampler
from vidact.train.subbatch_bn import convert_sub_batch_norm

MODES = ("none", "long", "short", "long+short")


def planned_shapes(mode: str, frames: int, size: int, batch: int, epochs: int, samples: int) -> Counter:
    """(T, S, clips per step) -> iterations over the whole run of ``mode``."""
    schedule = build_schedule(mode, LRSchedule(base_lr=0.1, epochs=epochs), frames=frames, size=size, batch_size=batch)
    sampler = MultigridBatchSampler(samples, schedule, rank=0, world_size=1, shuffle=False, drop_last=True)
    counts: Counter = Counter()
    for epoch in range(schedule.total_epochs):
        for plan in sampler.plan(epoch):
            counts[(plan.frames, plan.crop_size, plan.per_rank)] += 1
    return counts


def step_time(
    model, opt, arch: str, shape: tuple[int, int, int], device, steps: int, bf16: bool, channels_last: bool
) -> float:
    """Seconds per training step at (T, S, batch), after two warm-up steps."""
    t, s, b = shape
    x = get_entry(arch).example_input(b, t, s, device)
    if channels_last and isinstance(x, torch.Tensor):
        x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 400, (b,), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--archs", default="x3d-m,slowfast-r50-8x8")
    ap.add_argument("--batch", type=int, default=8, help="base clips per step (PySlowFast: 8 per GPU)")
    ap.add_argument("--size", type=int, help="full crop (default: the architecture's)")
    ap.add_argument("--epochs", type=int, default=100, help="base epochs (multigrid: x1.5)")
    ap.add_argument("--samples", type=int, default=2400, help="clips per epoch (iteration counts scale with it)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--contiguous", action="store_true", help="contiguous clips (default on CUDA: channels-last-3d)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    bf16 = not args.fp32
    channels_last = device.type == "cuda" and not args.contiguous
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"device: {name}, torch {torch.__version__}, {'bf16' if bf16 else 'fp32'}; base batch {args.batch}, "
        f"{args.epochs} base epochs of {args.samples} clips, {'channels-last' if channels_last else 'contiguous'}",
        file=sys.stderr,
    )
    rows = []
    for arch in args.archs.split(","):
        entry = get_entry(arch)
        frames, size = entry.input.frames, args.size or entry.input.size
        model = create_model(arch, num_classes=400)
        convert_sub_batch_norm(model)
        model = model.to(device).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        plans = {mode: planned_shapes(mode, frames, size, args.batch, args.epochs, args.samples) for mode in MODES}
        shapes = sorted(set().union(*plans.values()), key=lambda k: (k[0] * k[1] ** 2, k[2]))
        times = {}
        for shape in shapes:
            times[shape] = step_time(model, opt, arch, shape, device, args.steps, bf16, channels_last)
            print(
                f"  {arch} T={shape[0]:3d} S={shape[1]:3d} B={shape[2]:4d}: {1000 * times[shape]:8.1f} ms/step, "
                f"{shape[2] / times[shape]:8.1f} clips/s",
                file=sys.stderr,
                flush=True,
            )
        plain = sum(n * times[k] for k, n in plans["none"].items())
        for mode in MODES:
            total = sum(n * times[k] for k, n in plans[mode].items())
            rows.append(
                (
                    arch,
                    f"{frames}x{size}",
                    mode,
                    sum(plans[mode].values()),
                    total / 3600,
                    plain / total if total else float("nan"),
                )
            )
        del model, opt
    print(f"\npredicted training time (no I/O), {args.epochs} base epochs of {args.samples} clips, {name}")
    print("| model | full shape | schedule | iterations | hours | speed-up vs plain |")
    print("|---|---|---|---:|---:|---:|")
    for arch, shape, mode, iters, hours, speedup in rows:
        print(f"| {arch} | {shape} | {mode} | {iters} | {hours:.3f} | {speedup:.2f}x |")


if __name__ == "__main__":
    main()
