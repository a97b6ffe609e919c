"""X3D's progressive network expansion (Feichtenhofer, CVPR 2020): grow a tiny X2D one axis at a time.

Every step builds one candidate per axis -- temporal duration ``t``, frame rate ``tau``, spatial
resolution ``s``, width ``w``, bottleneck width ``b``, depth ``d`` -- each expanded on its axis so
the multiply-adds are about twice the current model's (solved with the FLOP counter on the meta
device), trains every candidate with the same short budget, and keeps the one with the best
validation top-1 (ties: fewer FLOPs). Optionally the axis expanded last is then contracted until
the model fits a target GFLOPs. Every candidate is one line of ``OUT/trajectory.jsonl``; a rerun
reads finished candidates back instead of training them again.

Axis semantics follow the paper: ``t`` samples a longer clip (more frames, same stride); ``tau``
raises the frame rate (more frames over the same duration ``gamma_t * gamma_tau``, so it needs a
stride above 1 to start from). The other four change one factor of :class:`X3DFactors`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from vidact.errors import UsageError, VidactError
from vidact.io.atomic import atomic_write_text
from vidact.models.x3d import X3DFactors, x3d_from_factors

# X2D, the paper's starting point: one frame, 112 px, width 12/24/48/96, 2.25 bottleneck, 11 blocks.
# The stride (16) sets the clip duration that the frame-rate axis keeps while it adds frames.
X2D = X3DFactors(gamma_t=1, gamma_tau=16, gamma_s=112, gamma_w=1.0, gamma_b=2.25, gamma_d=1.0)
TRAJECTORY, PLOT, SETTINGS, COST_CACHE = "trajectory.jsonl", "trajectory.png", "search.json", "flops_cache.json"
# Train-config keys that the search sets itself (per candidate) and so cannot be overridden.
SEARCH_KEYS = ("arch", "data", "out", "frames", "size", "stride", "epochs", "num_classes", "width_mult")
INPUT_ARCH = "x3d-xs"  # whose registry entry gives the input modality/channels (frames/size/stride: the factors)


# --------------------------------------------------------------------------- axes
@dataclass(frozen=True)
class Axis:
    """One expansion axis: the factor its grid runs over, grid spacing and range, FLOPs exponent (first guess)."""

    name: str
    label: str
    factor: str
    step: float
    minimum: float
    maximum: float
    exponent: float

    def value(self, factors: X3DFactors) -> float:
        return getattr(factors, self.factor)

    def index(self, value: float) -> int:
        """The grid index at or just below ``value``."""
        return int(math.floor(value / self.step + 1e-9))

    def at(self, k: int) -> float | int:
        return int(round(k * self.step)) if float(self.step).is_integer() else round(k * self.step, 6)


AXES: dict[str, Axis] = {
    a.name: a
    for a in (
        Axis("t", "temporal duration (X-Temporal)", "gamma_t", 1, 1, 256, 1.0),
        Axis("tau", "frame rate (X-Fast)", "gamma_t", 1, 1, 256, 1.0),
        Axis("s", "spatial resolution (X-Spatial)", "gamma_s", 8, 32, 1024, 2.0),
        Axis("w", "width (X-Width)", "gamma_w", 0.05, 0.25, 16.0, 2.0),
        Axis("b", "bottleneck width (X-Bottleneck)", "gamma_b", 0.05, 0.25, 16.0, 1.0),
        Axis("d", "depth (X-Depth)", "gamma_d", 0.05, 0.05, 16.0, 1.0),
    )
}


def set_axis(factors: X3DFactors, axis: str, value: float) -> X3DFactors:
    """``factors`` moved along ``axis`` to ``value`` (for ``t`` and ``tau``: the new frame count).

    ``tau`` keeps the clip duration ``gamma_t * gamma_tau`` and sets the stride to fit it.
    """
    if axis == "t":
        return replace(factors, gamma_t=int(value))
    if axis == "tau":
        duration = factors.gamma_t * factors.gamma_tau
        return replace(factors, gamma_t=int(value), gamma_tau=max(1, int(duration / int(value) + 0.5)))
    if axis == "s":
        return replace(factors, gamma_s=int(value))
    if axis in ("w", "b", "d"):
        return replace(factors, **{AXES[axis].factor: round(float(value), 6)})
    raise UsageError(f"unknown axis {axis!r} (use {', '.join(AXES)})")


def axis_range(factors: X3DFactors, axis: str) -> tuple[int, int]:
    """Grid indices ``axis`` may take from ``factors`` (``tau``: up to one frame per source frame)."""
    ax = AXES[axis]
    hi = ax.index(ax.maximum)
    if axis == "tau":
        hi = min(hi, factors.gamma_t * factors.gamma_tau)
    return ax.index(ax.minimum), hi


# --------------------------------------------------------------------------- cost
@dataclass(frozen=True)
class Cost:
    """Multiply-adds (the papers' "FLOPs") and parameters of one network."""

    macs: int
    params: int

    @property
    def gflops(self) -> float:
        return self.macs / 1e9


def count_x3d(factors: X3DFactors, num_classes: int, in_channels: int = 3) -> Cost:
    """Count the X3D at ``factors`` on the meta device with :func:`vidact.profile.flops.count_flops`."""
    from vidact.profile.flops import count_flops

    with torch.device("meta"):
        model = x3d_from_factors(factors, num_classes=num_classes, in_channels=in_channels)
        clip = torch.empty(1, in_channels, factors.gamma_t, factors.gamma_s, factors.gamma_s)
    report = count_flops(model, clip)
    return Cost(report.macs, report.params)


def structure_key(factors: X3DFactors) -> str:
    """What the cost depends on: input frames and size, and the layer widths and depths."""
    return (
        f"{factors.gamma_t}x{factors.gamma_s}|{factors.stem_width()}|{factors.stage_widths()}|"
        f"{factors.inner_widths()}|{factors.stage_depths()}"
    )


class CostModel:
    """Cost of the X3D at given factors, cached per architecture (and on disk when ``path`` is given)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        path: str | Path | None = None,
        count: Callable[[X3DFactors, int, int], Cost] = count_x3d,
    ):
        self.num_classes, self.in_channels, self.count = num_classes, in_channels, count
        self.path = Path(path) if path is not None else None
        self.cache: dict[str, Cost] = {}
        self.counted = 0
        if self.path is not None and self.path.is_file():
            try:
                stored = json.loads(self.path.read_text(encoding="utf-8"))
                self.cache = {k: Cost(int(v[0]), int(v[1])) for k, v in stored.items()}
            except (ValueError, TypeError, IndexError):
                self.cache = {}  # a damaged cache is only lost time: count again

    def __call__(self, factors: X3DFactors) -> Cost:
        key = f"{self.num_classes}|{self.in_channels}|{structure_key(factors)}"
        if key not in self.cache:
            self.cache[key] = self.count(factors, self.num_classes, self.in_channels)
            self.counted += 1
        return self.cache[key]

    def save(self) -> None:
        if self.path is not None:
            atomic_write_text(self.path, json.dumps({k: [c.macs, c.params] for k, c in self.cache.items()}))


# --------------------------------------------------------------------------- solving for a FLOPs ratio
def _bracket(value_at: Callable[[int], float], below: int, above: int, goal: float) -> tuple[int, int]:
    """Shrink ``value_at(below) < goal <= value_at(above)`` (non-decreasing) to adjacent indices.

    Log-log interpolation, alternating with bisection so flat stretches (depth, width rounding)
    cannot stall it.
    """
    turn = 0
    while above - below > 1:
        lo_v, hi_v = value_at(below), value_at(above)
        mid = (below + above) // 2
        if turn % 2 == 0 and lo_v > 0 and hi_v > lo_v and below > 0:
            frac = math.log(goal / lo_v) / math.log(hi_v / lo_v)
            mid = int(round(math.exp(math.log(below) + frac * (math.log(above) - math.log(below)))))
        mid = min(max(mid, below + 1), above - 1)
        if value_at(mid) >= goal:
            above = mid
        else:
            below = mid
        turn += 1
    return below, above


def _first_reaching(
    value_at: Callable[[int], float], start: int, hi: int, goal: float, exponent: float
) -> tuple[int, int | None]:
    """Walk up from ``start`` (below ``goal``) to ``(below, above)`` around ``goal``; ``above`` is None
    when even ``hi`` falls short. Each guess assumes value ~ index ** exponent (measured once possible)."""
    below = start
    while below < hi:
        v = value_at(below)
        if start > 0 and below > start and v > value_at(start):
            exponent = math.log(v / value_at(start)) / math.log(below / start)
        guess = math.ceil(below * (goal / v) ** (1.0 / exponent)) if exponent > 1e-6 and below > 0 else 2 * below
        nxt = min(max(guess, below + 1), hi)
        if value_at(nxt) >= goal:
            return below, nxt
        below = nxt
    return below, None


def expand(factors: X3DFactors, axis: str, cost: CostModel, goal: float = 2.0) -> tuple[X3DFactors, float] | None:
    """``factors`` expanded along ``axis`` so its FLOPs are closest to ``goal`` x the current (log scale).

    Returns the expanded factors and the ratio reached, or None when the axis cannot grow.
    """
    ax = AXES[axis]
    base = cost(factors).macs
    k0 = ax.index(ax.value(factors))
    _, hi = axis_range(factors, axis)
    if k0 >= hi:
        return None

    def macs_at(k: int) -> float:
        return base if k <= k0 else cost(set_axis(factors, axis, ax.at(k))).macs

    below, above = _first_reaching(macs_at, k0, hi, goal * base, ax.exponent)
    if above is None:
        pick = below
    else:
        below, above = _bracket(macs_at, below, above, goal * base)
        pick = (
            above if below <= k0 else min((below, above), key=lambda k: (abs(math.log(macs_at(k) / (goal * base))), k))
        )
    if pick <= k0:
        return None
    out = set_axis(factors, axis, ax.at(pick))
    return out, cost(out).macs / base


def contract(factors: X3DFactors, axis: str, cost: CostModel, target_macs: int) -> X3DFactors:
    """The largest value of ``axis`` (at most the current) whose model costs at most ``target_macs``."""
    ax = AXES[axis]
    k0 = ax.index(ax.value(factors))
    lo, _ = axis_range(factors, axis)
    if cost(factors).macs <= target_macs:
        return factors

    def macs_at(k: int) -> float:
        return cost(factors).macs if k >= k0 else cost(set_axis(factors, axis, ax.at(k))).macs

    if macs_at(lo) > target_macs:
        smallest = cost(set_axis(factors, axis, ax.at(lo))).gflops
        raise UsageError(
            f"cannot contract {ax.label} to {target_macs / 1e9:.4g} GFLOPs: even "
            f"{ax.factor}={ax.at(lo)} costs {smallest:.4g} GFLOPs"
        )
    below, _ = _bracket(macs_at, lo, k0, target_macs + 1)
    return set_axis(factors, axis, ax.at(below))


# --------------------------------------------------------------------------- budget and training
@dataclass(frozen=True)
class Budget:
    """Training per candidate: whole epochs, or a fixed number of iterations (one shortened epoch)."""

    epochs: int = 0
    iterations: int = 0

    def __str__(self) -> str:
        return f"{self.iterations}it" if self.iterations else f"{self.epochs}ep"


def parse_budget(text: str | int) -> Budget:
    """``"2"`` or ``"2ep"`` -> 2 epochs; ``"30it"`` -> 30 iterations."""
    m = re.fullmatch(r"\s*(\d+)\s*(ep|epochs?|it|iters?|iterations?)?\s*", str(text).lower())
    if not m or int(m.group(1)) < 1:
        raise UsageError(f"budget must look like 2 or 2ep (epochs) or 30it (iterations), not {text!r}")
    n, unit = int(m.group(1)), m.group(2) or "ep"
    return Budget(iterations=n) if unit.startswith("it") else Budget(epochs=n)


@dataclass
class SearchConfig:
    """Everything one search needs; the fields in :meth:`fingerprint` must match to resume a search."""

    data: str
    out: str = "runs/x3d-expand"
    steps: int = 3
    budget: str = "1ep"
    target_gflops: float | None = None
    seed: int = 0
    base: X3DFactors = X2D
    goal_ratio: float = 2.0
    axes: tuple[str, ...] = tuple(AXES)
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 0.002
    device: str = "auto"
    threads: int = 0  # torch CPU threads during the search; 0 = torch's default
    overrides: tuple[str, ...] = ()

    def validate(self) -> SearchConfig:
        parse_budget(self.budget)
        if self.steps < 1:
            raise UsageError(f"steps must be at least 1, got {self.steps}")
        if not self.goal_ratio > 1.0:
            raise UsageError(f"the FLOPs ratio per step must be above 1, got {self.goal_ratio}")
        if self.threads < 0:
            raise UsageError(f"threads must be >= 0, got {self.threads}")
        if self.target_gflops is not None and not self.target_gflops > 0:
            raise UsageError(f"target GFLOPs must be positive, got {self.target_gflops}")
        unknown = [a for a in self.axes if a not in AXES]
        if unknown or not self.axes:
            raise UsageError(f"unknown axis {unknown[0] if unknown else '(none)'!r}; use {', '.join(AXES)}")
        for item in self.overrides:
            key = item.partition("=")[0].strip()
            if key in SEARCH_KEYS:
                raise UsageError(f"--set {key}=...: the search sets {key} itself")
        return self

    def fingerprint(self) -> dict:
        """What decides a candidate's result; a folder searched with other values cannot be resumed."""
        return {
            "data": str(Path(self.data).resolve()),
            "budget": str(parse_budget(self.budget)),
            "seed": self.seed,
            "base": self.base.to_dict(),
            "goal_ratio": self.goal_ratio,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "overrides": list(self.overrides),
        }


def candidate_train_config(cfg: SearchConfig, factors: X3DFactors, run_dir: str | Path):
    """The :class:`TrainConfig` of one candidate: the budget, the search's optimiser, the factors' input."""
    from vidact.train.config import TrainConfig, load_config

    budget = parse_budget(cfg.budget)
    base = TrainConfig(
        arch=INPUT_ARCH,
        data=str(cfg.data),
        out=str(run_dir),
        frames=factors.gamma_t,
        size=factors.gamma_s,
        stride=factors.gamma_tau,
        epochs=budget.epochs or 1,
        batch_size=cfg.batch_size,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        seed=cfg.seed,
        device=cfg.device,
        log_every=1_000_000,
    )
    return load_config(None, list(cfg.overrides), base=base)


@dataclass(frozen=True)
class TrainResult:
    top1: float
    seconds: float


def train_candidate(cfg: SearchConfig, factors: X3DFactors, run_dir: Path) -> TrainResult:
    """Train the X3D at ``factors`` with the search's budget through :func:`vidact.train.engine.fit`."""
    from vidact.train.engine import build_data, config_input, fit
    from vidact.train.samplers import IterationBudgetSampler

    tcfg = candidate_train_config(cfg, factors, run_dir)
    inp = config_input(tcfg)
    data = build_data(tcfg, inp)
    if data.val_set is None:
        raise UsageError(f"{cfg.data}: the search ranks candidates on a validation split; add {tcfg.val_split}.csv")
    model = x3d_from_factors(factors, num_classes=len(data.classes), in_channels=inp.channels, dropout=tcfg.dropout)
    budget = parse_budget(cfg.budget)
    sampler = (
        IterationBudgetSampler(len(data.train_set), tcfg.batch_size, budget.iterations, tcfg.seed)
        if budget.iterations
        else None
    )
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted candidate starts again
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "factors.json", json.dumps(factors.to_dict(), indent=2) + "\n")
    summary = fit(tcfg, data, progress=False, batch_sampler=sampler, model=model)
    return TrainResult(top1=float(summary["final_val_top1"]), seconds=float(summary["seconds"]))


