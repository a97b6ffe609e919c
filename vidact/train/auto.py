"""``--multigrid auto``, ``--lr auto`` and the bounded rule's critical batch: the probe's measurements
(:mod:`vidact.train.probe`) turned into the run's settings, each decision said in one line and recorded
in the run's ``config.toml`` (``probe_decision``) and summary.

The multigrid choice (:func:`choose_multigrid`), in order:

1. a coarse clip that costs ``COST_LIMIT`` or more of a full clip's seconds (loading-bound) saves no
   time: the plain schedule;
2. a clip of fewer than 6 frames leaves the long cycle's coarsest clips one frame: the short cycle alone;
3. otherwise long+short, with the largest batch multiplier the measured B_simple allows
   (:func:`vidact.train.multigrid.allowed_batch_mult`; of its lower bound, one standard error over the
   probe's few steps: the estimate is noisy, and a batch grows only as far as the measurement is sure of):
   the paper's rule when its largest batch fits,
   ``fixed`` when not even 2x does, ``bounded`` in between; ``fixed`` when B_simple could not be measured,
   and ``fixed`` when the larger batch does not make a coarse clip at least ``GROWTH_PAYS`` times
   cheaper here (a CPU, or a GPU already busy at the base batch): a batch grows to fill a device,
   and where that buys no time, growing it only risks accuracy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vidact.runtime import distributed
from vidact.train.config import TrainConfig
from vidact.train.lr import LRSchedule
from vidact.train.multigrid import allowed_batch_mult, build_schedule, clips_ratio, long_cycle_shapes
from vidact.train.probe import Probe, probe_shapes, run_probe

COST_LIMIT = 0.75  # a coarse clip at or above this fraction of a full clip's seconds: multigrid saves no time
MIN_COARSE_FRAMES = 2  # the long cycle's coarsest clip (T/4) needs motion
GROWTH_PAYS = 1.25  # a larger batch must make a coarse clip this many times cheaper to be worth growing


@dataclass(frozen=True)
class MultigridChoice:
    """A multigrid schedule and batch rule, and why, in one line."""

    mode: str
    batch_rule: str
    critical_batch: float  # 0: not used
    reason: str


def paper_largest(mode: str, frames: int, size: int) -> int:
    """The largest batch multiplier of the paper's rule for ``mode`` at (frames, size)."""
    return build_schedule(mode, LRSchedule(1.0, 4), frames=frames, size=size, batch_size=1).largest_batch_mult()


def choose_multigrid(
    b_simple: float | None,
    *,
    base_batch: int,
    frames: int,
    size: int,
    cost_ratio: float | None = None,
    growth_speedup: float | None = None,
    b_low: float | None = None,
) -> MultigridChoice:
    """The schedule and batch rule for a run of clips (frames, size) at global base batch ``base_batch``, from
    the measured B_simple (clips; None: not measurable) and its lower bound ``b_low`` (one standard error over
    the probe's steps; the rule bounds the batch by it where given), a coarse clip's cost relative to a full
    clip, and how many times cheaper a coarse clip is in the allowed batch than in the base batch (None: not
    timed)."""
    coarse_t, coarse_s, _ = long_cycle_shapes(frames, size)[0]
    if cost_ratio is not None and cost_ratio >= COST_LIMIT:
        return MultigridChoice(
            "none",
            "paper",
            0.0,
            f"a coarse clip ({coarse_t}x{coarse_s}) took {cost_ratio:.2f} of a full clip's seconds here "
            f"(loading-bound: more --workers or pre-extracted frames would help): multigrid would save no time, "
            f"so the plain schedule",
        )
    mode = "long+short" if coarse_t >= MIN_COARSE_FRAMES else "short"
    why_mode = "" if mode == "long+short" else f"{frames} frames leave the long cycle's coarsest clips 1 frame: "
    largest = paper_largest(mode, frames, size)
    if b_simple is None:
        return MultigridChoice(
            mode, "fixed", 0.0, f"{why_mode}B_simple not measurable (|G|² estimate <= 0): {mode} at the base batch"
        )
    bound = b_simple if b_low is None else min(b_low, b_simple)
    allowed = allowed_batch_mult(bound, base_batch)
    low = "" if b_low is None else f" (at least {b_low:.3g} within one standard error)"
    head = f"{why_mode}B_simple ≈ {b_simple:.3g} clips{low}: {mode}"
    waste = clips_ratio(largest * base_batch, base_batch, bound) if bound > 0 else float("inf")
    paper = f"the paper's {largest}x would need {waste:.2g}x the clips of batch {base_batch} for the same progress"
    grown = min(allowed, largest)
    if grown > 1 and growth_speedup is not None and growth_speedup < GROWTH_PAYS:
        return MultigridChoice(
            mode,
            "fixed",
            0.0,
            f"{head} at the base batch: B_simple allows batches up to {grown}x, but a {grown}x coarse batch made "
            f"a clip only {growth_speedup:.2f}x as fast here, so growing the batch would save no time",
        )
    if allowed >= largest:
        return MultigridChoice(mode, "paper", 0.0, f"{head} with the paper's batches (up to {largest}x fit)")
    if allowed == 1:
        return MultigridChoice(mode, "fixed", 0.0, f"{head} at the base batch; {paper}")
    return MultigridChoice(mode, "bounded", bound, f"{head} with batches up to {allowed}x; {paper}")


def needs_probe(cfg: TrainConfig) -> bool:
    """True when the run's settings wait on the probe: ``--multigrid auto``, ``--lr auto``, or the bounded
    rule without a critical batch."""
    bounded = cfg.multigrid != "none" and cfg.multigrid_batch == "bounded" and not cfg.critical_batch
    return cfg.multigrid == "auto" or cfg.lr_finder or bounded


