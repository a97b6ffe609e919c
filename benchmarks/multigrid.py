"""Multigrid vs the plain schedule in a training-like regime: wall-clock, top-1 over time, what holds it back.

Three measurements, all in this one process on clips held in memory (the synthetic set's own
clips rendered without the H.264 round trip, or ``--data``), so timings compare and measure
training, not decoding:

1. Per-shape progress and cost (``--gate-clips N``, a minute or two): N clips at each long-cycle
   shape at the base batch, and at the coarsest shape at the paper's 8x batch (LR x the rule's
   multiplier), each from the same initialisation with sub-batch BN and the frame stride jittered
   to span the full clip, then evaluated at the full shape (after precise BN): top-1 gained per
   clip seen, and seconds per clip, at each shape.
2. Schedules, through the real training engine (``fit``: multigrid sampler, sub-batch BN, LR
   schedule, precise BN, the probe): plain, ``short``, ``long+short`` with the paper's batch rule,
   with the bounded rule (its critical batch measured by the probe, or ``--critical-batch``) and
   the fixed one, ``auto`` (the probe picks), optionally ``long``, then an equal-time plain
   control (the whole plain schedule over as many epochs as fit in the bounded long+short's
   training time). Prints iterations per phase, top-1 after every epoch against training seconds,
   and a table: train seconds (a probe's seconds included), ratio to plain, final top-1, seconds
   to reach the plain run's final top-1 (within ``--tolerance``) and that time as a fraction of
   plain's, and the gradient noise scale every run measures (``--noise-every``, default 10 steps)
   with what measuring it cost. Training seconds leave out validation; a multigrid point counts its precise-BN pass.
   ``multigrid.png`` plots top-1 against training seconds.
3. ``--batch-scaling``: the large-batch model checked against measurement. For batches 8-128
   (full shape, sub-batch BN over 8 clips, constant LR after a short warm-up, LR x the optimizer's
   rule), the clips each needs to reach a target top-1 (default: what batch 8 reaches after
   ``--clips``; evaluated at clip counts a factor sqrt(2) apart, interpolated in log clips, up to
   4x ``--clips``), beside E_min (1 + B/B_noise), with B_noise the gradient noise scale B_simple
   measured on the same data (micro-batches of 8 inside the batch-32 run's batches, ``--noise-batch``) and E_min
   from batch 8's measurement.

Default: 8 classes x 448 clips of the ``natural`` synthetic style (2,688 train / 896 val),
c3d-bn width 1/8 at 16x48, stride 2, batch 8, AdamW 1e-3, 6 base epochs: about 30 minutes
on 2 CPU cores. ``--quick`` runs tiny sizes (the test suite's smoke run).

    .venv/bin/python benchmarks/multigrid.py                                 # shapes + schedules
    .venv/bin/python benchmarks/multigrid.py --batch-scaling                 # the predictor vs measurement
    .venv/bin/python benchmarks/multigrid.py --style dots --per-class 256    # the easy data
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

# --modes names: the schedule's label and its training settings
SCHEDULES = {
    "none": ("plain", ["multigrid=none"]),
    "long": ("long (paper)", ["multigrid=long"]),
    "short": ("short (paper)", ["multigrid=short"]),
    "long+short": ("long+short (paper)", ["multigrid=long+short"]),
    "bounded": ("long+short (bounded)", ["multigrid=long+short", "multigrid_batch=bounded"]),
    "fixed": ("long+short (fixed)", ["multigrid=long+short", "multigrid_batch=fixed"]),
    "fixed-base": (
        "long+short (fixed, base stride)",
        ["multigrid=long+short", "multigrid_batch=fixed", "multigrid_stride=base"],
    ),
    "auto": ("auto", ["multigrid=auto"]),
}
DEFAULT_MODES = "none,short,long+short,bounded,fixed,auto"
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


class BatchStream:
    """Shuffled batches of one shape, the stride jittered per clip; passes over the data as often as needed."""

    def __init__(self, data, batch: int, frames: int, crop: int, strides: tuple[int, int], seed: int):
        self.source, self.labels = data
        self.batch, self.frames, self.crop, self.strides = batch, frames, crop, strides
        self.rng = np.random.default_rng([seed, batch, frames, crop])
        self.order, self.pos = self.rng.permutation(len(self.labels)), 0

    def next(self):
        if self.pos + self.batch > len(self.order):
            self.order, self.pos = self.rng.permutation(len(self.labels)), 0
        idx = self.order[self.pos : self.pos + self.batch]
        self.pos += self.batch
        strides = self.rng.integers(self.strides[0], self.strides[1] + 1, size=len(idx))
        return self.source.batch(idx, self.frames, strides, self.crop, self.rng), self.labels[idx]


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
    stream = BatchStream(data, batch, frames, crop, strides, seed)
    opt = optimizer_for(optimizer, model, lr)
    warm = max(1, iters // 20)
    model.train()
    started = time.perf_counter()
    for it in range(iters):
        x, y = stream.next()
        scale = 0.5 * (1 + math.cos(math.pi * it / iters)) * min(1.0, 0.1 + 0.9 * it / warm)
        for g in opt.param_groups:
            g["lr"] = lr * scale
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
        opt.step()
    return time.perf_counter() - started


def lr_rule(optimizer: str) -> str:
    return "linear" if optimizer == "sgd" else "sqrt"


# --------------------------------------------------------------------------- 1. per-shape progress and cost
def shape_progress(data, num_classes: int, args) -> list[dict]:
    """``--gate-clips`` clips at each long-cycle shape (base batch), and at the coarsest at the paper's batch:
    top-1 at the full shape afterwards, and seconds per clip."""
    from vidact.train.multigrid import long_cycle_shapes, lr_multiplier

    shapes = long_cycle_shapes(args.frames, args.size)
    full = args.frames * args.size**2
    runs = [(t, s, 1) for t, s, _ in shapes] + [(shapes[0][0], shapes[0][1], shapes[0][2])]
    rows = []
    for t, s, mult in runs:
        batch = args.batch_size * mult
        lr = args.lr * lr_multiplier(mult, lr_rule(args.optimizer))
        strides = (args.stride, max(args.stride, args.stride * args.frames // t))
        iters = max(1, args.gate_clips // batch)
        model = new_model(args, num_classes, sub_batch_bn=True)
        seconds = train_loop(
            model,
            data["train"],
            args,
            optimizer=args.optimizer,
            lr=lr,
            batch=batch,
            iters=iters,
            frames=t,
            crop=s,
            strides=strides,
            seed=args.seed,
        )
        precise_bn(model, data["train"], args)
        rows.append(
            {
                "frames": t,
                "crop": s,
                "batch": batch,
                "lr": lr,
                "iterations": iters,
                "clips": iters * batch,
                "train_s": seconds,
                "seconds_per_clip": seconds / (iters * batch),
                "compute": t * s * s / full,
                "top1": evaluate(model, data["val"], args),
            }
        )
        r = rows[-1]
        print(
            f"  {t:2d}x{s:<3d} batch {batch:4d} lr {lr:.4g}: {r['clips']} clips in {seconds:6.1f} s "
            f"({1000 * r['seconds_per_clip']:.1f} ms per clip)  top-1 at the full shape {100 * r['top1']:5.1f}%",
            flush=True,
        )
    return rows


def print_shape_table(rows: list[dict], num_classes: int) -> None:
    full = rows[len(rows) - 2]  # the full shape at the base batch
    chance = 1.0 / num_classes
    print(
        "\n| shape | batch | clips | ms per clip | cost per clip vs full | multiply-adds vs full | top-1 "
        "| gain over chance vs full |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        gain = (r["top1"] - chance) / (full["top1"] - chance) if full["top1"] > chance else float("nan")
        print(
            f"| {r['frames']}x{r['crop']} | {r['batch']} | {r['clips']} | {1000 * r['seconds_per_clip']:.2f} | "
            f"{r['seconds_per_clip'] / full['seconds_per_clip']:.2f} | {r['compute']:.3f} | {100 * r['top1']:.1f}% | "
            f"{gain:.2f} |"
        )


# --------------------------------------------------------------------------- 3. batch scaling
def checkpoints(clips: int, upto: float = 4.0) -> list[int]:
    """Clip counts a factor sqrt(2) apart, from clips/4 to ``upto`` x clips."""
    return [int(round(clips * 2 ** (k / 2))) for k in range(-4, int(2 * math.log2(upto)) + 1)]


def clips_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """Clips at which ``curve`` (clips, top-1) first reaches ``target``, interpolated in log clips."""
    prev = None
    for clips, top1 in curve:
        if top1 >= target - 1e-9:
            if prev is None or prev[1] >= top1:
                return float(clips)
            frac = (target - prev[1]) / (top1 - prev[1])
            return float(math.exp(math.log(prev[0]) + frac * (math.log(clips) - math.log(prev[0]))))
        prev = (clips, top1)
    return None


def scaling_run(data, num_classes: int, args, *, optimizer: str, base_lr: float, batch: int, target: float | None):
    """One batch size: constant LR (rule-scaled) after a short warm-up; top-1 at the checkpoints until ``target``
    (or the last checkpoint); B_simple from micro-batches of 8 when the batch is ``NOISE_BATCH``."""
    from vidact.train.noise_scale import NoiseScale, micro_batch_backward

    mult = batch / args.batch_size
    lr = base_lr * (mult if lr_rule(optimizer) == "linear" else math.sqrt(mult))
    model = new_model(args, num_classes, sub_batch_bn=True)
    opt = optimizer_for(optimizer, model, lr)
    stream = BatchStream(data["train"], batch, args.frames, args.size, (args.stride, args.stride), args.seed)
    warm = max(1, args.clips // (20 * batch))
    noise = NoiseScale(beta=0.99) if batch == args.noise_batch else None
    marks, curve, seen, it, seconds, mark = checkpoints(args.clips), [], 0, 0, 0.0, 0
    model.train()
    while seen < marks[-1]:
        x, y = stream.next()
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, 0.1 + 0.9 * it / warm)
        started = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        k = len(y) // 8 if len(y) % 8 == 0 else 0
        if noise is not None and it % 4 == 0 and k >= 2:  # the same gradient, from micro-batches of the BN sub-batch
            step = micro_batch_backward(model, x, y, k, lambda xs, ys: F.cross_entropy(model(xs), ys))
            noise.update(step.small_sq, step.big_sq, step.micro_size, step.batch_size)
        else:
            F.cross_entropy(model(x), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
        opt.step()
        seconds += time.perf_counter() - started
        seen, it = seen + batch, it + 1
        if seen >= marks[mark]:
            while mark < len(marks) - 1 and seen >= marks[mark]:
                mark += 1
            state = {k: v.clone() for k, v in model.state_dict().items()}
            precise_bn(model, data["train"], args)
            curve.append((seen, evaluate(model, data["scaling_val"], args)))
            model.load_state_dict(state)  # precise BN for evaluation only
            model.train()
            if target is not None and curve[-1][1] >= target:
                break
    return {
        "optimizer": optimizer,
        "rule": lr_rule(optimizer),
        "batch": batch,
        "lr": lr,
        "iterations": it,
        "clips": seen,
        "train_s": seconds,
        "curve": curve,
        "top1_at_clips": next((a for c, a in curve if c >= args.clips), curve[-1][1]),
        "b_simple": noise.b_simple if noise is not None else None,
        "noise_measurements": noise.measurements if noise is not None else 0,
    }


def batch_scaling(data, num_classes: int, args) -> list[dict]:
    rows = []
    lrs = {"sgd": args.sgd_lr, "adamw": args.adamw_lr}
    for optimizer in args.scaling_optimizers.split(","):
        batches = [int(b) for b in args.batches.split(",")]
        target = args.target
        for batch in batches:
            row = scaling_run(
                data, num_classes, args, optimizer=optimizer, base_lr=lrs[optimizer], batch=batch, target=target
            )
            if target is None:  # batch 8's top-1 after --clips sets the target
                target = row["top1_at_clips"]
            row["target"] = target
            rows.append(row)
            print(
                f"  {optimizer:5s} batch {batch:4d} lr {row['lr']:.4g}: {row['clips']} clips, {row['train_s']:6.1f} s; "
                "top-1 "
                + ", ".join(f"{c}: {100 * a:.1f}%" for c, a in row["curve"])
                + (f"; B_simple {row['b_simple']:.3g} clips" if row["b_simple"] is not None else ""),
                flush=True,
            )
        ours = [r for r in rows if r["optimizer"] == optimizer]
        predict(ours)
    return rows


def predict(rows: list[dict]) -> None:
    """Clips to the target per batch, measured and by E_min (1 + B/B_noise) with B_noise = the measured B_simple."""
    b_noise = next((r["b_simple"] for r in rows if r["b_simple"]), None)
    base = rows[0]
    base_clips = clips_to_reach(base["curve"], base["target"])
    e_min = base_clips / (1 + base["batch"] / b_noise) if b_noise and base_clips else None
    for r in rows:
        r["clips_to_target"] = clips_to_reach(r["curve"], r["target"])
        r["b_noise"] = b_noise
        r["predicted_clips"] = e_min * (1 + r["batch"] / b_noise) if e_min else None


def print_scaling_table(rows: list[dict]) -> None:
    print(
        "\n| optimizer | LR rule | batch | LR | target top-1 | clips to target (measured) | E_min (1 + B/B_noise) "
        "| measured / predicted | top-1 at --clips | B_noise (B_simple) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        measured, predicted = r.get("clips_to_target"), r.get("predicted_clips")
        print(
            f"| {r['optimizer']} | {r['rule']} | {r['batch']} | {r['lr']:.4g} | {100 * r['target']:.1f}% | "
            + (f"{measured:.0f}" if measured else f"not reached in {r['clips']}")
            + " | "
            + (f"{predicted:.0f}" if predicted else "-")
            + " | "
            + (f"{measured / predicted:.2f}" if measured and predicted else "-")
            + f" | {100 * r['top1_at_clips']:.1f}% | "
            + (f"{r['b_noise']:.3g}" if r.get("b_noise") else "-")
            + " |"
        )


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


def engine_run(name: str, epochs: int, data, classes: list[str], root: Path, args, label: str | None = None) -> dict:
    """One schedule of ``SCHEDULES`` (``name``) through ``fit``; its curve of top-1 against training seconds."""
    from vidact.data.dataset import ClipSpec
    from vidact.train.config import TrainConfig, load_config, read_config_file
    from vidact.train.data import TrainData
    from vidact.train.engine import fit

    default = ClipSpec(args.frames, args.size, args.stride)
    train_set = MemoryClips(*data["train"], default, train=True, seed=args.seed)
    val_set = MemoryClips(*data["val"], default, train=False, seed=args.seed)
    label = label or SCHEDULES[name][0]
    settings = list(SCHEDULES[name][1]) + ([f"noise_scale_every={args.noise_every}"] if args.noise_every else [])
    if name == "bounded" and args.critical_batch:
        settings.append(f"critical_batch={args.critical_batch}")
    out = root / "runs" / label.replace("+", "-").replace(" ", "_").replace("(", "").replace(")", "")
    cfg = load_config(
        arch=args.arch,
        data=str(root),
        out=str(out),
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
            "val_every=1",
            "log_every=100000",
            f"clip_grad={args.clip_grad}",
            f"optimizer={args.optimizer}",
            *settings,
            *args.set,
        ],
    )
    lines: list[str] = []
    summary = fit(cfg, TrainData(classes, train_set, val_set), progress=False, notify=lines.append)
    decided = TrainConfig.from_dict(read_config_file(out / "config.toml"))
    phases = phase_iterations(decided, len(train_set)) if decided.multigrid != "none" else []
    probe_s = summary["probe"]["seconds"] if summary.get("probe") else 0.0
    clock, curve = probe_s, []
    for rec in summary["history"]:
        clock += rec["seconds"]
        # a model taken at this epoch costs the probe and the training so far plus its precise-BN pass; a
        # multigrid run validates when a base epoch ends, not after every stretched epoch
        if "val_top1" in rec:
            curve.append((clock + rec.get("precise_bn_seconds", 0.0), rec["val_top1"]))
    result = {
        "schedule": label,
        "name": name,
        "mode": decided.multigrid,
        "batch_rule": decided.multigrid_batch if decided.multigrid != "none" else "",
        "critical_batch": decided.critical_batch or None,
        "decisions": lines,
        "probe_s": probe_s,
        "noise_scale": summary.get("noise_scale"),
        "epochs": summary["epochs"],
        "iterations": summary["iterations"],
        "phases": phases,
        "train_s": curve[-1][0],
        "final_top1": curve[-1][1],
        "best_top1": max(c[1] for c in curve),
        "curve": curve,
    }
    print(
        f"  {label:22s} {result['epochs']:3d} epochs {result['iterations']:6d} it {result['train_s']:8.1f} s  "
        f"final top-1 {100 * result['final_top1']:5.1f}%",
        flush=True,
    )
    for line in lines:
        print(f"    {line}", flush=True)
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
        for name in args.modes.split(","):
            if name not in SCHEDULES:
                raise SystemExit(f"--modes: {name!r} is not one of {', '.join(SCHEDULES)}")
            results.append(engine_run(name, args.epochs, data, classes, root, args))
        plain = next((r for r in results if r["name"] == "none"), None)
        reference = next((r for r in results if r["name"] == "bounded"), None) or next(
            (r for r in results if r["name"] == "long+short"), None
        )
        if plain is not None and reference is not None and not args.no_control:
            epochs = max(1, int(round(args.epochs * reference["train_s"] / plain["train_s"])))
            results.append(engine_run("none", epochs, data, classes, root, args, label=CONTROL))
    return results


def print_schedule_table(results: list[dict], tolerance: float) -> None:
    plain = next((r for r in results if r["name"] == "none"), results[0])
    target = plain["final_top1"] - tolerance
    print(
        f"\n| schedule | batch rule | epochs | iterations | train s | ratio to plain | final top-1 | best top-1 "
        f"| s to plain's top-1 - {100 * tolerance:.0f} pt | fraction of plain time | B_simple (last) "
        "| noise-scale cost |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        reach = time_to_reach(r["curve"], target)
        r["time_to_plain_top1"] = reach
        rule = r["batch_rule"] + (f", B_simple {r['critical_batch']:.3g}" if r["critical_batch"] else "")
        name = r["schedule"] + (f" → {r['mode']}" if r["name"] == "auto" else "")
        print(
            f"| {name} | {rule or '-'} | {r['epochs']} | {r['iterations']} | {r['train_s']:.1f} | "
            f"{r['train_s'] / plain['train_s']:.2f} | {100 * r['final_top1']:.1f}% | {100 * r['best_top1']:.1f}% | "
            + (f"{reach:.1f} | {reach / plain['train_s']:.2f} |" if reach is not None else "- | not reached |")
            + noise_cells(r.get("noise_scale"))
        )


def noise_cells(noise: dict | None) -> str:
    """B_simple at the run's end and the share of its training time measuring it cost."""
    if not noise or not noise.get("measurements"):
        return " - | - |"
    b, cost = noise.get("b_simple"), noise.get("overhead_fraction")
    return (f" {b:.3g} |" if b is not None else " - |") + (f" {100 * cost:.1f}% |" if cost is not None else " - |")


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
            label=r["schedule"],
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
    p.add_argument("--modes", default=DEFAULT_MODES, help=f"schedules, of: {', '.join(SCHEDULES)}")
    p.add_argument("--critical-batch", type=float, default=0.0, help="B_simple for 'bounded' (0: the probe's)")
    p.add_argument("--noise-every", type=int, default=10, help="measure the noise scale every N steps (0: off)")
    p.add_argument("--no-control", action="store_true", help="skip the equal-time plain control")
    p.add_argument("--tolerance", type=float, default=0.01, help="'reached plain's top-1' within this (0.01 = 1 pt)")
    p.add_argument("--gate-clips", type=int, default=960, help="clips per shape in the per-shape table (0: skip)")
    p.add_argument("--no-schedules", action="store_true", help="only the per-shape table (or --batch-scaling)")
    p.add_argument("--batch-scaling", action="store_true", help="the batch-size measurement instead of the schedules")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--clips", type=int, default=2048, help="--batch-scaling: batch 8's clips that set the target")
    p.add_argument("--target", type=float, default=None, help="--batch-scaling: target top-1 (default: batch 8's)")
    p.add_argument("--scaling-optimizers", default="adamw", help="--batch-scaling: sgd, adamw or both")
    p.add_argument("--noise-batch", type=int, default=32, help="--batch-scaling: the run that measures B_simple")
    p.add_argument("--scaling-val", type=int, default=256, help="--batch-scaling: validation clips per evaluation")
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
        args.epochs, args.gate_clips, args.clips, args.batches, args.noise_batch = 1, 16, 16, "8,16", 16
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    classes, data = load_data(args)
    source, labels = data["val"]
    keep = np.random.default_rng([args.seed, 0x5CA1]).permutation(len(labels))[: args.scaling_val]
    data["scaling_val"] = (_Subset(source, keep), labels[keep])
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
    if args.gate_clips > 0 and not args.batch_scaling:
        print(f"per-shape progress and cost ({args.gate_clips} clips each):", flush=True)
        out["shapes"] = shape_progress(data, len(classes), args)
        print_shape_table(out["shapes"], len(classes))
    if args.batch_scaling:
        print(f"batch scaling (target: batch 8's top-1 after {args.clips} clips, unless --target):", flush=True)
        out["batch_scaling"] = batch_scaling(data, len(classes), args)
        print_scaling_table(out["batch_scaling"])
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


class _Subset:
    """The clips of ``source`` at ``keep`` (a clip source for :func:`evaluate`)."""

    def __init__(self, source, keep):
        self.source, self.keep = source, keep

    def batch(self, index, *rest):
        return self.source.batch([int(self.keep[i]) for i in index], *rest)


if __name__ == "__main__":
    main()
