"""Hooks on the training loop's steps: do something while a given step runs, or slow every step down."""

from __future__ import annotations

import time
from collections.abc import Callable

from vidact.train import engine


def at_step(step: int, action: Callable[[], None]) -> Callable[[], None]:
    """Run ``action`` while this process's ``step``-th training step starts (as its LR is set); returns the undo."""
    set_lr, calls = engine.set_lr, []

    def set_lr_with_action(optimizer, lr):
        calls.append(lr)
        if len(calls) == step:
            action()
        set_lr(optimizer, lr)

    engine.set_lr = set_lr_with_action
    return lambda: setattr(engine, "set_lr", set_lr)


def slow_steps(seconds: float) -> None:
    """Make every training step of this process last ``seconds`` longer (time for a test to act)."""
    if seconds:
        set_lr = engine.set_lr
        engine.set_lr = lambda optimizer, lr: (time.sleep(seconds), set_lr(optimizer, lr))
