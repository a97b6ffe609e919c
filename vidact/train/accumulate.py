"""Gradient accumulation: one optimizer step over a batch run as k micro-batches, one after another.

``--accumulate k --batch-size b`` trains with steps of ``k x b`` clips per process while only ``b``
are in memory at once. The batch sampler draws the whole step's batch (so the data order, the
augmentation and the LR schedule, which counts optimizer steps, are those of ``--batch-size k x b``)
and :func:`accumulate_gradients` cuts it as sub-batch BatchNorm cuts a batch into splits (clip
``i`` goes to micro-batch ``i mod k``). Each micro-batch is normalised by its own statistics and
the running statistics are folded in once per step
(:func:`vidact.train.subbatch_bn.deferred_running_stats`), so a step equals one step of the whole
batch with sub-batch BatchNorm of ``b`` clips; without BatchNorm it equals the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from vidact.runtime.wrap import find_ddp
from vidact.train.subbatch_bn import deferred_running_stats


def micro_batch(x, j: int, k: int):
    """Micro-batch ``j`` of ``k`` of a batch (a tensor, or a list of per-stream tensors): clips j, j+k, ..."""
    if isinstance(x, (list, tuple)):
        return [micro_batch(s, j, k) for s in x]
    return x[j::k]


def accumulate_gradients(
    model: nn.Module,
    x,
    y: torch.Tensor,
    k: int,
    loss_of: Callable[[object, torch.Tensor], torch.Tensor],
    *,
    after_micro_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Forward and backward the ``k`` micro-batches of ``(x, y)`` one at a time and leave in ``.grad`` the
    gradient of the batch's mean loss (added to what ``.grad`` held); return that mean loss, detached.

    ``x`` is a tensor or a list of per-stream tensors. ``loss_of(x, y)`` gives a micro-batch's mean loss
    (scaled, where a gradient scaler is on). Under DDP the gradients are all-reduced once, with the last
    micro-batch's backward. ``after_micro_batch(j)`` runs after micro-batch ``j``'s backward: the seam for
    measurements per micro-batch. ``k == 1`` is exactly one forward and backward of the batch.
    """
    n = len(y)
    if k == 1:
        loss = loss_of(x, y)
        loss.backward()
        if after_micro_batch is not None:
            after_micro_batch(0)
        return loss.detach()
    parts = [j for j in range(k) if j < n]  # a short last batch may hold fewer clips than k
    ddp = find_ddp(model)
    total = None
    with deferred_running_stats(model):
        for j in parts:
            ys = y[j::k]
            sync = ddp.no_sync() if ddp is not None and j != parts[-1] else contextlib.nullcontext()
            with sync:
                loss = loss_of(micro_batch(x, j, k), ys)
                (loss * (len(ys) / n)).backward()
            if after_micro_batch is not None:
                after_micro_batch(j)
            weighted = loss.detach() * len(ys)
            total = weighted if total is None else total + weighted
    return total / n
