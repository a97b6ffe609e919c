"""What a training run changes and its checkpoint restores: the state, and the checkpoint's fields.

A training checkpoint (``RUN/last.pt``, ``RUN/best.pt``) holds ``arch``, ``classes``, ``config``,
``input`` (what :func:`vidact.runtime.build.model_from_checkpoint` needs), ``model``,
``optimizer``, ``scaler``, ``schedule``, ``rng`` and the position: ``epoch`` (finished),
``batch_in_epoch`` (finished in the running epoch), ``iteration`` (optimizer steps) and the running
epoch's loss so far (``epoch_loss_sum`` over ``epoch_clips``), plus ``best_top1`` and the ``metrics``
of the epoch (or, saved mid-epoch, of the epoch so far).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vidact.errors import CheckpointError, first_line
from vidact.runtime import distributed
from vidact.runtime.build import ResolvedInput
from vidact.runtime.checkpoint import (
    capture_rng_state,
    check_arch,
    check_classes,
    load_checkpoint,
    load_model_state,
    restore_rng_state,
)
from vidact.runtime.wrap import unwrap_model
from vidact.train.config import TrainConfig

LAST, BEST = "last.pt", "best.pt"


@dataclass
class TrainState:
    """What the loop changes and a checkpoint restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    epoch: int = 0  # epochs finished
    batch_in_epoch: int = 0  # batches finished in the running epoch
    iteration: int = 0  # optimizer steps in total
    best_top1: float = -1.0
    epoch_loss_sum: float = 0.0  # the running epoch's loss x clips so far (its mean survives a mid-epoch resume)
    epoch_clips: int = 0

    def position(self) -> str:
        """Where training stands: ``epoch 3, iteration 57 (step 417)``, or ``the start of epoch 3 (step 360)``."""
        if self.batch_in_epoch == 0:
            return f"the start of epoch {self.epoch + 1} (step {self.iteration})"
        return f"epoch {self.epoch + 1}, iteration {self.batch_in_epoch} (step {self.iteration})"


def checkpoint_fields(
    state: TrainState,
    cfg: TrainConfig,
    *,
    classes: list[str],
    inp: ResolvedInput,
    lr_at: Callable[[float], float],
    metrics: dict,
) -> dict:
    """Everything a training checkpoint holds, for :func:`vidact.runtime.checkpoint.save_checkpoint`."""
    return {
        "arch": cfg.arch,
        "classes": list(classes),
        "config": cfg.to_dict(),
        "input": inp.to_dict(),
        "model": unwrap_model(state.model).state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scaler": state.scaler.state_dict(),
        "schedule": {"epoch": float(state.epoch), "lr": float(lr_at(float(state.epoch)))},
        "rng": capture_rng_state(),
        "epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch,
        "iteration": state.iteration,
        "best_top1": float(state.best_top1),
        "epoch_loss_sum": float(state.epoch_loss_sum),
        "epoch_clips": int(state.epoch_clips),
        "metrics": metrics,
    }


def restore_state(state: TrainState, ckpt: dict, path: Path) -> None:
    """Load model, optimizer, scaler, counters and RNG states from a checkpoint of this run."""
    load_model_state(state.model, ckpt["model"], path)
    try:
        state.optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: optimizer state does not fit ({first_line(exc)}); was optimizer changed?"
        ) from None
    if ckpt.get("scaler"):
        state.scaler.load_state_dict(ckpt["scaler"])
    state.epoch, state.batch_in_epoch = int(ckpt["epoch"]), int(ckpt.get("batch_in_epoch", 0))
    state.iteration, state.best_top1 = int(ckpt["iteration"]), float(ckpt.get("best_top1", -1.0))
    state.epoch_loss_sum, state.epoch_clips = float(ckpt.get("epoch_loss_sum", 0.0)), int(ckpt.get("epoch_clips", 0))
    restore_rng_state(ckpt["rng"])


def resume_from_folder(state: TrainState, cfg: TrainConfig, classes: list[str], folder: Path) -> int | None:
    """Restore ``RUN/last.pt`` into ``state``; the epoch resumed from (None for a fresh run)."""
    last = folder / LAST
    if last.is_file():
        ckpt = load_checkpoint(last)
        check_arch(ckpt, cfg.arch, last)
        check_classes(ckpt, classes, last, cfg.data)
        restore_state(state, ckpt, last)
    return state.epoch if state.epoch or state.batch_in_epoch else None


def should_resume(requested: bool, run_dir: str | Path | None) -> bool:
    """``--resume``, or a group that torchrun restarted (``--max-restarts``) after a rank died: it continues
    from ``RUN/last.pt`` when there is one, with no human to add ``--resume``."""
    if requested or run_dir is None:
        return requested
    return distributed.launch_env().restart_count > 0 and (Path(run_dir) / LAST).is_file()


def resume_config(run_dir: str | Path) -> TrainConfig | None:
    """The config saved in ``RUN/last.pt`` (the base for ``--resume``), or None when there is none."""
    path = Path(run_dir) / LAST
    if not path.is_file():
        return None
    return TrainConfig.from_dict(load_checkpoint(path)["config"])
