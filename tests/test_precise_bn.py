"""Precise BatchNorm statistics: running buffers become the plain average over N batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidact.train.precise_bn import batch_norms, update_bn_stats


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(3, 4, 3, padding=1),
        nn.BatchNorm3d(4, momentum=0.1),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Conv3d(4, 2, 1),
        nn.BatchNorm3d(2),
    )


def _batches(n: int, seed: int = 1) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"video": torch.randn(3, 3, 2, 5, 5, generator=g) * (i + 1) + i} for i in range(n)]


def test_running_stats_are_the_average_of_batch_statistics():
    model = _model()
    batches = _batches(5)
    conv, bn = model[0], model[1]
    with torch.no_grad():
        acts = [conv(b["video"]) for b in batches[:3]]
    means = torch.stack([a.mean(dim=(0, 2, 3, 4)) for a in acts])
    variances = torch.stack([a.transpose(0, 1).reshape(4, -1).var(dim=1, unbiased=True) for a in acts])
    used = update_bn_stats(model, iter(batches), 3, torch.device("cpu"))
    assert used == 3  # stops after three of the five batches
    torch.testing.assert_close(bn.running_mean, means.mean(0))
    torch.testing.assert_close(bn.running_var, variances.mean(0))
    assert int(bn.num_batches_tracked) == 3


def test_state_momentum_and_rng_are_left_as_they_were():
    model = _model().train()
    rng = torch.get_rng_state()
    update_bn_stats(model, _batches(2), 2, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), rng)  # dropout stayed in eval mode: no random draws
    assert model.training and all(m.training for m in model.modules())
    assert [bn.momentum for bn in batch_norms(model)] == [0.1, 0.1]
    model.eval()
    update_bn_stats(model, _batches(2), 2, torch.device("cpu"))
    assert not any(m.training for m in model.modules())
    model.train()
    model[1].eval()  # a frozen BatchNorm stays frozen, statistics included
    frozen, other = model[1].running_mean.clone(), model[5].running_mean.clone()
    update_bn_stats(model, _batches(3, seed=5), 3, torch.device("cpu"))
    assert model.training and not model[1].training
    assert torch.equal(model[1].running_mean, frozen) and not torch.equal(model[5].running_mean, other)


def test_weights_do_not_change_and_eval_uses_new_stats():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "tracked" not in k}
    update_bn_stats(model, _batches(4), 4, torch.device("cpu"))
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert not torch.allclose(model[1].running_mean, torch.zeros(4))


@pytest.mark.parametrize("num_batches", [0, 3])
def test_nothing_to_do(num_batches):
    plain = nn.Sequential(nn.Conv3d(3, 2, 1), nn.ReLU())
    assert update_bn_stats(plain, _batches(3), num_batches, torch.device("cpu")) == 0
    model = _model()
    if num_batches == 0:
        assert update_bn_stats(model, _batches(3), 0, torch.device("cpu")) == 0
        assert torch.equal(model[1].running_mean, torch.zeros(4))
