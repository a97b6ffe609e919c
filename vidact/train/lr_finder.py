"""The LR range test (Smith 2017, "Cyclical Learning Rates"; as fast.ai's and Lightning's LR finders).

Train from the initial weights with the LR growing geometrically every step; stop once the loss
is not finite or its exponential moving average exceeds ``DIVERGENCE`` times its minimum (as
fast.ai does). The rule that picks the LR, applied to the finished sweep: smooth the losses with
a centred running median of ``WINDOW`` steps (no lag, unlike a moving average, so the answer does
not shift with the number of steps); find the first LR where the smoothed loss rises ``RISE``
above its lowest value so far (Smith's point where the loss "starts to get ragged", the largest
LR that still trains); pick it divided by ``BELOW_RISE`` of the optimizer: SGD takes it as it is
(the LR a run is given is its schedule's peak, after a warm-up, the role of Smith's maximum LR;
BatchNorm's scale invariance lets SGD ride out a transient rise), AdamW a tenth of it (its
per-weight steps do not shrink as the weights grow; measured on c3d-bn 1/8 with AdamW on the
synthetic ``dots`` set, the rise came at 6e-3, and 3e-3 and 6e-3 left the run at chance where
1e-3 reached 82%; X3D-XS with SGD rose at 0.17, and LR 0.2 ended above 0.086). A small network on a few hundred
clips barely lowers its loss within the sweep, so the rise is the test's clearest signal there,
where the minimum of a flat, noisy loss (fast.ai's ``lr_min`` rule) falls anywhere. A sweep
stopped by a blow-up the median cannot show yet (its last step or two) takes the blow-up as the
rise. When the loss never rose within the sweep the test says so and picks nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

SMOOTHING = 0.9  # EMA factor of the loss for the stop (fast.ai uses 0.98 over 100 steps; the probe has fewer)
DIVERGENCE = 4.0  # stop when the EMA of the loss exceeds this many times its minimum
WINDOW = 5  # centred running median of the rule
RISE = 0.3  # the rise: the smoothed loss 30% above its lowest value so far
BELOW_RISE = {"sgd": 1.0, "adamw": 10.0}  # the pick: the LR of the rise / this, per optimizer
RANGES = {"sgd": (1e-4, 10.0), "adamw": (1e-6, 1.0)}  # the sweep per optimizer


def geometric_lrs(start: float, end: float, steps: int) -> list[float]:
    """``steps`` LRs from ``start`` to ``end``, evenly spaced in log."""
    if steps < 2 or not 0 < start < end:
        raise ValueError(f"need steps >= 2 and 0 < start < end, got {steps}, {start}, {end}")
    ratio = math.log(end / start) / (steps - 1)
    return [start * math.exp(ratio * i) for i in range(steps)]


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average of ``losses``."""
    out, avg = [], 0.0
    for i, value in enumerate(losses):
        avg = beta * avg + (1 - beta) * value
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def running_median(values: list[float], window: int = WINDOW) -> list[float]:
    """Centred running median (the window shrinks at the ends)."""
    half = window // 2
    out = []
    for i in range(len(values)):
        part = sorted(values[max(0, i - half) : i + half + 1])
        out.append(part[len(part) // 2] if len(part) % 2 else 0.5 * (part[len(part) // 2 - 1] + part[len(part) // 2]))
    return out


@dataclass
class RangeTest:
    """The sweep as run: LRs and losses per step, and the pick."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    stopped: str = ""  # why it ended before the last LR ("" = it ran them all)
    lr: float | None = None  # the pick (None: the loss never fell)
    rule: str = ""

    def to_dict(self) -> dict:
        return {
            "lr": self.lr,
            "rule": self.rule,
            "stopped": self.stopped,
            "curve": [[lr, loss] for lr, loss in zip(self.lrs, self.losses)],
        }


def suggest_lr(lrs: list[float], losses: list[float], below: float = 1.0) -> tuple[float | None, str]:
    """(the LR where the running median of the loss first rises ``RISE`` above its lowest value so far, divided
    by ``below``; the rule in words). None when it never rose."""
    smoothed = running_median(losses)
    lowest = math.inf
    for lr, loss in zip(lrs, smoothed):
        lowest = min(lowest, loss)
        if loss > (1 + RISE) * lowest:
            return lr / below, (
                f"the loss (running median of {WINDOW}) rose {100 * RISE:.0f}% above its lowest, {lowest:.3g}, "
                f"at LR {lr:.3g}" + (f"; / {below:g}" if below != 1 else "")
            )
    return (
        None,
        f"the loss never rose {100 * RISE:.0f}% above its lowest over {len(lrs)} steps"
        + (f" up to LR {lrs[-1]:.3g}" if lrs else ""),
    )


def range_test(step: Callable[[float], float], lrs: list[float], below: float = 1.0) -> RangeTest:
    """Call ``step(lr)`` (one training step at ``lr``, returning its loss) for each LR until the loss is not
    finite or its moving average exceeds ``DIVERGENCE`` x its minimum; then pick by :func:`suggest_lr` (the
    rise's LR / ``below``)."""
    test = RangeTest()
    best, average = math.inf, 0.0
    for i, lr in enumerate(lrs):
        loss = step(lr)
        if not math.isfinite(loss):
            test.stopped = f"loss not finite at LR {lr:.3g}"
            break
        test.lrs.append(lr)
        test.losses.append(loss)
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        current = average / (1 - SMOOTHING ** (i + 1))
        best = min(best, current)
        if i > 0 and current > DIVERGENCE * best:
            test.stopped = f"loss average above {DIVERGENCE:g}x its minimum at LR {lr:.3g}"
            break
    test.lr, test.rule = suggest_lr(test.lrs, test.losses, below)
    if test.lr is None and test.stopped and test.lrs:  # a blow-up in the last step or two: the median hides it
        test.lr = test.lrs[-1] / below
        test.rule = f"the loss blew up at LR {test.lrs[-1]:.3g} ({test.stopped})" + (
            f"; / {below:g}" if below != 1 else ""
        )
    return test
