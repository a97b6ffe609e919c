"""The LR range test's rule on synthetic loss curves with known answers."""

from __future__ import annotations

import math

import pytest

from vidact.train.lr_finder import (
    BELOW_RISE,
    RISE,
    geometric_lrs,
    range_test,
    running_median,
    suggest_lr,
)


def _curve(lr: float, i: int) -> float:
    """Falls from 2.3 to 1.0 up to LR 0.1, doubles from there by LR 1; a ±3% wiggle and a single-step spike."""
    base = 2.3 - 1.3 * min(1.0, max(0.0, math.log10(lr / 1e-3) / 2)) if lr <= 0.1 else 1.0 * (lr / 0.1) ** 0.3
    return base * (1 + 0.03 * (-1) ** i) * (3.0 if i == 20 else 1.0)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_pick_is_the_lr_where_the_loss_rises_30_percent_above_its_lowest_over_the_optimizers_divisor(optimizer):
    lrs = geometric_lrs(1e-4, 10.0, 100)
    lr, rule = suggest_lr(lrs, [_curve(lr, i) for i, lr in enumerate(lrs)], BELOW_RISE[optimizer])
    # the curve is 1.0 at its lowest (LR 0.1) and reaches 1.3 at LR 0.1 * 1.3 ** (1 / 0.3) = 0.24; the ±3% wiggle
    # moves that by up to three steps of the sweep (12% each)
    rise = 0.1 * (1 + RISE) ** (1 / 0.3)
    assert lr == pytest.approx(rise / BELOW_RISE[optimizer], rel=0.4)
    assert "rose 30% above its lowest" in rule
    assert rule.endswith("; / 10") if optimizer == "adamw" else rule.endswith("at LR 0.305")


def test_sgd_takes_the_rise_and_adamw_a_tenth_of_it():
    assert BELOW_RISE == {"sgd": 1.0, "adamw": 10.0}


def test_the_pick_does_not_depend_on_the_number_of_steps():
    picks = []
    for steps in (30, 60, 100):
        lrs = geometric_lrs(1e-4, 10.0, steps)
        picks.append(suggest_lr(lrs, [_curve(lr, 1) for lr in lrs])[0])  # no wiggle: a lag would show
    assert max(picks) / min(picks) < 10 ** (5 / 29)  # within one step of the coarsest sweep


def test_a_loss_that_never_rises_picks_nothing_and_says_so():
    lrs = geometric_lrs(1e-4, 1.0, 40)
    lr, rule = suggest_lr(lrs, [2.0 - 0.01 * i for i in range(40)])
    assert lr is None and rule == "the loss never rose 30% above its lowest over 40 steps up to LR 1"


def test_a_single_spike_is_not_a_rise():
    assert running_median([1.0, 1.0, 9.0, 1.0, 1.0]) == [1.0, 1.0, 1.0, 1.0, 1.0]
    lrs = geometric_lrs(1e-3, 1.0, 20)
    losses = [1.0] * 20
    losses[5] = 5.0
    assert suggest_lr(lrs, losses)[0] is None


def test_the_sweep_stops_at_divergence():
    lrs = geometric_lrs(1e-4, 10.0, 50)
    calls = []

    def step(lr: float) -> float:
        calls.append(lr)
        return 2.0 if lr < 1.0 else (math.inf if lr > 3.0 else 2.0 * (lr / 0.5) ** 4)

    test = range_test(step, lrs, below=2.0)
    assert test.stopped.startswith("loss average above 4x its minimum") or test.stopped.startswith("loss not finite")
    assert max(test.lrs) < 3.0 and len(calls) < 50
    # the blow-up is the rise when the median of the last steps cannot show it
    assert test.lr == pytest.approx(max(test.lrs) / 2.0) and "blew up" in test.rule
    assert test.to_dict()["curve"][0] == [1e-4, 2.0]
