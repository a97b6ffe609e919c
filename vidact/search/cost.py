"""The cost of an X3D (multiply-adds and parameters, counted on the meta device) and the solver that
finds how far to move along an axis for a given FLOPs ratio."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vidact.errors import UsageError
from vidact.io.atomic import atomic_write_text
from vidact.models.x3d import X3DFactors, x3d_from_factors
from vidact.search.axes import AXES, axis_range, set_axis


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
