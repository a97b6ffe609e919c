"""Multigrid vs the plain schedule in a training-like regime: wall-clock, top-1 over time, premise checks.

Three measurements, all in this one process on clips held in memory (the synthetic set's own
clips rendered without the H.264 round trip, or ``--data``), so timings compare and measure
training, not decoding:

1. Premise gate (``--gate-iters N``, about a minute): N iterations at the coarsest long-cycle
   shape (T/4 frames, crop S/√2, 8x the batch, LR x the rule's multiplier, sub-batch BN, frame
   stride jittered to span the full clip) against N iterations at the full shape and base batch,
   both then evaluated at the full shape (after precise BN). Multigrid pays only if the first
   is close to the second: an iteration costs about the same at both shapes.
2. Schedules, through the real training engine (``fit``: multigrid sampler, sub-batch BN, LR
   schedule, precise BN): plain (``none``), ``long``, ``short``, ``long+short``, then an
   equal-time plain control: the plain schedule (whole cosine) over as many epochs as fit in
   long+short's training time. Prints iterations per phase, top-1 after every epoch against
   training seconds, and a table: train seconds, ratio to plain, final top-1, seconds to reach
   the plain run's final top-1 (within ``--tolerance``) and that time as a fraction of plain's.
   Training seconds leave out validation; a multigrid point counts its precise-BN pass.
   ``multigrid.png`` plots top-1 against training seconds.
3. ``--batch-scaling``: top-1 after a fixed number of clips seen (``--clips``) at batch 8, 16,
   32, 64, 128 (full shape, sub-batch BN over 8 clips, cosine LR with a short warm-up) for SGD
   with the linear LR rule and AdamW with the square-root rule. Large batches that reach
   the batch-8 top-1 with the same clips are what multigrid's 8x-16x batches need.

Default: 8 classes x 448 clips of the ``natural`` synthetic style (2,688 train / 896 val),
c3d-bn width 1/8 at 16x48, stride 2, batch 8, AdamW 1e-3, 6 base epochs: about 20 minutes
on 2 CPU cores. ``--quick`` runs tiny sizes (the test suite's smoke run).

    .venv/bin/python benchmarks/multigrid.py                                 # gate + schedules
    .venv/bin/python benchmarks/multigrid.py --batch-scaling --clips 4096
    .venv/bin/python benchmarks/multigrid.py --style dots --per-class 256    # the old, easy data
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_clips import ClipSource, MemoryClips, load_dataset_clips, render_split  # noqa: E402

MODES = ("none", "long", "short", "long+short")
CONTROL = "plain (equal time)"
BATCHES = (8, 16, 32, 64, 128)


# --------------------------------------------------------------------------- data and models
def multigrid_crops(size: int) -> list[int]:
    """Every crop a multigrid run at full crop ``size`` uses (long-cycle sizes x short-cycle factors)."""
    crops = set()
    for long_crop in (size, int(round(size * 2**-0.5))):
        crops |= {long_crop, int(round(long_crop * 0.5)), int(round(long_crop * 0.5**0.5))}
        crops |= {int(round(size * 0.5)), int(round(size * 0.5**0.5))}
    return sorted(crops)


def load_data(args) -> tuple[list[str], dict]:
    """Class names and ``{"train": (ClipSource, labels), "val": ...}``, every multigrid scale prepared."""
    if args.data is not None:
        classes, splits = load_dataset_clips(args.data)
    else:
        from vidact.data.synthetic import MOTIONS

        classes = list(MOTIONS[: args.classes])
        splits = render_split(
            args.classes, args.per_class, args.clip_frames, args.clip_size, seed=args.seed, style=args.style
        )
    data = {k: (ClipSource(videos, args.size), labels) for k, (videos, labels) in splits.items()}
    data["train"][0].prepare(multigrid_crops(args.size))
    return classes, data


def new_model(args, num_classes: int, sub_batch_bn: bool) -> torch.nn.Module:
    from vidact.models import create_model
    from vidact.train.subbatch_bn import convert_sub_batch_norm

    torch.manual_seed(args.seed)
    model = create_model(args.arch, num_classes=num_classes, width_mult=args.width_mult, dropout=args.dropout)
    if sub_batch_bn:
        convert_sub_batch_norm(model)
    return model


@torch.no_grad()
def evaluate(model, data, args) -> float:
    source, labels = data
    model.eval()
    hits = 0
    for lo in range(0, len(labels), 32):
        idx = range(lo, min(lo + 32, len(labels)))
        x = source.batch(idx, args.frames, args.stride, args.size, None)
        hits += int((model(x).argmax(1) == labels[lo : lo + len(idx)]).sum())
    return hits / len(labels)


def precise_bn(model, data, args, batches: int = 20) -> None:
    from vidact.train.precise_bn import update_bn_stats

    source, labels = data
    rng = np.random.default_rng([args.seed, 0xB1])
    order = np.resize(rng.permutation(len(labels)), batches * 8)  # small sets: wrap around
    clips = (
        {"video": source.batch(order[i * 8 : (i + 1) * 8], args.frames, args.stride, args.size, rng)}
        for i in range(batches)
    )
    update_bn_stats(model, clips, batches, torch.device("cpu"))


def optimizer_for(name: str, model, lr: float, weight_decay: float = 1e-4):
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=lr)


def train_loop(
    model,
    data,
    args,
    *,
    optimizer: str,
    lr: float,
    batch: int,
    iters: int,
    frames: int,
    crop: int,
    strides: tuple[int, int],
    seed: int,
) -> float:
    """``iters`` SGD/AdamW steps of ``batch`` clips at one shape, cosine LR with 5% warm-up; returns seconds."""
    source, labels = data
    opt = optimizer_for(optimizer, model, lr)
    rng = np.random.default_rng([seed, batch, frames, crop])
    order, pos = rng.permutation(len(labels)), 0
    warm = max(1, iters // 20)
    model.train()
    started = time.perf_counter()
    for it in range(iters):
        if pos + batch > len(order):
            order, pos = rng.permutation(len(labels)), 0
        idx = order[pos : pos + batch]
        pos += batch
        x = source.batch(idx, frames, rng.integers(strides[0], strides[1] + 1, size=len(idx)), crop, rng)
        scale = 0.5 * (1 + math.cos(math.pi * it / iters)) * min(1.0, 0.1 + 0.9 * it / warm)
        for g in opt.param_groups:
            g["lr"] = lr * scale
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
        opt.step()
    return time.perf_counter() - started


def lr_rule(optimizer: str) -> str:
    return "linear" if optimizer == "sgd" else "sqrt"


# --------------------------------------------------------------------------- 1. premise gate
def premise_gate(data, num_classes: int, args) -> list[dict]:
    from vidact.train.multigrid import long_cycle_shapes, lr_multiplier

    t, s, mult = long_cycle_shapes(args.frames, args.size)[0]
    lr = args.lr * lr_multiplier(mult, lr_rule(args.optimizer))
    stride_hi = max(args.stride, args.stride * args.frames // t)
    rows = []
    for name, frames, crop, batch, rate, strides in (
        ("coarsest long-cycle shape", t, s, args.batch_size * mult, lr, (args.stride, stride_hi)),
        ("full shape", args.frames, args.size, args.batch_size, args.lr, (args.stride, args.stride)),
    ):
        model = new_model(args, num_classes, sub_batch_bn=True)
        seconds = train_loop(
            model,
            data["train"],
            args,
            optimizer=args.optimizer,
            lr=rate,
            batch=batch,
            iters=args.gate_iters,
            frames=frames,
            crop=crop,
            strides=strides,
            seed=args.seed,
        )
        precise_bn(model, data["train"], args)
        rows.append(
            {
                "shape": name,
                "frames": frames,
                "crop": crop,
                "batch": batch,
                "lr": rate,
                "iterations": args.gate_iters,
                "train_s": seconds,
                "top1": evaluate(model, data["val"], args),
            }
        )
        print(
            f"  gate: {name:26s} {frames}x{crop} batch {batch:4d} lr {rate:.4g}: {args.gate_iters} it "
            f"{seconds:6.1f} s  top-1 at the full shape {100 * rows[-1]['top1']:5.1f}%",
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------- 3. batch scaling
def batch_scaling(data, num_classes: int, args) -> list[dict]:
    rows = []
    for optimizer, base_lr in (("sgd", args.sgd_lr), ("adamw", args.adamw_lr)):
        rule = lr_rule(optimizer)
        for batch in (int(b) for b in args.batches.split(",")):
            mult = batch / args.batch_size
            lr = base_lr * (mult if rule == "linear" else math.sqrt(mult))
            iters = max(1, args.clips // batch)
            model = new_model(args, num_classes, sub_batch_bn=True)
            seconds = train_loop(
                model,
                data["train"],
                args,
                optimizer=optimizer,
                lr=lr,
                batch=batch,
                iters=iters,
                frames=args.frames,
                crop=args.size,
                strides=(args.stride, args.stride),
                seed=args.seed,
            )
            precise_bn(model, data["train"], args)
            top1 = evaluate(model, data["val"], args)
            rows.append(
                {
                    "optimizer": optimizer,
                    "rule": rule,
                    "batch": batch,
                    "lr": lr,
                    "iterations": iters,
                    "clips": iters * batch,
                    "train_s": seconds,
                    "top1": top1,
                }
            )
            print(
                f"  {optimizer:5s} ({rule:6s}) batch {batch:4d} lr {lr:.4g}: {iters:5d} it, {iters * batch} clips, "
                f"{seconds:6.1f} s  top-1 {100 * top1:5.1f}%",
                flush=True,
            )
    return rows


# --------------------------------------------------------------------------- 2. schedules
def phase_iterations(cfg, num_samples: int) -> list[dict]:
    """Iterations the multigrid sampler plans per phase (shape) over the whole run."""
    from vidact.train.samplers import multigrid_training

    mg = multigrid_training(cfg, num_samples)
    counts: dict[tuple, dict] = {}
    for epoch in range(mg.epochs):
        for plan in mg.sampler.plan(epoch):
            key = (plan.phase.start, plan.frames)
            row = counts.setdefault(
                key,
                {
                    "epochs": f"{plan.phase.start:.2f}-{plan.phase.end:.2f}",
                    "frames": plan.frames,
                    "crops": set(),
                    "batches": set(),
                    "iterations": 0,
                },
            )
            row["crops"].add(plan.crop_size)
            row["batches"].add(plan.size)
            row["iterations"] += 1
    return [{**r, "crops": sorted(r["crops"]), "batches": sorted(r["batches"])} for r in counts.values()]


def engine_run(mode: str, epochs: int, data, classes: list[str], root: Path, args, label: str | None = None) -> dict:
    from vidact.data.dataset import ClipSpec
    from vidact.train.config import load_config
    from vidact.train.data import TrainData
    from vidact.train.engine import fit

    default = ClipSpec(args.frames, args.size, args.stride)
    train_set = MemoryClips(*data["train"], default, train=True, seed=args.seed)
    val_set = MemoryClips(*data["val"], default, train=False, seed=args.seed)
    label = label or mode
    cfg = load_config(
        arch=args.arch,
        data=str(root),
        out=str(root / "runs" / label.replace("+", "-").replace(" ", "_")),
        frames=args.frames,
        size=args.size,
        stride=args.stride,
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        overrides=[
            f"width_mult={args.width_mult}",
            f"threads={args.threads}",
            "warmup_epochs=0.5",
            f"dropout={args.dropout}",
            f"multigrid={mode}",
            "val_every=1",
            "log_every=100000",
            f"clip_grad={args.clip_grad}",
            f"optimizer={args.optimizer}",
            *args.set,
        ],
    )
    phases = phase_iterations(cfg, len(train_set)) if mode != "none" else []
    summary = fit(cfg, TrainData(classes, train_set, val_set), progress=False)
    clock, curve = 0.0, []
    for rec in summary["history"]:
        clock += rec["seconds"]
        # a model taken at this epoch costs the training so far plus its precise-BN pass
        curve.append((clock + rec.get("precise_bn_seconds", 0.0), rec.get("val_top1", 0.0)))
    result = {
        "schedule": label,
        "mode": mode,
        "epochs": summary["epochs"],
        "iterations": summary["iterations"],
        "phases": phases,
        "train_s": curve[-1][0],
        "final_top1": curve[-1][1],
        "best_top1": max(c[1] for c in curve),
        "curve": curve,
    }
    print(
        f"  {label:20s} {result['epochs']:3d} epochs {result['iterations']:6d} it {result['train_s']:8.1f} s  "
        f"final top-1 {100 * result['final_top1']:5.1f}%",
        flush=True,
    )
    print("    top-1 over time: " + ", ".join(f"{s:.0f}s {100 * a:.1f}%" for s, a in curve), flush=True)
    for p in phases:
        print(
            f"    phase epochs {p['epochs']}: T={p['frames']} crops {p['crops']} batches {p['batches']}: "
            f"{p['iterations']} it",
            flush=True,
        )
    return result


def time_to_reach(curve, target: float) -> float | None:
    return next((s for s, a in curve if a >= target - 1e-9), None)


def schedules(data, classes, args) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for mode in args.modes.split(","):
            results.append(engine_run(mode, args.epochs, data, classes, root, args))
        plain = next((r for r in results if r["mode"] == "none"), None)
        both = next((r for r in results if r["mode"] == "long+short"), None)
        if plain is not None and both is not None and not args.no_control:
            epochs = max(1, int(round(args.epochs * both["train_s"] / plain["train_s"])))
            results.append(engine_run("none", epochs, data, classes, root, args, label=CONTROL))
    return results


def print_schedule_table(results: list[dict], tolerance: float) -> None:
    plain = next((r for r in results if r["schedule"] == "none"), results[0])
    target = plain["final_top1"] - tolerance
    print(
        f"\n| schedule | epochs | iterations | train s | ratio to plain | final top-1 | best top-1 "
        f"| s to plain's top-1 - {100 * tolerance:.0f} pt | fraction of plain time |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        reach = time_to_reach(r["curve"], target)
        r["time_to_plain_top1"] = reach
        print(
            f"| {r['schedule']} | {r['epochs']} | {r['iterations']} | {r['train_s']:.1f} | "
            f"{r['train_s'] / plain['train_s']:.2f} | {100 * r['final_top1']:.1f}% | {100 * r['best_top1']:.1f}% | "
            + (f"{reach:.1f} | {reach / plain['train_s']:.2f} |" if reach is not None else "- | not reached |")
        )


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        xs, ys = zip(*r["curve"])
        ax.plot(
            xs,
            [100 * y for y in ys],
            marker="o",
            ms=3,
            label=r["schedule"].replace("none", "plain"),
            ls="--" if r["schedule"] == CONTROL else "-",
        )
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=9)
    ax.set_xlabel("training seconds")
    ax.set_ylabel("val top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="c3d-bn")
    p.add_argument("--width-mult", type=float, default=0.125)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--per-class", type=int, default=448, help="clips per class (3/4 train, 1/4 val)")
    p.add_argument("--style", default="natural", help="synthetic style: natural or dots")
    p.add_argument("--clip-frames", type=int, default=36, help="rendered frames per clip (>= (T-1) x stride + 1)")
    p.add_argument("--clip-size", type=int, default=64)
    p.add_argument("--data", type=Path, default=None, help="an existing data set folder instead of rendering")
    p.add_argument("--epochs", type=int, default=6, help="base epochs (multigrid runs x1.5)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--optimizer", default="adamw", choices=("sgd", "adamw"))
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--clip-grad", type=float, default=5.0)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--no-control", action="store_true", help="skip the equal-time plain control")
    p.add_argument("--tolerance", type=float, default=0.01, help="'reached plain's top-1' within this (0.01 = 1 pt)")
    p.add_argument("--gate-iters", type=int, default=120, help="premise gate iterations per shape (0: skip)")
    p.add_argument("--no-schedules", action="store_true", help="only the gate (or --batch-scaling)")
    p.add_argument("--batch-scaling", action="store_true", help="the batch-size measurement instead of the schedules")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--clips", type=int, default=4096, help="--batch-scaling: clips seen per run")
    p.add_argument("--sgd-lr", type=float, default=0.02, help="--batch-scaling: SGD LR at the base batch")
    p.add_argument("--adamw-lr", type=float, default=1e-3, help="--batch-scaling: AdamW LR at the base batch")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra training setting")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every part")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for multigrid.png and multigrid.json")
    args = p.parse_args(argv)
    if args.quick:
        args.classes, args.per_class, args.frames, args.size, args.clip_frames, args.clip_size = 3, 8, 8, 24, 18, 32
        args.epochs, args.gate_iters, args.clips, args.batches = 1, 2, 32, "8,16"
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    classes, data = load_data(args)
    regime = (
        f"{args.arch} width {args.width_mult} at {args.frames}x{args.size} stride {args.stride}, batch "
        f"{args.batch_size}, {args.optimizer} lr {args.lr}; {len(data['train'][1])} train / "
        f"{len(data['val'][1])} val clips, {len(classes)} classes" + ("" if args.data else f", style {args.style}")
    )
    print(
        f"{regime}; {args.epochs} base epochs; torch threads {args.threads} "
        f"(data ready in {time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    out = {"args": {k: str(v) for k, v in vars(args).items()}, "regime": regime}
    if args.gate_iters > 0 and not args.batch_scaling:
        print("premise gate:", flush=True)
        out["gate"] = premise_gate(data, len(classes), args)
    if args.batch_scaling:
        print(f"batch scaling ({args.clips} clips seen per run):", flush=True)
        out["batch_scaling"] = batch_scaling(data, len(classes), args)
        print("\n| optimizer | LR rule | batch | LR | iterations | clips | train s | top-1 |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in out["batch_scaling"]:
            print(
                f"| {r['optimizer']} | {r['rule']} | {r['batch']} | {r['lr']:.4g} | {r['iterations']} | "
                f"{r['clips']} | {r['train_s']:.1f} | {100 * r['top1']:.1f}% |"
            )
    elif not args.no_schedules:
        print("schedules:", flush=True)
        results = schedules(data, classes, args)
        print_schedule_table(results, args.tolerance)
        out["schedules"] = results
        args.out.mkdir(parents=True, exist_ok=True)
        plot(results, args.out / "multigrid.png", f"val top-1 vs training time: {regime}")
        print(f"\nwrote {args.out / 'multigrid.png'}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "multigrid.json").write_text(json.dumps(out, indent=1))
    print(f"total wall-clock {time.perf_counter() - started:.0f} s; wrote {args.out / 'multigrid.json'}")
    return out


if __name__ == "__main__":
    main()