def planned_clips(cfg: TrainConfig, num_samples: int, frames: int, size: int, stride: int) -> float:
    """Training compute of the planned run in full-shape clips: the plain epochs, or, for multigrid (``auto``
    plans long+short), every planned batch's clips times its shape's cost."""
    from vidact.train.samplers import MultigridBatchSampler

    if cfg.multigrid == "none":
        return float(cfg.epochs * num_samples)
    mode = "long+short" if cfg.multigrid == "auto" else cfg.multigrid
    schedule = build_schedule(
        mode,
        LRSchedule.from_config(cfg),
        frames=frames,
        size=size,
        stride=stride,
        batch_size=cfg.batch_size,
        short_cycle=cfg.multigrid_short_cycle,
    )
    sampler = MultigridBatchSampler(num_samples, schedule, rank=0, world_size=1)
    full = frames * size * size
    return sum(
        plan.size * plan.frames * plan.crop_size**2 / full
        for epoch in range(schedule.total_epochs)
        for plan in sampler.plan(epoch)
    )


def resolve_auto(
    cfg: TrainConfig,
    train_set,
    model: nn.Module,
    device: torch.device,
    *,
    frames: int,
    size: int,
    stride: int,
    amp: str,
    loading,
    criterion: nn.Module,
    make_optimizer: Callable[[float], torch.optim.Optimizer],
    notify: Callable[[str], None] | None = None,
) -> tuple[TrainConfig, dict | None]:
    """``cfg`` with what waits on the probe decided (rank 0 probes, every rank gets its decisions), and the
    probe's report; ``cfg`` itself when nothing waits on it. ``loading``: the run's loader plan
    (:class:`vidact.data.loader.LoaderPlan`), whose workers and decoder threads the probe's loaders use."""
    if not needs_probe(cfg):
        return cfg, None
    world = distributed.get_world_size()
    decided = None
    if distributed.is_main_process():
        probe = Probe(
            model=model,
            train_set=train_set,
            device=device,
            criterion=criterion,
            make_optimizer=make_optimizer,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            shapes=probe_shapes(frames, size, stride),
            amp="none" if amp == "fp16" else amp,
            workers=loading.workers,
            decoder_threads=loading.decoder_threads,
            seed=cfg.seed,
            clip_grad=cfg.clip_grad,
        )
        report = run_probe(
            probe,
            planned_clips=planned_clips(cfg, len(train_set), frames, size, stride),
            noise=cfg.multigrid != "none",
            lr_test=cfg.lr_finder,
            optimizer_name=cfg.optimizer,
            growth=_growth_to_time(cfg, world * cfg.batch_size, frames, size),
            notify=notify,
        )
        decided = (*decide(cfg, report.to_dict(), world * cfg.batch_size, frames, size), report.to_dict())
    changes, lines, report = distributed.broadcast_object(decided)
    if notify is not None and distributed.is_main_process():
        for line in lines:
            notify(line)
    return dataclasses.replace(cfg, **changes, probe_decision="; ".join(lines)).validate(), report


def _growth_to_time(cfg: TrainConfig, base_batch: int, frames: int, size: int) -> Callable[[dict], int] | None:
    """For ``--multigrid auto``: the batch multiplier the probe times against the base batch, given its noise
    measurement."""
    if cfg.multigrid != "auto":
        return None

    def growth(noise: dict) -> int:
        bound = noise["b_simple"] if noise.get("b_simple_low") is None else noise["b_simple_low"]
        if noise["b_simple"] is None or bound is None:
            return 1
        return min(
            allowed_batch_mult(min(bound, noise["b_simple"]), base_batch), paper_largest("long+short", frames, size)
        )

    return growth


def decide(cfg: TrainConfig, report: dict, base_batch: int, frames: int, size: int) -> tuple[dict, list[str]]:
    """(config changes, one line per decision) from a probe's report."""
    changes: dict = {}
    lines: list[str] = []
    spent = f"probe {report['seconds']:.1f} s, budget {report['budget_seconds']:.1f} s"
    if cfg.lr_finder:
        test = report["lr"]
        changes["lr_finder"] = False
        shape = test["shape"]
        where = f"LR range test, {test['steps']} steps at {shape['frames']}x{shape['size']}"
        if test["lr"] is None:
            lines.append(f"warning: --lr auto found no LR ({where}: {test['rule']}); lr stays {cfg.lr:.4g}")
        else:
            changes["lr"] = test["lr"]
            lines.append(f"lr auto: {test['lr']:.3g} ({where}; {test['rule']})")
    if cfg.multigrid != "none":
        noise = report["noise"]
        b_simple = noise["b_simple"]
        if cfg.multigrid == "auto":
            cost = report.get("cost") or {}
            choice = choose_multigrid(
                b_simple,
                base_batch=base_batch,
                frames=frames,
                size=size,
                cost_ratio=cost.get("ratio"),
                growth_speedup=cost.get("growth_speedup"),
                b_low=noise.get("b_simple_low"),
            )
            changes.update(
                multigrid=choice.mode, multigrid_batch=choice.batch_rule, critical_batch=choice.critical_batch
            )
            lines.append(f"multigrid auto: {choice.reason} ({spent})")
        elif b_simple is not None:  # the bounded rule, waiting for its critical batch
            changes["critical_batch"] = b_simple
            allowed = allowed_batch_mult(b_simple, base_batch)
            lines.append(
                f"multigrid bounded: B_simple ≈ {b_simple:.3g} clips allows batches up to {allowed}x ({spent})"
            )
        else:
            changes["multigrid_batch"] = "fixed"
            lines.append(
                f"warning: multigrid bounded: B_simple not measurable (|G|² estimate <= 0); the base batch at "
                f"every shape ({spent})"
            )
    return changes, lines
