"""X3D's expansion axes: what each one changes, its grid, and moving a network along it.

Axis semantics follow the paper: ``t`` samples a longer clip (more frames, same stride); ``tau``
raises the frame rate (more frames over the same duration ``gamma_t * gamma_tau``, so it needs a
stride above 1 to start from). The other four change one factor of :class:`X3DFactors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from vidact.errors import UsageError
from vidact.models.x3d import X3DFactors

# X2D, the paper's starting point: one frame, 112 px, width 12/24/48/96, 2.25 bottleneck, 11 blocks.
# The stride (16) sets the clip duration that the frame-rate axis keeps while it adds frames.
X2D = X3DFactors(gamma_t=1, gamma_tau=16, gamma_s=112, gamma_w=1.0, gamma_b=2.25, gamma_d=1.0)


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
