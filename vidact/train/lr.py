"""Learning-rate schedules as pure functions of the (fractional) epoch.

The engine calls the schedule before every iteration with ``epoch + i / iters_per_epoch``,
so the schedule has no state to save: resuming at (epoch, iteration) gives the same LR.
Multigrid (:mod:`vidact.train.multigrid`) stretches the same schedule over its phases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from vidact.errors import UsageError

SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class LRSchedule:
    """Linear warm-up from ``base_lr * warmup_start_factor``, then cosine, step or constant."""

    base_lr: float
    epochs: float
    kind: str = "cosine"  # cosine | step | constant
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1
    steps: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    min_lr: float = 0.0

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise UsageError(f"schedule={self.kind!r} is not one of {', '.join(SCHEDULES)}")
        if not self.epochs > 0:
            raise UsageError(f"an LR schedule needs epochs > 0, got {self.epochs}")

    @classmethod
    def from_config(cls, cfg) -> LRSchedule:
        return cls(
            base_lr=cfg.lr,
            epochs=cfg.epochs,
            kind=cfg.schedule,
            warmup_epochs=cfg.warmup_epochs,
            warmup_start_factor=cfg.warmup_start_factor,
            steps=tuple(cfg.lr_steps),
            gamma=cfg.lr_gamma,
            min_lr=cfg.min_lr,
        )

    def main_lr(self, epoch: float) -> float:
        """The schedule without warm-up."""
        if self.kind == "constant":
            return self.base_lr
        if self.kind == "step":
            return self.base_lr * self.gamma ** sum(1 for s in self.steps if epoch >= s)
        progress = min(max(epoch / self.epochs, 0.0), 1.0)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def __call__(self, epoch: float) -> float:
        """LR at fractional ``epoch`` (0 = first iteration)."""
        lr = self.main_lr(epoch)
        if epoch < self.warmup_epochs:
            # Blend from the start value to where the main schedule is at the end of warm-up.
            start = self.base_lr * self.warmup_start_factor
            end = self.main_lr(self.warmup_epochs)
            lr = start + (end - start) * epoch / self.warmup_epochs
        return lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every parameter group (times the group's ``lr_scale`` if set)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
