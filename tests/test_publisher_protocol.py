"""The publishers' test protocol: SlowFast's Slow frames, the sliding test-time head, the 10x3 views.

References are PyTorchVideo's own builders and functions: ``create_x3d`` / ``create_slowfast`` with
their default head (the training pool window at stride 1, softmax per position, averaged: what
PySlowFast's ``X3DHead`` / ``ResNetBasicHead`` do in eval mode) and PackPathway's frame choice.
"""

from __future__ import annotations

import pytest
import torch
from helpers.pytorchvideo_weights import ptv_functional, randomise, randomise_norms, temper_classifier
from torch import nn

from vidact.models import create_model
from vidact.weights.convert import convert_state_dict

ptv_x3d = pytest.importorskip("pytorchvideo.models.x3d", reason="pytorchvideo is not installed")
ptv_slowfast = pytest.importorskip("pytorchvideo.models.slowfast", reason="pytorchvideo is not installed")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "arch,alpha,expected",
    [("slowfast-r50-8x8", 4, [0, 4, 8, 13, 17, 22, 26, 31]), ("slowfast-r50-4x16", 8, [0, 10, 20, 31])],
)
def test_slow_pathway_frames_are_packpathways(arch, alpha, expected):
    with torch.device("meta"):
        model = create_model(arch)
    x = torch.arange(32.0).view(1, 1, 32, 1, 1).expand(1, 3, 32, 2, 2)
    slow, fast = model.pathways(x)
    reference = ptv_functional().uniform_temporal_subsample(x, 32 // alpha, temporal_dim=2)
    assert torch.equal(slow, reference) and torch.equal(fast, x)
    assert slow[0, 0, :, 0, 0].long().tolist() == expected  # not x[:, :, ::alpha]


def _compare(ref: nn.Module, arch: str, x: torch.Tensor, ref_input, train_clip=None) -> None:
    """vidact's softmax equals the reference's test-time probabilities; global pooling would not."""
    state, _ = convert_state_dict(ref.state_dict(), arch)
    model = create_model(arch).eval()
    model.load_state_dict(state)
    if train_clip is not None:
        model.set_train_clip(*train_clip)
    with torch.no_grad():
        expected = ref(ref_input())
        probs = torch.softmax(model(x), dim=1)
        model.head.test_window = None  # global pooling, as vidact did before
        pooled = torch.softmax(model(x), dim=1)
    assert expected.sum().item() == pytest.approx(1.0, abs=1e-5) and expected.max() < 0.5  # not saturated
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=0)
    assert (pooled - expected).abs().max() > 1e-3  # the sliding window matters at this crop
    assert torch.equal(probs.topk(5).indices, expected.topk(5).indices)


def test_x3d_xs_at_the_test_crop_182_equals_pytorchvideos_head():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 4, 182, 182)  # trained at 160: conv5 map 6x6, window 5x5 -> 2x2 positions
    ref = randomise(ptv_x3d.create_x3d(input_clip_length=4, input_crop_size=160)).eval()  # softmax head
    temper_classifier(ref, x)
    _compare(ref, "x3d-xs", x, lambda: x)


def _slowfast_input(frames: int, size: int):
    torch.manual_seed(0)
    x = torch.randn(1, 3, frames, size, size)
    pack = ptv_functional().uniform_temporal_subsample
    return x, lambda: [pack(x, frames // 4, temporal_dim=2), x]  # PyTorchVideo mutates the list it gets


def test_slowfast_sliding_head_small_clip_equals_pytorchvideos_head():
    # The head logic at a CPU-friendly size: trained on 8 frames at 64 (windows 2x2x2 and 8x2x2),
    # tested at 96 (res5 map 3x3 -> 2x2 window positions).
    x, ref_input = _slowfast_input(8, 96)
    ref = ptv_slowfast.create_slowfast(head_pool_kernel_sizes=((2, 2, 2), (8, 2, 2)), head_activation=nn.Softmax)
    temper_classifier(randomise_norms(ref), ref_input())
    _compare(ref, "slowfast-r50-8x8", x, ref_input, train_clip=(8, 64))


@pytest.mark.slow
def test_slowfast_r50_at_the_test_crop_256_equals_pytorchvideos_head():
    # 32 frames at 256 (trained at 224: res5 map 8x8, window 7x7 -> 2x2 positions); ~5 s a forward on one core.
    x, ref_input = _slowfast_input(32, 256)
    ref = randomise_norms(ptv_slowfast.create_slowfast(head_activation=nn.Softmax))
    temper_classifier(ref, ref_input())
    _compare(ref, "slowfast-r50-8x8", x, ref_input)


def test_training_mode_and_the_training_crop_pool_globally():
    torch.manual_seed(0)
    model = create_model("x3d-xs", num_classes=7, dropout=0.0)
    big, train_size = torch.randn(1, 3, 4, 182, 182), torch.randn(1, 3, 4, 160, 160)
    with torch.no_grad():
        features = model.eval().forward_features(big)
        sliding = model.forward_head(features)
        model.train()
        trained = model.forward_head(features)
        model.eval()
        model.head.test_window = None
        assert torch.equal(trained, model.forward_head(features))  # training: global pool, raw logits
        assert not torch.allclose(trained, sliding)
        model.set_train_clip(4, 160)
        at_train_crop = model.forward_features(train_size)
        logits = model.forward_head(at_train_crop)
        model.head.test_window = None
        assert torch.equal(logits, model.forward_head(at_train_crop))  # one position: plain logits
    assert torch.softmax(sliding, 1).sum().item() == pytest.approx(1.0, abs=1e-6)
