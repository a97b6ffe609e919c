"""X3D: paper/PySlowFast figures (meta-device FLOPs), the factor API, tiny forward/backward."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from vidact.models import create_model, get_entry
from vidact.models.x3d import X3D_VARIANTS, X3DFactors, x3d_from_factors
from vidact.profile.flops import profile_arch
from vidact.runtime.device import preferred_amp, preferred_channels_last, to_device

pytestmark = pytest.mark.usefixtures("one_thread")


def _structure(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


# arch, frames, size, GFLOPs (conv+fc multiply-adds), params (M), tolerance on params
TARGETS = [
    ("x3d-xs", 4, 160, 0.605, 3.79, 0.005),
    ("x3d-s", 13, 160, 1.96, 3.79, 0.005),
    ("x3d-m", 16, 224, 4.73, 3.79, 0.005),
    ("x3d-m", 16, 256, 6.18, 3.79, 0.005),
    # X3D paper Table 4 at the 356-pixel test crop (printed to one decimal: 6.1 M / 11.0 M).
    ("x3d-l", 16, 356, 24.8, 6.1, 0.01),
    ("x3d-xl", 16, 356, 48.4, 11.0, 0.01),
]


@pytest.mark.parametrize("arch,frames,size,gflops,mparams,ptol", TARGETS)
def test_x3d_flops_and_params_match_the_papers(arch, frames, size, gflops, mparams, ptol):
    report = profile_arch(arch, frames=frames, size=size, num_classes=400)
    assert report.input_shapes == [(1, 3, frames, size, size)]
    assert report.macs / 1e9 == pytest.approx(gflops, rel=0.01)
    assert report.params / 1e6 == pytest.approx(mparams, rel=ptol)
    assert report.not_counted == {}


def test_x3d_m_exact_figures():
    report = profile_arch("x3d-m", frames=16, size=224)
    assert report.params == 3_794_322  # PyTorchVideo's 3,794,274 + res2's shortcut BN (48)
    assert round(report.macs / 1e9, 2) == 4.73


def test_x3d_m_stage_layout():
    f = X3D_VARIANTS["x3d-m"]
    assert f.stem_width() == 24
    assert f.stage_widths() == [24, 48, 96, 192]
    assert f.inner_widths() == [54, 108, 216, 432]
    assert f.stage_depths() == [3, 5, 11, 7]
    assert X3D_VARIANTS["x3d-l"].stage_depths() == [5, 10, 25, 15]
    assert X3D_VARIANTS["x3d-xl"].stage_widths() == [32, 72, 136, 280]


@pytest.mark.parametrize("name", sorted(X3D_VARIANTS))
def test_factor_api_reproduces_every_named_variant(name):
    factors = X3D_VARIANTS[name]
    entry = get_entry(name)
    assert entry.input == factors.input_spec()
    with torch.device("meta"):
        from_factors = x3d_from_factors(factors)
        registered = create_model(name)
    assert str(from_factors) == str(registered)
    assert _structure(from_factors) == _structure(registered)
    assert registered.factors == factors


def test_registered_inputs_are_the_papers_training_clips():
    assert get_entry("x3d-xs").input.shape() == (3, 4, 160, 160)
    assert get_entry("x3d-xs").input.stride == 12
    assert (get_entry("x3d-s").input.frames, get_entry("x3d-s").input.stride) == (13, 6)
    assert (get_entry("x3d-m").input.size, get_entry("x3d-m").input.stride) == (224, 5)
    assert get_entry("x3d-l").input.size == 312


def test_factor_space_points_between_variants():
    base = X3DFactors()  # X2D: 1 frame, 112 px, width 1, depth 1
    assert base.stage_depths() == [1, 2, 5, 3]
    assert base.stage_widths() == [16, 24, 48, 96]  # 12 rounds to a multiple of 8 (PySlowFast)
    mid = replace(X3D_VARIANTS["x3d-m"], gamma_d=3.0, gamma_w=2.5)
    assert mid.stage_depths() == [3, 6, 15, 9]
    with torch.device("meta"):
        model = x3d_from_factors(mid, num_classes=10)
    assert [len(getattr(model, f"res{i}")) for i in range(2, 6)] == [3, 6, 15, 9]
    assert model.head.projection.out_features == 10


def test_width_and_depth_multipliers_scale_gamma():
    with torch.device("meta"):
        model = create_model("x3d-m", width_mult=0.5, depth_mult=0.5)
    assert model.factors.gamma_w == 1.0 and model.factors.gamma_d == 1.1
    assert [len(getattr(model, f"res{i}")) for i in range(2, 6)] == [2, 3, 6, 4]


def test_x3d_block_details():
    with torch.device("meta"):
        model = create_model("x3d-m")
    block0, block1 = model.res3[0].branch2, model.res3[1].branch2
    assert block0.b.groups == block0.b.in_channels == 108  # channel-wise 3x3x3
    assert block0.b.kernel_size == (3, 3, 3) and block0.b.stride == (1, 2, 2)
    assert block0.se is not None and block1.se is None  # SE on every other block
    assert block0.se.fc1.out_channels == 8
    assert isinstance(block0.b_relu, torch.nn.SiLU)
    assert model.stem.conv_t.kernel_size == (5, 1, 1) and model.stem.conv_t.groups == 24
    assert model.head.lin5.out_channels == 2048
    assert not preferred_channels_last(model, torch.device("meta"))  # no choice recorded for the meta device
    assert model.memory_formats["cuda"] == torch.contiguous_format  # channel-wise convs lose channels-last on GPU


def test_x3d_xs_forward_backward_tiny():
    torch.manual_seed(0)
    model = create_model("x3d-xs", num_classes=5)
    x = torch.randn(2, 3, 4, 64, 64)
    logits = model(x)
    assert logits.shape == (2, 5)
    torch.nn.functional.cross_entropy(logits, torch.tensor([1, 3])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.stem.conv_xy.weight.grad.abs().sum() > 0
    assert preferred_channels_last(model, torch.device("cpu"))  # fastest on CPU (benchmarks/models.py)
    assert preferred_amp(model, torch.device("cuda")) == "none"


def test_x3d_channels_last_gives_the_same_logits():
    torch.manual_seed(0)
    model = create_model("x3d-xs", num_classes=5).eval()
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last_3d)
        x_cl = to_device(x, torch.device("cpu"), channels_last=preferred_channels_last(model, torch.device("cpu")))
        assert x_cl.is_contiguous(memory_format=torch.channels_last_3d)
        torch.testing.assert_close(model(x_cl), expected, atol=1e-5, rtol=1e-5)


def test_x3d_any_input_shape_and_feature_split():
    torch.manual_seed(0)
    model = create_model("x3d-xs", num_classes=7, dropout=0.0).eval()
    x = torch.randn(1, 3, 3, 48, 80)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, 432, 3, 2, 3)
        assert torch.equal(model.forward_head(features), model(x))
        assert model.forward_head(features, pre_logits=True).shape == (1, 2048)


@pytest.mark.parametrize("stride", [1, (1, 2, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_conv_equals_conv3d(stride, channels_last):
    from vidact.models.res_blocks import PointwiseConv3d

    torch.manual_seed(0)
    conv = PointwiseConv3d(6, 5, stride=stride, bias=True)
    x = torch.randn(2, 6, 3, 7, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    expected = torch.nn.functional.conv3d(x, conv.weight, conv.bias, stride=conv.stride)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


def test_x3d_zero_initialises_the_last_bn_scale_of_every_block():
    """PySlowFast's init (without it X3D-XS stays at chance on the synthetic set): each residual
    block's last BatchNorm starts at scale 0, so a fresh block is relu(shortcut); every other BN at 1."""
    torch.manual_seed(0)
    model = create_model("x3d-xs", num_classes=5, width_mult=0.5)
    blocks = [block for i in range(2, 6) for block in getattr(model, f"res{i}")]
    assert len(blocks) == sum(X3D_VARIANTS["x3d-xs"].stage_depths()) == 26  # 3, 5, 11, 7
    finals = {id(block.branch2.c_bn) for block in blocks}
    for block in blocks:
        assert torch.equal(block.branch2.c_bn.weight, torch.zeros_like(block.branch2.c_bn.weight))
        assert torch.equal(block.branch2.c_bn.bias, torch.zeros_like(block.branch2.c_bn.bias))
    others = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d) and id(m) not in finals]
    assert others and all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in others)
    block = model.res3[1].eval()  # an identity-shortcut block: the residual branch adds exactly nothing
    x = torch.randn(2, block.branch2.a.in_channels, 2, 6, 6)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))
