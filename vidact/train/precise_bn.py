"""Precise BatchNorm statistics: recompute the running mean and variance before evaluation.

During training the running statistics are an exponential average over recent batches. In a
multigrid run those batches come at other clip shapes than the evaluation shape (and the
weights keep moving), so the averages do not describe the network being evaluated; PySlowFast
therefore recomputes them ("precise BN", ``BN.USE_PRECISE_STATS``). Here the running buffers
are reset and refilled with the plain average of the statistics of ``num_batches`` training
batches at the full shape, with the weights frozen and every other layer (dropout) in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from vidact.runtime.device import to_device


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm of ``model`` that keeps running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def update_bn_stats(
    model: nn.Module, batches: Iterable[dict], num_batches: int, device: torch.device, *, channels_last: bool = False
) -> int:
    """Set every BatchNorm's running statistics to their average over ``num_batches`` batches.

    ``batches`` yields loader dicts with a ``"video"`` entry. Returns the batches used (0 when
    the model has no BatchNorm or ``num_batches`` is 0). Every module's train/eval mode is restored;
    in a model in training mode, a BatchNorm set to eval (frozen) keeps its statistics.
    """
    norms = [
        bn
        for bn in batch_norms(model)  # frozen ones stay (eval in a training model, or fine-tuning's)
        if (bn.training or not model.training) and not getattr(bn, "vidact_frozen", False)
    ]
    if not norms or num_batches <= 0:
        return 0
    modes = [(m, m.training) for m in model.modules()]
    momenta = [bn.momentum for bn in norms]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: every batch weighs the same
        bn.train()
    used = 0
    try:
        for batch in batches:
            if used >= num_batches:
                break
            model(to_device(batch["video"], device, channels_last))
            used += 1
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        for m, training in modes:
            m.training = training
    return used


@torch.no_grad()
def average_bn_stats_across_ranks(model: nn.Module) -> None:
    """Under DDP, make every rank's running statistics the mean over the ranks (each saw other clips)."""
    from vidact.runtime import distributed

    if not distributed.is_dist():
        return
    for bn in batch_norms(model):
        bn.running_mean.copy_(distributed.all_reduce_mean(bn.running_mean))
        bn.running_var.copy_(distributed.all_reduce_mean(bn.running_var))
