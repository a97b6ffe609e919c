"""The FLOP counter: exact multiply-adds of hand-computed networks, the other buckets, per-layer sums."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vidact.profile.flops import count_flops, parse_views, profile_arch


class Tiny(nn.Module):
    """conv3d -> BN -> ReLU -> global pool -> linear, plus a batched matmul and an einsum."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm3d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        logits = self.fc(y.mean(dim=(2, 3, 4)))
        a = torch.ones(1, 3, 4, device=x.device)
        b = torch.ones(1, 4, 6, device=x.device)
        return logits, torch.bmm(a, b), torch.einsum("bij,bjk->bik", a, b)


def test_hand_computed_network_is_exact():
    report = count_flops(Tiny(), torch.randn(1, 3, 4, 8, 8))
    conv = 8 * (4 * 8 * 8) * (3 * 3 * 3 * 3)  # out channels x out positions x (in x kernel)
    linear = 8 * 5
    matmul = 3 * 4 * 6  # once for bmm, once for einsum
    assert report.macs == conv + linear + 2 * matmul
    assert report.macs_by_op["convolution"] == conv
    assert report.macs_by_op["addmm"] == linear
    assert report.macs_by_op["bmm"] == 2 * matmul
    assert report.params == (8 * 3 * 27 + 8) + 2 * 8 + (8 * 5 + 5)
    assert report.activations == 8 * 4 * 8 * 8 + 5 + 2 * 3 * 6
    assert report.input_shapes == [(1, 3, 4, 8, 8)]


def test_batchnorm_and_elementwise_are_listed_separately():
    report = count_flops(Tiny(), torch.randn(1, 3, 4, 8, 8))
    out = 8 * 4 * 8 * 8
    assert sum(report.norm.values()) == out and any("batch_norm" in k for k in report.norm)
    assert report.pointwise["relu"] == out
    assert report.reduction["mean"] == 8
    assert "batch_norm" not in " ".join(report.macs_by_op)


def test_unsupported_op_is_named_not_dropped():
    class Spectral(nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x).abs().sum() + torch.sort(x).values.sum()

    report = count_flops(Spectral(), torch.randn(2, 16))
    assert report.macs == 0
    assert "_fft_r2c" in report.not_counted
    assert "sort" in report.not_counted


def test_meta_device_matches_real_tensors_and_torch_counter():
    model = Tiny()
    real = count_flops(model, torch.randn(1, 3, 4, 8, 8))
    with torch.device("meta"):
        meta_model = Tiny()
        meta = count_flops(meta_model, torch.empty(1, 3, 4, 8, 8))
    assert meta.macs == real.macs and meta.activations == real.activations
    with FlopCounterMode(display=False) as torch_counter:
        model.eval()
        model(torch.randn(1, 3, 4, 8, 8))
    assert torch_counter.get_total_flops() == 2 * real.macs  # torch counts a multiply-add as 2


def test_per_layer_costs_add_up():
    report = profile_arch("c3d", num_classes=101)
    top = report.layers_at(1)
    assert [layer.name for layer in top] == ["features", "head"]
    assert sum(layer.macs for layer in top) == report.macs
    convs = [layer for layer in report.layers if layer.type == "Conv3d"]
    assert [layer.name.split(".")[-1] for layer in convs] == [
        "conv1a",
        "conv2a",
        "conv3a",
        "conv3b",
        "conv4a",
        "conv4b",
        "conv5a",
        "conv5b",
    ]
    assert sum(layer.macs for layer in convs) == report.macs_by_op["convolution"]
    conv2a = next(layer for layer in convs if layer.name.endswith("conv2a"))
    assert conv2a.output_shape == (1, 128, 16, 56, 56)
    assert conv2a.macs == 128 * 16 * 56 * 56 * 64 * 27
    assert conv2a.params == 128 * 64 * 27 + 128


def test_big_models_count_on_meta_without_memory():
    report = profile_arch("i3d", frames=64, size=224, batch=2)
    assert report.input_shapes == [(2, 3, 64, 224, 224)]
    assert report.macs == 2 * profile_arch("i3d").macs
    assert report.not_counted == {}


def test_views_multiply_the_total():
    assert parse_views("10x3") == 30
    assert parse_views("4") == 4
    for bad in ("", "x3", "0x3", "ten"):
        with pytest.raises(ValueError, match="views must look like"):
            parse_views(bad)
    d = profile_arch("c3d", views=30).to_dict()
    assert d["gflops_x_views"] == pytest.approx(30 * d["gflops"])
    assert d["input"] == "1x3x16x112x112"
