"""Multigrid training schedules (Wu et al. 2020; PySlowFast ``slowfast/utils/multigrid.py``).

A schedule is a list of :class:`Phase` rows over the (longer) multigrid run. Each row fixes
the long-cycle clip shape (frames T, crop S), the batch multiplier that keeps B·T·H·W about
constant, the LR multiplier, and the span of the *base* schedule it stands for.

Long cycle. The base run (``epochs`` = M, LR schedule with stage boundaries b_0 = 0 < ... <
b_K = M) is mapped like this, as in PySlowFast:

* every base stage except the last is split over the four shapes (T/4, S/√2), (T/2, S/√2),
  (T/2, S), (T, S) in proportion to their batch multipliers 8x, 4x, 2x, 1x, so each shape gets
  the same number of iterations; the LR is the base LR times the batch multiplier;
* the last base stage becomes a fine-tune phase at the full shape, as long as keeps the same
  iteration saving as the rest; its first half runs at the previous stage's LR, its second
  half at the last stage's LR (PySlowFast's ``STEPS[-1] = (STEPS[-2] + STEPS[-1]) // 2``);
* everything is rescaled so the run lasts ``round(M * 1.5)`` epochs.

Stage boundaries: a ``step`` base uses its steps; ``cosine`` and ``constant`` (and ``step``
without a step inside the run) have no stages, so they are cut into ``cosine_stages`` (default
4) stages of equal length. The LR of a ``step`` base is ``base_lr * gamma**k * multiplier`` in
its k-th real stage; for ``cosine`` every phase
follows the base curve over the span it stands for (each shape of a stage gets an equal
quarter of the stage, matching its equal share of iterations), times its multiplier. Phase
boundaries stay fractional: the batch sampler switches shape mid-epoch, so short runs keep
every phase (PySlowFast rounds them to whole epochs).

Short cycle. Iterations cycle through three crops: round(0.5·S₀) and round(√0.5·S₀) of the
*default* crop S₀, then the current long-cycle crop S, with batches round((S/(f·S₀))²) times the
long-cycle batch (4x, 2x, 1x at the full shape; 2x, 1x, 1x at S = S₀/√2) and no LR scaling.
This is PySlowFast's rule (``ShortCycleBatchSampler``: crop factors of ``MULTIGRID.DEFAULT_S``,
batch factors from ``TRAIN_CROP_SIZE``), so the largest combined batch is 16x the base. The
option ``short_cycle="relative"`` takes the factors of the current long-cycle crop instead
(0.5·S and √0.5·S with 4x and 2x batches at every long-cycle shape; up to 32x). With the short
cycle alone, the base schedule is stretched by 1.5.

Batch rules. ``paper`` is the above. ``bounded`` keeps every shape and its share of the run but
caps each shape's combined batch multiplier (long cycle x short cycle) at what the measured
gradient noise scale allows (:func:`allowed_batch_mult`); the long-cycle LR multiplier follows
the multiplier actually used. ``fixed`` keeps the base batch at every shape (and the base LR).
On a device already busy at the base batch (a CPU) a coarse clip costs its multiply-adds whatever
the batch, so the coarse shapes save time under every rule; only growth past the critical batch
costs accuracy.

Where vidact departs from PySlowFast on purpose: cosine and constant bases are cut into equal
stages (PySlowFast needs steps); phase ends stay fractional; a ``step`` base without steps
inside the run keeps its constant LR (the stages are only for the shape cycle); the long-cycle
LR rule may be the square root of the batch multiplier for Adam-type optimizers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from vidact.errors import UsageError
from vidact.train.lr import LRSchedule

MODES = ("none", "long", "short", "long+short")
LONG_CYCLE_FACTORS = ((0.25, 2**-0.5), (0.5, 2**-0.5), (0.5, 1.0), (1.0, 1.0))
SHORT_CYCLE_FACTORS = (0.5, 0.5**0.5)
SHORT_CYCLE_RULES = ("pyslowfast", "relative")  # crops from the default size, or from the current long-cycle size
STRIDE_RULES = ("span", "base")  # a shorter clip's stride drawn up to the full clip's span, or kept at the base stride
LR_SCALINGS = ("linear", "sqrt", "none")
EPOCH_FACTOR = 1.5
COSINE_STAGES = 4
BATCH_RULES = ("paper", "bounded", "fixed")
# bounded rule: a batch may grow while it needs at most this much more data than the base batch for the same
# progress, by the large-batch model E = E_min (1 + B / B_noise) with B_noise the measured B_simple
MAX_EXTRA_CLIPS = 0.5
MAX_BATCH_MULT = 32


def clips_ratio(batch: float, base: float, b_noise: float) -> float:
    """Examples a batch of ``batch`` needs for the same progress, relative to a batch of ``base``:
    (1 + B/B_noise) / (1 + B_base/B_noise) (McCandlish et al. 2018)."""
    return (1.0 + batch / b_noise) / (1.0 + base / b_noise)


def allowed_batch_mult(b_noise: float, base_batch: int, limit: int = MAX_BATCH_MULT) -> int:
    """The largest power-of-two multiplier m <= ``limit`` of the (global) base batch whose batch needs at
    most 1 + MAX_EXTRA_CLIPS times the base batch's examples for the same progress (at least 1; 1 when
    B_noise is 0: a noise-free gradient gains nothing from a larger batch)."""
    if not b_noise > 0:
        return 1
    mult = 1
    while mult * 2 <= limit and clips_ratio(mult * 2 * base_batch, base_batch, b_noise) <= 1.0 + MAX_EXTRA_CLIPS:
        mult *= 2
    return mult


def batch_cap(rule: str, critical_batch: float | None, base_batch: int) -> int | None:
    """The largest combined batch multiplier a rule allows: None (the paper's, uncapped), 1 (fixed), or
    :func:`allowed_batch_mult` of the critical batch (bounded)."""
    if rule not in BATCH_RULES:
        raise UsageError(f"multigrid_batch={rule!r} is not one of {', '.join(BATCH_RULES)}")
    if rule == "paper":
        return None
    if rule == "fixed":
        return 1
    if not critical_batch:
        raise UsageError(
            "multigrid_batch=bounded needs the critical batch: measured by the probe of --multigrid auto, "
            "or given with --set critical_batch=CLIPS (a run's B_simple in metrics.jsonl)"
        )
    return allowed_batch_mult(critical_batch, base_batch)


def stage_bounds(base: LRSchedule, cosine_stages: int = COSINE_STAGES) -> tuple[list[float], bool]:
    """([0, b_1, ..., M], real): the step boundaries inside the run (real=True), or equal stages."""
    inner = sorted(s for s in base.steps if 0 < s < base.epochs) if base.kind == "step" else []
    if inner:
        return [0.0, *map(float, inner), float(base.epochs)], True
    return [base.epochs * i / cosine_stages for i in range(cosine_stages + 1)], False


@dataclass(frozen=True)
class Phase:
    """One row of the schedule: epochs [start, end) at one long-cycle shape."""

    start: float
    end: float
    frames: int
    size: int
    batch_mult: int  # long-cycle batch multiplier (8, 4, 2, 1)
    lr_mult: float  # LR multiplier (the long-cycle batch multiplier; 1 otherwise)
    base_start: float  # span of the base schedule this phase stands for
    base_end: float
    lr_stage: int | None = None  # step bases: the LR runs at gamma ** lr_stage
    fine_tune: bool = False

    def base_epoch(self, epoch: float) -> float:
        """Where ``epoch`` (inside this phase) falls on the base schedule."""
        frac = (epoch - self.start) / (self.end - self.start) if self.end > self.start else 0.0
        return self.base_start + min(max(frac, 0.0), 1.0) * (self.base_end - self.base_start)


@dataclass(frozen=True)
class ShortCycleShape:
    """One iteration shape of the short cycle: crop size and batch multiplier."""

    size: int
    batch_mult: int


def long_cycle_shapes(frames: int, size: int) -> list[tuple[int, int, int]]:
    """The four long-cycle shapes as (T, S, batch multiplier) for a full shape (frames, size)."""
    full = frames * size * size
    shapes = []
    for t_factor, s_factor in LONG_CYCLE_FACTORS:
        t = max(1, int(round(frames * t_factor)))
        s = max(1, int(round(size * s_factor)))
        shapes.append((t, s, max(1, int(round(full / (t * s * s))))))
    return shapes


def short_cycle_shapes(size: int, default_size: int | None = None, rule: str = "pyslowfast") -> list[ShortCycleShape]:
    """The short cycle at long-cycle crop ``size``: two smaller crops, then ``size`` itself.

    ``pyslowfast``: crops f·S₀ of the default size ``default_size`` (S₀), batch factor
    round((S/(f·S₀))²); ``relative``: crops f·S of the current size, batch factor round((S/(f·S))²).
    """
    if rule not in SHORT_CYCLE_RULES:
        raise UsageError(f"short-cycle rule {rule!r} is not one of {', '.join(SHORT_CYCLE_RULES)}")
    reference = size if rule == "relative" or default_size is None else default_size
    shapes = []
    for factor in SHORT_CYCLE_FACTORS:
        s = max(1, int(round(reference * factor)))
        shapes.append(ShortCycleShape(s, max(1, int(round((size / (factor * reference)) ** 2)))))
    shapes.append(ShortCycleShape(size, 1))
    return shapes


@dataclass(frozen=True)
class MultigridSchedule:
    """The whole multigrid run: phases, total epochs and the LR at any fractional epoch."""

    mode: str
    base: LRSchedule
    frames: int
    size: int
    stride: int
    batch_size: int  # base (1x) batch per process
    total_epochs: int
    phases: tuple[Phase, ...]
    short_cycle_rule: str = "pyslowfast"
    stride_rule: str = "span"
    batch_rule: str = "paper"
    critical_batch: float | None = None  # the measured B_simple (clips) the bounded rule used
    max_batch_mult: int | None = None  # combined batch multiplier cap; None: the paper's

    @property
    def long_cycle(self) -> bool:
        return self.mode in ("long", "long+short")

    @property
    def short_cycle(self) -> bool:
        return self.mode in ("short", "long+short")

    def phase_at(self, epoch: float) -> Phase:
        """The phase that holds fractional ``epoch`` (the last one past the end)."""
        for phase in self.phases:
            if epoch < phase.end:
                return phase
        return self.phases[-1]

    def short_shapes(self, phase: Phase) -> list[ShortCycleShape]:
        """Iteration shapes of ``phase``: the short cycle (its batches within the rule's cap), or the
        long-cycle shape alone."""
        if not self.short_cycle:
            return [ShortCycleShape(phase.size, 1)]
        shapes = short_cycle_shapes(phase.size, self.size, self.short_cycle_rule)
        if self.max_batch_mult is None:
            return shapes
        room = max(1, self.max_batch_mult // phase.batch_mult)
        return [ShortCycleShape(s.size, min(s.batch_mult, room)) for s in shapes]

    def largest_batch_mult(self) -> int:
        """The largest combined batch multiplier of any iteration."""
        return max(p.batch_mult * s.batch_mult for p in self.phases for s in self.short_shapes(p))

    def stride_range(self, phase: Phase) -> tuple[int, int]:
        """The strides a clip of ``phase`` draws from: ``span`` (PySlowFast's frame-rate jitter) [rate, rate·T/t],
        so that some short clips span the full clip's time; ``base``: the base stride alone."""
        if self.stride_rule == "base":
            return self.stride, self.stride
        return self.stride, max(self.stride, self.stride * self.frames // phase.frames)

    def main_lr(self, epoch: float) -> float:
        """LR at fractional ``epoch`` without warm-up."""
        phase = self.phase_at(epoch)
        if phase.lr_stage is not None:
            return self.base.base_lr * self.base.gamma**phase.lr_stage * phase.lr_mult
        return self.base.main_lr(phase.base_epoch(epoch)) * phase.lr_mult

    def lr(self, epoch: float) -> float:
        """LR at fractional ``epoch``: linear warm-up from ``base_lr * warmup_start_factor``, then :meth:`main_lr`."""
        warm = self.base.warmup_epochs
        if epoch < warm:
            start = self.base.base_lr * self.base.warmup_start_factor
            return start + (self.main_lr(warm) - start) * epoch / warm
        return self.main_lr(epoch)

    def __call__(self, epoch: float) -> float:
        return self.lr(epoch)

    def rows(self) -> list[dict]:
        """The ``--dry-run`` table: one dict per phase (epochs, T, S, batch, LR)."""
        rows = []
        for phase in self.phases:
            shapes = self.short_shapes(phase)
            end = math.nextafter(phase.end, -math.inf)
            rows.append(
                {
                    "start": phase.start,
                    "end": phase.end,
                    "frames": phase.frames,
                    "sizes": [s.size for s in shapes],
                    "batch_sizes": [self.batch_size * phase.batch_mult * s.batch_mult for s in shapes],
                    "stride": list(self.stride_range(phase)),
                    "lr_start": self.lr(phase.start),
                    "lr_end": self.lr(end),
                    "fine_tune": phase.fine_tune,
                }
            )
        return rows

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "base": asdict(self.base),
            "frames": self.frames,
            "size": self.size,
            "stride": self.stride,
            "batch_size": self.batch_size,
            "total_epochs": self.total_epochs,
            "short_cycle_rule": self.short_cycle_rule,
            "stride_rule": self.stride_rule,
            "batch_rule": self.batch_rule,
            "critical_batch": self.critical_batch,
            "max_batch_mult": self.max_batch_mult,
            "phases": self.rows(),
        }


def lr_multiplier(batch_mult: int, scaling: str = "linear") -> float:
    """LR multiplier of a long-cycle shape whose batch is ``batch_mult`` times the base batch.

    ``linear`` is the paper's rule for SGD (Goyal et al. 2017); ``sqrt`` is the rule for
    Adam-type optimizers (Malladi et al. 2022), whose per-weight step size does not grow with
    the gradient's batch average the way SGD's does; ``none`` keeps the base LR.
    """
    if scaling == "linear":
        return float(batch_mult)
    if scaling == "sqrt":
        return math.sqrt(batch_mult)
    if scaling == "none":
        return 1.0
    raise UsageError(f"multigrid LR scaling {scaling!r} is not one of {', '.join(LR_SCALINGS)}")


def build_schedule(
    mode: str,
    base: LRSchedule,
    *,
    frames: int,
    size: int,
    batch_size: int,
    stride: int = 1,
    epoch_factor: float = EPOCH_FACTOR,
    cosine_stages: int = COSINE_STAGES,
    lr_scaling: str = "linear",
    short_cycle: str = "pyslowfast",
    stride_rule: str = "span",
    batch_rule: str = "paper",
    critical_batch: float | None = None,
    world_size: int = 1,
) -> MultigridSchedule:
    """The multigrid schedule for ``mode`` over the plain run ``base`` at shape (frames, size).

    ``batch_rule``: ``paper``, ``bounded`` (by ``critical_batch``, the measured B_simple in clips, against
    the global base batch ``batch_size * world_size``) or ``fixed``."""
    if mode not in MODES:
        raise UsageError(f"multigrid={mode!r} is not one of {', '.join(MODES)}")
    cap = batch_cap(batch_rule, critical_batch, batch_size * world_size)
    lr_multiplier(1, lr_scaling)  # validates the name
    short_cycle_shapes(size, size, short_cycle)  # validates the rule
    if stride_rule not in STRIDE_RULES:
        raise UsageError(f"multigrid_stride={stride_rule!r} is not one of {', '.join(STRIDE_RULES)}")
    if min(frames, size, batch_size, stride) < 1:
        raise UsageError("multigrid needs frames, size, batch size and stride >= 1")
    if cosine_stages < 2:
        raise UsageError("multigrid needs at least 2 base stages (one cycled, one fine-tune)")
    common = dict(
        mode=mode,
        base=base,
        frames=frames,
        size=size,
        stride=stride,
        batch_size=batch_size,
        short_cycle_rule=short_cycle,
        stride_rule=stride_rule,
        batch_rule=batch_rule,
        critical_batch=critical_batch if batch_rule == "bounded" else None,
        max_batch_mult=cap,
    )
    if mode == "none":
        phase = Phase(0.0, float(base.epochs), frames, size, 1, 1.0, 0.0, float(base.epochs))
        return MultigridSchedule(total_epochs=int(math.ceil(base.epochs)), phases=(phase,), **common)
    total = max(1, int(round(base.epochs * epoch_factor)))
    if mode == "short":
        phase = Phase(0.0, float(total), frames, size, 1, 1.0, 0.0, float(base.epochs))
        return MultigridSchedule(total_epochs=total, phases=(phase,), **common)
    phases = _long_cycle_phases(
        base, frames, size, total, short_cycle if mode == "long+short" else None, cosine_stages, lr_scaling, cap
    )
    return MultigridSchedule(total_epochs=total, phases=tuple(phases), **common)


def schedule_for_config(cfg) -> MultigridSchedule:
    """The schedule of a training config (``vidact.train.config.TrainConfig``) and its architecture's input."""
    from vidact.runtime.build import resolve_input
    from vidact.runtime.distributed import launch_env

    inp = resolve_input(cfg.arch, cfg.modality, cfg.frames, cfg.size, cfg.stride)
    return build_schedule(
        cfg.multigrid,
        LRSchedule.from_config(cfg),
        frames=inp.frames,
        size=inp.size,
        stride=inp.stride,
        batch_size=cfg.step_batch_size,
        lr_scaling=cfg.resolved_lr_scaling(),
        short_cycle=cfg.multigrid_short_cycle,
        stride_rule=cfg.multigrid_stride,
        batch_rule=cfg.multigrid_batch,
        critical_batch=cfg.critical_batch or None,
        world_size=launch_env().world_size,
    )


def _long_cycle_phases(
    base: LRSchedule,
    frames: int,
    size: int,
    total: int,
    short_cycle: str | None,
    cosine_stages: int,
    lr_scaling: str = "linear",
    cap: int | None = None,
) -> list[Phase]:
    """PySlowFast's ``get_long_cycle_schedule`` with fractional phase ends (``short_cycle``: its rule, or None).

    The shares of the run come from the paper's multipliers whatever the rule; ``cap`` bounds the
    batch multiplier each phase uses, and its LR follows the multiplier used."""
    shapes = long_cycle_shapes(frames, size)
    # Average batch multiplier of each long-cycle shape over its short cycle (if any).
    avg = []
    for _, s, mult in shapes:
        inner = [sc.batch_mult for sc in short_cycle_shapes(s, size, short_cycle)] if short_cycle else [1]
        avg.append(mult * sum(inner) / len(inner))
    bounds, real_steps = stage_bounds(base, cosine_stages)
    num_stages = len(bounds) - 1
    step_lr = base.kind == "step"
    # A step base's LR decays only at its real steps: without any, every stage runs at gamma ** 0.
    stage_lr = (lambda k: k) if real_steps else (lambda k: 0)

    # (stage, shape, epochs, base span) before rescaling; every shape gets equal iterations.
    raw: list[tuple[int, int, float, float, float]] = []
    iters = 0.0
    for k in range(num_stages - 1):
        length = bounds[k + 1] - bounds[k]
        for j in range(len(shapes)):
            epochs = length * avg[j] / sum(avg)
            iters += epochs / avg[j]
            lo = bounds[k] + length * j / len(shapes)
            raw.append((k, j, epochs, lo, lo + length / len(shapes)))
    iter_saving = bounds[-2] / iters
    fine_tune = (bounds[-1] - bounds[-2]) / iter_saving * avg[-1]
    scale = total / (sum(r[2] for r in raw) + fine_tune)

    phases = []
    end = 0.0
    for k, j, epochs, lo, hi in raw:
        start, end = end, end + epochs * scale
        t, s, mult = shapes[j]
        used = mult if cap is None else min(mult, cap)
        phases.append(
            Phase(start, end, t, s, used, lr_multiplier(used, lr_scaling), lo, hi, stage_lr(k) if step_lr else None)
        )
    # Fine-tune at the full shape: first half at the previous stage's LR, second at the last.
    t, s, _ = shapes[-1]
    mid, base_mid = (end + total) / 2, (bounds[-2] + bounds[-1]) / 2
    last = num_stages - 1
    phases.append(Phase(end, mid, t, s, 1, 1.0, bounds[-2], base_mid, stage_lr(last - 1) if step_lr else None, True))
    phases.append(
        Phase(mid, float(total), t, s, 1, 1.0, base_mid, bounds[-1], stage_lr(last) if step_lr else None, True)
    )
    return phases


def paper_batch_warning(schedule: MultigridSchedule, b_simple: float | None, base_batch: int) -> str | None:
    """One warning line when the measured B_simple says the schedule's largest batches waste clips; None when
    they fit (or nothing was measured). ``base_batch``: the global base batch."""
    if b_simple is None:
        return None
    allowed, largest = allowed_batch_mult(b_simple, base_batch), schedule.largest_batch_mult()
    if allowed >= largest:
        return None
    ratio = clips_ratio(largest * base_batch, base_batch, b_simple) if b_simple > 0 else math.inf
    return (
        f"warning: measured gradient noise scale B_simple ≈ {b_simple:.3g} clips: the paper's largest batches "
        f"({largest * base_batch} clips, {largest}x) need {ratio:.2g}x the clips of the base batch for the same "
        f"progress; --set multigrid_batch=bounded --set critical_batch={b_simple:.3g} keeps them at or below "
        f"{allowed}x (--multigrid auto measures and picks)"
    )


def describe_batch_rule(schedule: MultigridSchedule) -> str:
    """One phrase: the batch rule, the B_simple it used and the largest batch it gives."""
    largest = schedule.largest_batch_mult()
    if schedule.batch_rule == "paper":
        return f"batch rule paper (batches up to {largest}x the base)"
    if schedule.batch_rule == "fixed":
        return "batch rule fixed (the base batch at every shape)"
    return (
        f"batch rule bounded by B_simple {schedule.critical_batch:.3g} clips "
        f"(batches up to {schedule.max_batch_mult}x the base; this schedule's largest {largest}x)"
    )


def format_table(schedule: MultigridSchedule):
    """A rich Table of :meth:`MultigridSchedule.rows` for ``--dry-run``."""
    from rich.table import Table

    table = Table(
        title=f"multigrid {schedule.mode}: {schedule.total_epochs} epochs "
        f"(base {schedule.base.kind}, {schedule.base.epochs:g} epochs)"
    )
    for name in ("epochs", "T", "S", "batch", "stride", "LR", ""):
        table.add_column(name, justify="left" if name in ("epochs", "") else "right", no_wrap=True)
    for row in schedule.rows():
        lr = f"{row['lr_start']:.4g}"
        if not math.isclose(row["lr_start"], row["lr_end"], rel_tol=1e-9):
            lr += f"→{row['lr_end']:.4g}"
        stride = (
            "{}".format(row["stride"][0]) if row["stride"][0] == row["stride"][1] else "{}-{}".format(*row["stride"])
        )
        table.add_row(
            f"{row['start']:.2f}–{row['end']:.2f}",
            str(row["frames"]),
            "/".join(map(str, row["sizes"])),
            "/".join(map(str, row["batch_sizes"])),
            stride,
            lr,
            "fine-tune" if row["fine_tune"] else "",
        )
    return table