# --------------------------------------------------------------------------- the trajectory file
def _factors_of(record: dict) -> X3DFactors:
    return X3DFactors(**record["factors"])


RECORD_KEYS = ("step", "kind", "axis", "factors", "gflops", "params", "flops_ratio", "top1", "train_seconds", "chosen")


class Trajectory:
    """``trajectory.jsonl``: one JSON object per trained candidate, appended as each finishes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict] = self._read()

    def _read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                X3DFactors(**rec["factors"])
                missing = [k for k in RECORD_KEYS if k not in rec]
                if missing:
                    raise KeyError(", ".join(missing))
                records.append(rec)
            except (ValueError, KeyError, TypeError) as exc:
                if n == len(lines):  # torn last line of a killed run: drop it
                    self._rewrite(records)
                    break
                raise VidactError(f"{self.path}:{n}: not a trajectory record ({exc})") from None
        return records

    def _rewrite(self, records: list[dict]) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in records))

    def find(self, step: int, kind: str, axis: str, factors: X3DFactors) -> dict | None:
        for rec in self.records:
            if (rec["step"], rec["kind"], rec["axis"]) == (step, kind, axis) and _factors_of(rec) == factors:
                return rec
        return None

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)

    def mark_chosen(self, chosen: list[dict]) -> None:
        """Set ``chosen`` on exactly the records of the chosen path and rewrite the file."""
        ids = {id(r) for r in chosen}
        for rec in self.records:
            rec["chosen"] = id(rec) in ids
        self._rewrite(self.records)


# --------------------------------------------------------------------------- the search
TrainFn = Callable[[X3DFactors, Path], TrainResult]


def choose(records: list[dict]) -> dict:
    """Best top-1; ties go to fewer FLOPs, then to the axis listed first."""
    order = list(AXES)
    return min(records, key=lambda r: (-r["top1"], r["gflops"], order.index(r["axis"]) if r["axis"] in order else -1))


def _check_settings(out: Path, cfg: SearchConfig) -> None:
    path = out / SETTINGS
    new = cfg.fingerprint()
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if isinstance(old, dict):
            for key, value in new.items():
                if key in old and old[key] != value:
                    raise UsageError(
                        f"{out}: holds a search with other settings ({key}: {old[key]} here, "
                        f"{value} now); use another --out or remove it"
                    )
    atomic_write_text(path, json.dumps(new, indent=2) + "\n")


def default_cost_model(cfg: SearchConfig) -> CostModel:
    """Counts for the data set's classes and the clip's channels, cached in ``OUT/flops_cache.json``."""
    from vidact.data.annotations import load_dataset_dir
    from vidact.train.engine import config_input

    channels = config_input(candidate_train_config(cfg, cfg.base, cfg.out)).channels
    return CostModel(len(load_dataset_dir(cfg.data).classes), channels, path=Path(cfg.out) / COST_CACHE)


def run_search(
    cfg: SearchConfig,
    train_fn: TrainFn | None = None,
    cost: CostModel | None = None,
    on_event: Callable[[str, dict], None] | None = None,
) -> dict:
    """Run (or resume) the search; returns the summary. ``train_fn(factors, run_dir)`` defaults to
    :func:`train_candidate`; ``on_event(kind, info)`` reports ``plan``, ``start``, ``done`` and ``skip``."""
    cfg.validate()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _search(cfg, train_fn, cost, on_event)
    finally:
        torch.set_num_threads(threads)


def _search(
    cfg: SearchConfig, train_fn: TrainFn | None, cost: CostModel | None, on_event: Callable[[str, dict], None] | None
) -> dict:
    from vidact.search.plot import plot_trajectory

    out = Path(cfg.out)
    started = time.perf_counter()
    if train_fn is None:
        if not Path(cfg.data).is_dir():
            raise UsageError(f"{cfg.data}: data folder not found")
        train_fn = lambda factors, run_dir: train_candidate(cfg, factors, run_dir)  # noqa: E731
    if cost is None:
        cost = default_cost_model(cfg)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, cfg)
    traj = Trajectory(out / TRAJECTORY)
    emit = on_event or (lambda kind, info: None)
    emit("plan", {"candidates": 1 + cfg.steps * len(cfg.axes) + (1 if cfg.target_gflops else 0)})
    counts = {"trained": 0, "reused": 0}

    def evaluate(step: int, kind: str, axis: str, factors: X3DFactors, ratio: float) -> dict:
        rec = traj.find(step, kind, axis, factors)
        info = {"step": step, "kind": kind, "axis": axis, "factors": factors.to_dict()}
        if rec is not None:
            counts["reused"] += 1
            emit("done", {**info, "reused": True, "top1": rec["top1"]})
            return rec
        emit("start", info)
        c = cost(factors)
        cost.save()
        result = train_fn(factors, out / "runs" / f"step{step}-{kind}-{axis}")
        rec = {
            "step": step,
            "kind": kind,
            "axis": axis,
            "factors": factors.to_dict(),
            "gflops": c.gflops,
            "params": c.params,
            "flops_ratio": round(ratio, 4),
            "top1": result.top1,
            "train_seconds": round(result.seconds, 3),
            "chosen": kind == "base",
        }
        traj.append(rec)
        counts["trained"] += 1
        emit("done", {**info, "reused": False, "top1": result.top1})
        return rec

    path = [evaluate(0, "base", "base", cfg.base, 1.0)]
    skipped: list[dict] = []
    current = cfg.base
    for step in range(1, cfg.steps + 1):
        results = []
        for axis in cfg.axes:
            grown = expand(current, axis, cost, cfg.goal_ratio)
            if grown is None:
                skipped.append({"step": step, "axis": axis, "reason": f"{AXES[axis].label} cannot grow further"})
                emit("skip", skipped[-1])
                continue
            results.append(evaluate(step, "expand", axis, *grown))
        if not results:
            raise VidactError(f"step {step}: no axis can be expanded from {current}")
        path.append(choose(results))
        current = _factors_of(path[-1])
        traj.mark_chosen(path)

    contraction = None
    if cfg.target_gflops is not None and cost(current).macs > cfg.target_gflops * 1e9:
        last = path[-1]
        shrunk = contract(current, last["axis"], cost, int(cfg.target_gflops * 1e9))
        ratio = cost(shrunk).macs / cost(current).macs
        contraction = evaluate(cfg.steps + 1, "contract", last["axis"], shrunk, ratio)
        path.append(contraction)
        traj.mark_chosen(path)
    cost.save()
    plot_trajectory(traj.records, out / PLOT)
    return {
        "out": str(out),
        "steps": cfg.steps,
        "budget": str(parse_budget(cfg.budget)),
        "goal_ratio": cfg.goal_ratio,
        "target_gflops": cfg.target_gflops,
        "path": [_path_entry(r) for r in path],
        "final": _path_entry(path[-1]),
        "contraction": None if contraction is None else _path_entry(contraction),
        "skipped": skipped,
        "candidates": len(traj.records),
        "trained": counts["trained"],
        "reused": counts["reused"],
        "flop_counts": cost.counted,
        "seconds": round(time.perf_counter() - started, 2),
        "trajectory": str(out / TRAJECTORY),
        "plot": str(out / PLOT),
    }


def _path_entry(rec: dict) -> dict:
    return {k: rec[k] for k in RECORD_KEYS if k != "chosen"}


def path_to(target: X3DFactors, base: X3DFactors = X2D) -> list[tuple[str, float]]:
    """Axis moves from ``base`` to ``target``: ``t`` to the duration, ``tau`` to the frame count, then s, w, b, d.

    Replaying them with :func:`replay` gives ``target`` when the frame-rate move's rounded stride
    comes out as ``target.gamma_tau`` -- true for every X3D variant from :data:`X2D`.
    """
    frames_at_base_stride = max(1, int(target.gamma_t * target.gamma_tau / base.gamma_tau + 0.5))
    moves: list[tuple[str, float]] = [("t", frames_at_base_stride), ("tau", target.gamma_t)]
    moves += [(axis, getattr(target, AXES[axis].factor)) for axis in ("s", "w", "b", "d")]
    return moves


def replay(moves: list[tuple[str, float]], base: X3DFactors = X2D) -> X3DFactors:
    """Apply ``set_axis`` moves in order from ``base``."""
    factors = base
    for axis, value in moves:
        factors = set_axis(factors, axis, value)
    return factors


__all__ = [
    "AXES",
    "X2D",
    "Axis",
    "Budget",
    "Cost",
    "CostModel",
    "SearchConfig",
    "TrainResult",
    "Trajectory",
    "axis_range",
    "candidate_train_config",
    "choose",
    "contract",
    "count_x3d",
    "default_cost_model",
    "expand",
    "parse_budget",
    "path_to",
    "replay",
    "run_search",
    "set_axis",
    "structure_key",
    "train_candidate",
]
