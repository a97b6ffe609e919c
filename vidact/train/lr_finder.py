"""The LR range test (Smith 2017, "Cyclical Learning Rates"; as fast.ai's and Lightning's LR finders).

Train from the initial weights with the LR growing geometrically every step, smooth the loss
(bias-corrected exponential moving average), stop once it is not finite or exceeds
``DIVERGENCE`` times its minimum. The rule that picks the LR (fast.ai's ``lr_min``): the LR at
the minimum of the smoothed loss, divided by ten, i.e. an order of magnitude below where the
loss stops falling and starts to blow up. When the loss never fell (its minimum in the first
tenth of the sweep) the test says so and picks nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

SMOOTHING = 0.9  # EMA factor of the loss (fast.ai uses 0.98 over 100 steps; the probe has fewer)
DIVERGENCE = 4.0  # stop when the smoothed loss exceeds this many times its minimum
BELOW_MINIMUM = 10.0  # the pick: the LR at the smoothed minimum / this
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


@dataclass
class RangeTest:
    """The sweep as run: LRs and losses per step, and the pick."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    stopped: str = ""  # why it ended before the last LR ("" = it ran them all)
    lr: float | None = None  # the pick (None: the loss never fell)
    rule: str = ""

    @property
    def smoothed(self) -> list[float]:
        return smooth(self.losses)

    def to_dict(self) -> dict:
        return {
            "lr": self.lr,
            "rule": self.rule,
            "stopped": self.stopped,
            "curve": [[lr, loss] for lr, loss in zip(self.lrs, self.smoothed)],
        }


def suggest_lr(lrs: list[float], losses: list[float]) -> tuple[float | None, str]:
    """(the LR at the smoothed loss's minimum / 10, the rule in words); None when the minimum lies in the
    sweep's first tenth (the loss never fell)."""
    if not losses:
        return None, "no step of the range test finished"
    smoothed = smooth(losses)
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    if best < max(1, len(lrs) // 10):
        return None, f"the smoothed loss never fell below its start ({smoothed[0]:.3g}) over {len(lrs)} steps"
    lr = lrs[best] / BELOW_MINIMUM
    return lr, f"LR at the smoothed loss's minimum ({lrs[best]:.3g}, loss {smoothed[best]:.3g}) / {BELOW_MINIMUM:g}"


def range_test(step: Callable[[float], float], lrs: list[float]) -> RangeTest:
    """Call ``step(lr)`` (one training step at ``lr``, returning its loss) for each LR until the loss is not
    finite or the smoothed loss exceeds ``DIVERGENCE`` x its minimum; then pick by :func:`suggest_lr`."""
    test = RangeTest()
    best = math.inf
    for lr in lrs:
        loss = step(lr)
        if not math.isfinite(loss):
            test.stopped = f"loss not finite at LR {lr:.3g}"
            break
        test.lrs.append(lr)
        test.losses.append(loss)
        current = test.smoothed[-1]
        best = min(best, current)
        if len(test.losses) > 1 and current > DIVERGENCE * best:
            test.stopped = f"smoothed loss above {DIVERGENCE:g}x its minimum at LR {lr:.3g}"
            break
    test.lr, test.rule = suggest_lr(test.lrs, test.losses)
    return test
