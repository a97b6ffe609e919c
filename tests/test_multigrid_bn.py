"""Sub-batch BatchNorm: per-split normalisation and whole-batch running statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidact.train.subbatch_bn import (
    SubBatchNorm2d,
    SubBatchNorm3d,
    aggregate_split_stats,
    convert_sub_batch_norm,
)


def _affine_bn(bn: nn.Module, C: int) -> None:
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 1.5, C))
        bn.bias.copy_(torch.linspace(-0.2, 0.3, C))


def _reference(x: torch.Tensor, splits: list[torch.Tensor], weight, bias, eps=1e-5) -> torch.Tensor:
    """Plain BatchNorm (training mode) applied to each split alone."""
    y = torch.empty_like(x)
    for idx in splits:
        y[idx] = F.batch_norm(x[idx], None, None, weight, bias, True, 0.0, eps)
    return y


@pytest.mark.parametrize("clips", [24, 20, 17])
def test_sub_batch_bn_equals_plain_bn_per_split(clips):
    torch.manual_seed(0)
    x = torch.randn(clips, 4, 2, 3, 3) * 3 + 1
    bn = SubBatchNorm3d(4, base=8)
    _affine_bn(bn, 4)
    y = bn(x)
    k = clips // 8  # 3, 2, 2 splits; clip i in split i % k
    splits = [torch.arange(m, clips, k) for m in range(k)]
    torch.testing.assert_close(y, _reference(x, splits, bn.weight, bn.bias), rtol=1e-5, atol=1e-5)


def test_channels_last_input_keeps_its_layout_and_values():
    torch.manual_seed(2)
    x = torch.randn(16, 4, 2, 3, 3) * 2 - 1
    bn = SubBatchNorm3d(4, base=8)
    _affine_bn(bn, 4)
    y = bn(x.contiguous(memory_format=torch.channels_last_3d))
    assert y.is_contiguous(memory_format=torch.channels_last_3d)
    splits = [torch.arange(m, 16, 2) for m in range(2)]
    torch.testing.assert_close(y, _reference(x, splits, bn.weight, bn.bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("clips", [32, 17])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_stats_equal_bn_over_whole_batch(momentum, clips):
    torch.manual_seed(1)
    sub, plain = SubBatchNorm3d(3, base=8, momentum=momentum), nn.BatchNorm3d(3, momentum=momentum)
    for step in range(3):
        x = torch.randn(clips, 3, 2, 4, 4) * (step + 1) + step
        sub(x)
        plain(x)
    torch.testing.assert_close(sub.running_mean, plain.running_mean)
    torch.testing.assert_close(sub.running_var, plain.running_var)
    assert int(sub.num_batches_tracked) == 3


def test_aggregate_of_unequal_splits_equals_concatenation():
    torch.manual_seed(2)
    parts = [torch.randn(n, 5) * s + s for n, s in [(7, 1.0), (3, 2.0), (12, 0.5)]]
    means = torch.stack([p.mean(0) for p in parts])
    variances = torch.stack([p.var(0) for p in parts])
    counts = torch.tensor([7.0, 3.0, 12.0])
    mean, var = aggregate_split_stats(means, variances, counts)
    whole = torch.cat(parts)
    torch.testing.assert_close(mean, whole.mean(0))
    torch.testing.assert_close(var, whole.var(0))


def test_gradients_match_per_split_bn():
    torch.manual_seed(3)
    x = torch.randn(16, 3, 2, 3, 3, requires_grad=True)
    bn = SubBatchNorm3d(3, base=8)
    _affine_bn(bn, 3)
    (bn(x) ** 3).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    w, b = bn.weight.detach().clone().requires_grad_(True), bn.bias.detach().clone().requires_grad_(True)
    y_ref = torch.cat([F.batch_norm(x_ref[m::2], None, None, w, b, True) for m in range(2)])
    order = torch.cat([torch.arange(m, 16, 2) for m in range(2)])
    (y_ref**3).sum().backward()
    torch.testing.assert_close(x.grad[order], x_ref.grad[order])
    torch.testing.assert_close(bn.weight.grad, w.grad)
    torch.testing.assert_close(bn.bias.grad, b.grad)


def test_small_batches_and_eval_are_plain_bn():
    torch.manual_seed(4)
    sub, plain = SubBatchNorm3d(2, base=8), nn.BatchNorm3d(2)
    x = torch.randn(15, 2, 2, 3, 3)  # 15 // 8 = 1 split: whole-batch BN
    torch.testing.assert_close(sub(x), plain(x))
    sub.eval(), plain.eval()
    x = torch.randn(40, 2, 2, 3, 3)
    torch.testing.assert_close(sub(x), plain(x))


class _Net(nn.Module):
    """A 3D block plus a 2D head that folds frames into the batch."""

    def __init__(self):
        super().__init__()
        self.conv3d = nn.Conv3d(3, 4, 3, padding=1)
        self.bn3d = nn.BatchNorm3d(4)
        self.conv2d = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x):
        x = self.bn3d(self.conv3d(x))
        b, c, t, h, w = x.shape
        x = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W), clip-major
        return self.head(self.conv2d(x)).reshape(b, t, c, h, w)


def test_converter_swaps_layers_and_keeps_state():
    torch.manual_seed(5)
    net = _Net()
    net.train()
    net(torch.randn(8, 3, 2, 4, 4))  # give the BN layers non-trivial running stats
    net.eval()
    x = torch.randn(4, 3, 2, 4, 4)
    before = net(x)
    assert convert_sub_batch_norm(net, base=8) == 2
    assert type(net.bn3d) is SubBatchNorm3d and type(net.head[0]) is SubBatchNorm2d
    assert net.bn3d.base == 8 and not net.bn3d.training
    torch.testing.assert_close(net(x), before)
    assert convert_sub_batch_norm(net) == 0  # already converted


def test_folded_frames_keep_whole_clips_in_a_split():
    torch.manual_seed(6)
    net = _Net()
    convert_sub_batch_norm(net, base=8)
    net.train()
    x = torch.randn(16, 3, 3, 4, 4)  # 16 clips of 3 frames -> 2 splits of 8 clips
    captured = {}
    net.head[0].register_forward_hook(lambda m, inp, out: captured.update(inp=inp[0], out=out))
    net(x)
    assert net.head[0].clips == 16
    folded = captured["inp"]  # (48, C, H, W): clip b owns rows 3b..3b+2
    clip_of_row = torch.arange(48) // 3
    splits = [torch.nonzero(clip_of_row % 2 == m).flatten() for m in range(2)]
    bn = net.head[0]
    torch.testing.assert_close(captured["out"], _reference(folded, splits, bn.weight, bn.bias), rtol=1e-5, atol=1e-5)
