"""SlowFast: paper/PySlowFast figures (meta-device FLOPs), layout, inputs, tiny forward/backward."""

from __future__ import annotations

import pytest
import torch

from vidact.models import create_model, get_entry
from vidact.profile.flops import profile_arch
from vidact.runtime.device import preferred_amp, preferred_channels_last

pytestmark = pytest.mark.usefixtures("one_thread")

# arch, extra builder kwargs, GFLOPs at slow T / fast 32 x 256 x 256, params (M), params tolerance
TARGETS = [
    ("slowfast-r50-4x16", {}, 36.1, 34.48, 0.005),
    ("slowfast-r50-8x8", {}, 65.7, 34.57, 0.005),
    # SlowFast paper / X3D paper Table 4: R101 8x8 = 106 GFLOPs, 53.7 M, with temporal kernels in
    # the first 6 res4 blocks only (PySlowFast's "R101_50_50" layout).
    ("slowfast-r101-8x8", {"temporal_blocks": (3, 4, 6, 3)}, 106.0, 53.7, 0.005),
    # PySlowFast's released R101 8x8 config and PyTorchVideo's slowfast_r101: all 23 res4 blocks
    # temporal (62.83 M parameters, as PyTorchVideo's model zoo lists).
    ("slowfast-r101-8x8", {}, 125.9, 62.83, 0.005),
]


@pytest.mark.parametrize("arch,kwargs,gflops,mparams,ptol", TARGETS)
def test_slowfast_flops_and_params_match_the_papers(arch, kwargs, gflops, mparams, ptol):
    report = profile_arch(arch, frames=32, size=256, num_classes=400, **kwargs)
    assert report.input_shapes == [(1, 3, 32, 256, 256)]
    assert report.macs / 1e9 == pytest.approx(gflops, rel=0.01)
    assert report.params / 1e6 == pytest.approx(mparams, rel=ptol)
    assert report.not_counted == {}


def test_slowfast_exact_parameter_counts():
    counts = {}
    for arch in ("slowfast-r50-4x16", "slowfast-r50-8x8"):
        with torch.device("meta"):
            counts[arch] = sum(p.numel() for p in create_model(arch).parameters())
    assert counts == {"slowfast-r50-4x16": 34_480_216, "slowfast-r50-8x8": 34_566_488}


def test_registered_input_is_the_fast_pathway_clip():
    for arch in ("slowfast-r50-4x16", "slowfast-r50-8x8", "slowfast-r101-8x8"):
        spec = get_entry(arch).input
        assert (spec.channels, spec.frames, spec.size, spec.stride) == (3, 32, 224, 2)


def test_lateral_connections_and_temporal_kernels():
    with torch.device("meta"):
        m8, m4 = create_model("slowfast-r50-8x8"), create_model("slowfast-r50-4x16")
    assert m8.alpha == 4 and m4.alpha == 8
    assert tuple(m8.stem_fuse.conv.weight.shape) == (16, 8, 7, 1, 1)  # 2 * beta * C = 2 * 8
    assert m8.res2_fuse.conv.stride == (4, 1, 1)
    assert tuple(m4.res4_fuse.conv.weight.shape) == (256, 128, 5, 1, 1)
    assert m4.res4_fuse.conv.stride == (8, 1, 1)
    assert not hasattr(m8, "res5_fuse")
    slow_a = [getattr(m8, f"res{i}").slow[0].branch2.a.kernel_size[0] for i in range(2, 6)]
    fast_a = [getattr(m8, f"res{i}").fast[0].branch2.a.kernel_size[0] for i in range(2, 6)]
    assert slow_a == [1, 1, 3, 3] and fast_a == [3, 3, 3, 3]
    assert m8.stem.slow.conv.kernel_size == (1, 7, 7) and m8.stem.fast.conv.kernel_size == (5, 7, 7)
    assert m8.res3.slow[0].branch2.b.kernel_size == (1, 3, 3)
    assert m8.head.projection.in_features == 2048 + 256
    assert m8.memory_formats["cuda"] == torch.channels_last_3d and m8.amp_dtypes["cuda"] == torch.bfloat16


def test_r101_temporal_blocks_layout():
    with torch.device("meta"):
        full = create_model("slowfast-r101-8x8")
        paper = create_model("slowfast-r101-8x8", temporal_blocks=(3, 4, 6, 3))
    assert len(full.res4.slow) == 23
    assert [b.branch2.a.kernel_size[0] for b in full.res4.slow] == [3] * 23
    assert [b.branch2.a.kernel_size[0] for b in paper.res4.slow] == [3] * 6 + [1] * 17


@pytest.fixture(scope="module")
def tiny_slowfast():
    torch.manual_seed(0)
    return create_model("slowfast-r50-8x8", num_classes=5, width_mult=0.25)


def test_slowfast_forward_backward_tiny(tiny_slowfast):
    model = tiny_slowfast.train()
    x = torch.randn(2, 3, 16, 64, 64)
    logits = model(x)
    assert logits.shape == (2, 5)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 4])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.stem.fast.conv.weight.grad.abs().sum() > 0  # the Fast pathway is trained too
    assert model.stem_fuse.conv.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_single_tensor_and_list_inputs_agree(tiny_slowfast):
    model = tiny_slowfast.eval()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        single = model(x)
        # PackPathway's Slow frames: linspace(0, 15, 16 / 4) truncated = 0, 5, 10, 15 (not ::4 = 0, 4, 8, 12)
        pair = model([x[:, :, [0, 5, 10, 15]].clone(), x])
        strided = model([x[:, :, ::4].clone(), x])
    assert torch.allclose(single, pair, atol=1e-6)
    assert not torch.allclose(single, strided, atol=1e-4)
    features = model.forward_features(x)
    assert [tuple(f.shape) for f in features] == [(2, 512, 4, 1, 1), (2, 64, 16, 1, 1)]
    assert model.forward_head(features, pre_logits=True).shape == (2, 576)


def test_channels_last_gives_the_same_logits(tiny_slowfast):
    model = tiny_slowfast.eval()
    torch.manual_seed(2)
    x = torch.randn(1, 3, 16, 64, 64)
    with torch.no_grad():
        expected = model(x)
        assert not preferred_channels_last(model, torch.device("cpu"))  # CPU choice (benchmarks/models.py)
        assert preferred_channels_last(model, torch.device("cuda"))
        assert preferred_amp(model, torch.device("cuda")) == "bf16"
        model = model.to(memory_format=torch.channels_last_3d)
        x_cl = x.contiguous(memory_format=torch.channels_last_3d)
        torch.testing.assert_close(model(x_cl), expected, atol=1e-4, rtol=1e-4)
        model = model.to(memory_format=torch.contiguous_format)  # and back, as the CPU choice has it
        assert model.stem.slow.conv.weight.is_contiguous()
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)


def test_three_pathways_is_an_error(tiny_slowfast):
    x = torch.randn(1, 3, 16, 32, 32)
    with pytest.raises(ValueError, match="one clip tensor or \\[slow, fast\\], got 3 tensors"):
        tiny_slowfast([x, x, x])


def test_other_depths_are_rejected():
    from vidact.models.slowfast import SlowFast

    with pytest.raises(ValueError, match="SlowFast depth must be one of \\[50, 101\\], got 34"):
        SlowFast(depth=34)
