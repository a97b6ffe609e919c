"""The publishers' test protocol: SlowFast's Slow frames, the sliding test-time head, the 10x3 views.

References are PyTorchVideo's own builders and functions: ``create_x3d`` / ``create_slowfast`` with
their default head (the training pool window at stride 1, softmax per position, averaged: what
PySlowFast's ``X3DHead`` / ``ResNetBasicHead`` do in eval mode) and PackPathway's frame choice.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from helpers.pytorchvideo_weights import ptv_functional, randomise, randomise_norms, temper_classifier
from torch import nn

from vidact.data import views
from vidact.data.dataset import VideoClipDataset
from vidact.data.protocols import make_protocol
from vidact.data.sampling import pytorchvideo_test_clip
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


# ----------------------------------------------------------------------------- the 10x3 test views
def _video(tmp_path, name: str, frames: int, fps: int, width: int = 32, height: int = 24):
    from vidact.data.annotations import Sample
    from vidact.io.video import write_video

    path = tmp_path / name
    write_video(path, np.zeros((frames, height, width, 3), np.uint8), fps=fps)
    return Sample(str(path), 0)


def _clips(sample, protocol: str, frames: int, stride: int) -> list[list[int]]:
    dataset = VideoClipDataset(
        [sample],
        num_frames=frames,
        stride=stride,
        crop_size=16,
        train=False,
        num_clips=10,
        num_crops=3,
        protocol=make_protocol(protocol),
    )
    plans = [dataset.plan(i) for i in range(30)]
    assert all(np.array_equal(plans[3 * k + c].indices, plans[3 * k].indices) for k in range(10) for c in range(3))
    return [plans[3 * k].indices.tolist() for k in range(10)]


def test_ten_clip_positions_equal_the_table_derived_from_pyslowfasts_test_loader(tmp_path):
    """Derived by hand from PySlowFast's ``kinetics.py`` (test mode: clip ``k = index // 3``) and
    ``decoder.py`` (PyAV backend: ``pyav_decode``, ``get_start_end_idx``, ``temporal_sampling``):

    - ``clip_size = sampling_rate * num_frames / target_fps * fps`` (target_fps 30); with N frames,
      ``delta = max(N - clip_size, 0)`` and clip ``k`` of 10 spans ``[delta * k / 10, that + clip_size - 1]``;
    - ``pyav_decode_stream`` keeps the frames whose pts lies in that span, and one frame more;
    - ``decode`` then takes ``linspace(0, clip_size - 1, num_frames)`` of the kept frames, clamped to
      them and truncated (``.long()``).

    X3D-XS (4 x 12) on 300 frames at 30 fps: clip_size 48, delta 252, starts 25.2 k, so the first kept
    frame is ceil(25.2 k) = 0, 26, 51, 76, 101, 126, 152, 177, 202, 227; linspace(0, 47, 4) = 0, 15.7,
    31.3, 47 gives offsets 0, 15, 31, 47 (48 frames are kept: up to floor(start + 47) plus one).
    SlowFast (32 x 2): clip_size 64, delta 236, starts 23.6 k: first frames 0, 24, 48, 71, 95, 118, 142,
    166, 189, 213; linspace(0, 63, 32) = 2.032 i truncates to 2 i for i <= 30 and 63 for i = 31.
    At 25 fps (250 frames), X3D-XS's clip spans the same 1.6 s: clip_size 40, delta 210, starts 21 k,
    offsets linspace(0, 39, 4) = 0, 13, 26, 39. A 40-frame video shorter than SlowFast's 64: delta 0,
    every clip starts at 0, frames 0..39 are kept, offsets 2 i clamped to 39.
    """
    x3d = _clips(_video(tmp_path, "a.mp4", 300, 30), "pyslowfast", 4, 12)
    assert x3d == [[s, s + 15, s + 31, s + 47] for s in (0, 26, 51, 76, 101, 126, 152, 177, 202, 227)]
    slowfast = _clips(_video(tmp_path, "a.mp4", 300, 30), "pyslowfast", 32, 2)
    offsets = [2 * i for i in range(31)] + [63]
    assert slowfast == [[s + o for o in offsets] for s in (0, 24, 48, 71, 95, 118, 142, 166, 189, 213)]
    at_25 = _clips(_video(tmp_path, "b.mp4", 250, 25), "pyslowfast", 4, 12)
    assert at_25 == [[21 * k, 21 * k + 13, 21 * k + 26, 21 * k + 39] for k in range(10)]
    short = _clips(_video(tmp_path, "c.mp4", 40, 30), "pyslowfast", 32, 2)
    assert short == [[min(2 * i, 39) for i in range(31)] + [39]] * 10
    # PyTorchVideo's ConstantClipsPerVideoSampler + UniformTemporalSubsample: starts 0.84 k s, frames in
    # [start, start + 1.6 s): the same 48 frames here, the same picks
    assert _clips(_video(tmp_path, "a.mp4", 300, 30), "pytorchvideo", 4, 12) == x3d


def test_pytorchvideo_clip_positions_follow_its_clip_sampler():
    clip_sampling = pytest.importorskip("pytorchvideo.data.clip_sampling")
    subsample = ptv_functional().uniform_temporal_subsample
    for frames, fps, t, stride in ((300, 30, 4, 12), (251, 25, 32, 2), (123, 30, 13, 6), (40, 30, 16, 5)):
        sampler = clip_sampling.ConstantClipsPerVideoSampler(Fraction(t * stride, 30), 10)
        for k in range(10):
            info = sampler(0.0, Fraction(frames, fps), None)
            first = math.ceil(info.clip_start_sec * fps)
            kept = torch.arange(first, min(math.ceil(info.clip_end_sec * fps), frames))
            expected = subsample(kept.view(1, -1), t, temporal_dim=1)[0].tolist()
            assert pytorchvideo_test_clip(frames, fps, t, stride, k, 10).tolist() == expected, (frames, k)


def test_three_crops_equal_the_table_and_pytorchvideos_functions():
    """``utils.spatial_sampling`` at test: ``random_short_side_scale_jitter`` with min = max = the test crop
    (a frame whose short side already has that size is kept; else the long side is
    ``floor(long / short * size)``, bilinear, ``align_corners=False``), then ``uniform_crop``: offsets
    ``ceil((side - size) / 2)`` across, and 0 / centre / ``side - size`` along the long side.

    340 x 256 at crop 256: kept as is, free room 84: crops at x = 0, 42, 84 (portrait 256 x 340: y = 0,
    42, 84). 320 x 240 at crop 182: long side floor(242.67) = 242, free 60: x = 0, 30, 60.
    """
    columns = torch.arange(340.0).view(1, 1, 1, 340).expand(3, 2, 256, 340)  # float pixel value = its column
    for crop, offset in enumerate((0, 42, 84)):
        view = make_protocol("pyslowfast").view(crop, 3, 256)
        out = views.apply_view(columns, view)
        assert out.shape == (3, 2, 256, 256) and out[0, 0, 0, 0].item() == offset
        portrait = views.apply_view(columns.transpose(2, 3), view)  # 256 wide, 340 tall: value = its row
        assert portrait.shape == (3, 2, 256, 256) and portrait[0, 0, 0, 0].item() == offset
    ptv = ptv_functional()
    torch.manual_seed(0)
    clip = torch.randint(0, 256, (3, 4, 240, 320), dtype=torch.uint8)
    for crop, x0 in enumerate((0, 30, 60)):
        out = views.apply_view(clip, make_protocol("pyslowfast").view(crop, 3, 182))
        scaled = ptv.short_side_scale(clip.float() / 255, 182)
        assert scaled.shape[-1] == 242
        torch.testing.assert_close(out, scaled[..., :, x0 : x0 + 182], atol=1e-6, rtol=0)
        torch.testing.assert_close(out, ptv.uniform_crop(scaled, 182, crop), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- choosing the protocol
def test_the_protocol_comes_from_the_zoo_row_the_recipe_or_the_option(tmp_path):
    from vidact.runtime.checkpoint import load_checkpoint
    from vidact.weights.convert import convert_checkpoint
    from vidact.weights.test_protocol import checkpoint_protocol

    path = tmp_path / "X3D_XS.pyth"
    torch.save({"model_state": ptv_x3d.create_x3d(input_clip_length=4, input_crop_size=160).state_dict()}, path)
    report = convert_checkpoint(path, tmp_path / "x3d_xs.pt", "x3d-xs")
    converted = load_checkpoint(tmp_path / "x3d_xs.pt")
    assert report.test_protocol == converted["config"]["test_protocol"]
    chosen, origin = checkpoint_protocol(converted, 160)
    assert (chosen.name, chosen.clips, chosen.crops, chosen.crop_size, origin) == (
        "pytorchvideo",
        10,
        3,
        182,
        "checkpoint",
    )
    recipe_run = {"arch": "x3d-xs", "config": {"recipe": "x3d-xs-kinetics400"}}
    assert checkpoint_protocol(recipe_run, 160)[0].name == "pyslowfast"
    assert checkpoint_protocol(recipe_run, 112)[0].crop_size == 127  # 182 x 112 / 160
    sf = {"arch": "slowfast-r50-8x8", "config": {}}
    assert checkpoint_protocol(sf, 224) == (make_protocol("vidact"), "default")
    given, origin = checkpoint_protocol(sf, 224, "pyslowfast", clips=2, crops=1)
    assert (given.crop_size, given.clips, given.crops, origin) == (256, 2, 1, "given")
    assert checkpoint_protocol(sf, 224, "pyslowfast", crop_size=300)[0].crop_size == 300


def test_recipes_test_at_the_crop_their_zoo_rows_were_published_at():
    from vidact.train.recipes import all_recipes
    from vidact.weights.zoo import published_test

    for recipe in all_recipes():
        row = published_test(recipe.arch)
        if row is not None:
            assert recipe.test_size == row.test_crop, recipe.name


def test_eval_with_the_pyslowfast_protocol(cli, synth_dir, tmp_path):
    import json

    from helpers.tiny_model import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "tiny.pt", ["move_left", "move_right", "move_up", "move_down"], size=16)
    args = ("eval", ckpt, "--data", synth_dir, "--out", tmp_path, "--json")
    r = cli(*args, "--protocol", "pyslowfast", "--clips", "2", "--crop-size", "24")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["views"] == 4 * 2 * 3 and report["views_per_video"] == 6
    assert {k: report["protocol"][k] for k in ("name", "clips", "crops", "crop_size", "from")} == {
        "name": "pyslowfast",
        "clips": 2,
        "crops": 3,
        "crop_size": 24,
        "from": "given",
    }
    r = cli(*args)
    assert r.exit_code == 0 and json.loads(r.stdout)["protocol"]["name"] == "vidact"
    r = cli(*args, "--protocol", "mmaction")
    assert r.exit_code == 2 and "unknown test protocol 'mmaction'" in r.stderr
