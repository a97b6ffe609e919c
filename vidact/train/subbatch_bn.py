"""Sub-batch BatchNorm: BatchNorm statistics over a fixed base of clips, whatever the batch size.

Multigrid grows the mini-batch up to 32x; BatchNorm over the whole batch would then see
far more clips than in the plain run and generalise worse (Wu et al. 2020, Sec. 3.4). A
training batch of ``B`` clips is therefore cut into ``k = B // base`` splits (clip ``i``
goes to split ``i % k``, PySlowFast's layout) and every split is normalised with its own
mean and variance, exactly as a plain BatchNorm applied to that split alone.

The splits' statistics are aggregated (mean of split means; law of total variance) into the
module's running mean and variance at every training step, so they equal what
``nn.BatchNorm`` would record over the whole batch and evaluation uses them directly.
PySlowFast instead keeps per-split running buffers and aggregates them before evaluation,
which ties the module to a fixed number of splits and forces a model rebuild whenever the
batch size changes; here ``k`` follows each batch, so the model is never rebuilt.

Models that fold frames into the batch (2D nets, ``(B*T, C, H, W)``) are handled by
:func:`convert_sub_batch_norm`, which records the clip count of the model's input in a
forward pre-hook, so the splits still hold whole clips.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

BN_BASE = 8


class _SubBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics come from splits of ``base`` clips."""

    def __init__(
        self,
        num_features: int,
        base: int = BN_BASE,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        if base < 1:
            raise ValueError(f"base must be >= 1, got {base}")
        self.base = base
        self.clips: int | None = None  # clips in the model's input; set by the model's pre-hook
        self.pending: list | None = None  # split statistics held back by deferred_running_stats

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, base={self.base}"

    def num_splits(self, batch: int) -> int:
        """Splits for a batch of ``batch`` samples: clips // base (at least 1)."""
        clips = self.clips if self.clips and batch % self.clips == 0 else batch
        return max(1, clips // self.base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        splits = self.num_splits(x.shape[0]) if self.training else 1
        deferred = self.training and self.pending is not None
        if splits == 1 and not deferred:
            return super().forward(x)
        y, means, variances, counts = self._normalise_splits(x, splits)
        if deferred:
            self.pending.append((means.detach(), variances.detach(), counts))
        elif self.track_running_stats:
            self._update_running_stats(means, variances, counts)
        return y

    def fold_pending(self) -> None:
        """Fold the statistics held back since :func:`deferred_running_stats` began in one update."""
        pending, self.pending = self.pending, None
        if pending and self.track_running_stats:
            self._update_running_stats(*(torch.cat(parts) for parts in zip(*pending)))

    def _split_of_sample(self, n: int, splits: int) -> torch.Tensor:
        """Split index of every sample: its clip's index modulo ``splits``."""
        per_clip = n // self.clips if self.clips and n % self.clips == 0 else 1
        return (torch.arange(n) // per_clip) % splits

    def _normalise_splits(self, x: torch.Tensor, k: int):
        """Normalise (and scale and shift) each split by its own statistics; also return them.

        Returns (y, means, unbiased variances, counts), the statistics per split as (k, C).
        """
        n, c = x.shape[:2]
        stat_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        per_sample = x[0, 0].numel()
        one_per_clip = not self.clips or self.clips == n
        if one_per_clip and n % k == 0:
            # Fast path: view splits as channels, (n, C, ...) -> (n/k, k*C, ...); one batch_norm call.
            mean = torch.zeros(k * c, device=x.device, dtype=stat_dtype)
            var = torch.ones(k * c, device=x.device, dtype=stat_dtype)
            weight, bias = (self.weight.repeat(k), self.bias.repeat(k)) if self.affine else (None, None)
            y = F.batch_norm(x.reshape(n // k, k * c, *x.shape[2:]), mean, var, weight, bias, True, 1.0, self.eps)
            y = y.reshape(x.shape)
            if x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
                y = y.contiguous(memory_format=torch.channels_last_3d)  # keep the layout, as nn.BatchNorm3d does
            counts = torch.full((k,), float(n // k * per_sample), device=x.device, dtype=stat_dtype)
            return y, mean.view(k, c), var.view(k, c), counts
        owner = self._split_of_sample(n, k)  # on the CPU: no device sync, works on the meta device too
        y = torch.empty_like(x)
        means, variances, counts = [], [], []
        for split in range(k):
            idx = torch.nonzero(owner == split).flatten().to(x.device)
            mean = torch.zeros(c, device=x.device, dtype=stat_dtype)
            var = torch.ones(c, device=x.device, dtype=stat_dtype)
            y = y.index_copy(
                0, idx, F.batch_norm(x.index_select(0, idx), mean, var, self.weight, self.bias, True, 1.0, self.eps)
            )
            means.append(mean)
            variances.append(var)
            counts.append(float(len(idx) * per_sample))
        counts_t = torch.tensor(counts, device=x.device, dtype=stat_dtype)
        return y, torch.stack(means), torch.stack(variances), counts_t

    @torch.no_grad()
    def _update_running_stats(self, means: torch.Tensor, variances: torch.Tensor, counts: torch.Tensor) -> None:
        """Fold the split statistics into the running buffers as whole-batch BatchNorm would."""
        mean, var = aggregate_split_stats(means, variances, counts)
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(var.to(self.running_var.dtype), alpha=factor)


def is_sub_batch_norm(module: nn.Module) -> bool:
    """True for the sub-batch BatchNorm layers of this module."""
    return isinstance(module, _SubBatchNorm)


@contextmanager
def deferred_running_stats(model: nn.Module) -> Iterator[None]:
    """Forward passes over the micro-batches of one batch inside this block update the running
    statistics once, at its end, exactly as one forward pass of the whole batch would (the
    micro-batches being the batch's sub-batches)."""
    layers = [m for m in model.modules() if isinstance(m, _SubBatchNorm)]
    for m in layers:
        m.pending = []
    try:
        yield
    finally:
        for m in layers:
            m.fold_pending()


def aggregate_split_stats(
    means: torch.Tensor, variances: torch.Tensor, counts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-batch mean and unbiased variance from per-split (k, C) means and unbiased variances.

    ``counts`` holds the elements per channel of each split; the result equals the statistics
    of the concatenated splits (law of total variance).
    """
    w = (counts / counts.sum()).unsqueeze(1)
    mean = (w * means).sum(0)
    biased = variances * ((counts - 1) / counts).unsqueeze(1)
    total_biased = (w * (biased + (means - mean) ** 2)).sum(0)
    n = counts.sum()
    return mean, total_biased * n / (n - 1)


class SubBatchNorm2d(_SubBatchNorm, nn.BatchNorm2d):
    """:class:`nn.BatchNorm2d` with sub-batch statistics over ``base`` clips."""


class SubBatchNorm3d(_SubBatchNorm, nn.BatchNorm3d):
    """:class:`nn.BatchNorm3d` with sub-batch statistics over ``base`` clips."""


_SWAPS = ((nn.BatchNorm3d, SubBatchNorm3d), (nn.BatchNorm2d, SubBatchNorm2d))


def _swap(bn: nn.modules.batchnorm._BatchNorm, cls: type, base: int) -> _SubBatchNorm:
    ref = bn.weight if bn.weight is not None else bn.running_mean
    new = cls(
        bn.num_features,
        base,
        bn.eps,
        bn.momentum,
        bn.affine,
        bn.track_running_stats,
        device=ref.device if ref is not None else None,
        dtype=ref.dtype if ref is not None else None,
    )
    new.load_state_dict(bn.state_dict())
    new.train(bn.training)
    new._forward_pre_hooks.update(bn._forward_pre_hooks)  # e.g. a frozen layer's hook that keeps it in eval mode
    if getattr(bn, "vidact_frozen", False):
        new.vidact_frozen = True
    for p_old, p_new in zip(bn.parameters(), new.parameters()):
        p_new.requires_grad_(p_old.requires_grad)
    return new


def _replace(module: nn.Module, base: int) -> int:
    swapped = 0
    for name, child in module.named_children():
        for plain, sub in _SWAPS:
            if type(child) is plain:
                setattr(module, name, _swap(child, sub, base))
                swapped += 1
                break
        else:
            swapped += _replace(child, base)
    return swapped


def _record_clips(model: nn.Module, args) -> None:
    """Forward pre-hook: tell every sub-batch BN how many clips the input holds."""
    first = args[0] if args else None
    while isinstance(first, (list, tuple)) and first:
        first = first[0]
    clips = int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() > 0 else None
    for m in model.modules():
        if isinstance(m, _SubBatchNorm):
            m.clips = clips


def convert_sub_batch_norm(model: nn.Module, base: int = BN_BASE) -> int:
    """Swap every ``nn.BatchNorm3d``/``nn.BatchNorm2d`` in ``model`` (in place) for a sub-batch BN.

    Weights and running statistics are kept. Returns the number of layers swapped; when
    any were, a forward pre-hook on ``model`` records the clip count of each input.
    """
    if base < 1:
        raise ValueError(f"base must be >= 1, got {base}")
    swapped = _replace(model, base)
    if swapped and not getattr(model, "_vidact_sub_bn_hook", False):
        model.register_forward_pre_hook(_record_clips)
        model._vidact_sub_bn_hook = True
    return swapped
