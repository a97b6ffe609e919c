"""Models I: Karpathy fusion nets, two-stream, C3D, I3D (+ 2D -> 3D inflation)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from vidact.errors import CheckpointError
from vidact.models import create_model, get_entry, model_names
from vidact.models.i3d import inflate_2d_weights
from vidact.profile.flops import count_flops, profile_arch

CLASSIC = [
    "single-frame",
    "early-fusion",
    "late-fusion",
    "slow-fusion",
    "two-stream",
    "two-stream-spatial",
    "two-stream-temporal",
    "c3d",
    "i3d",
    "i3d-flow",
    "i3d-two-stream",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def _on_meta(name: str, **kwargs):
    with torch.device("meta"):
        return create_model(name, **kwargs)


def test_every_classic_name_is_registered():
    assert set(CLASSIC) <= set(model_names())
    assert get_entry("two-stream").input.modality == "rgb+flow"
    assert get_entry("i3d-flow").input.channels == 2


@pytest.mark.parametrize("name", CLASSIC)
def test_tiny_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, width_mult=0.125, dropout=0.0)
    x = get_entry(name).example_input(2, 8, 32)  # T=8, 32x32: far below every paper input
    logits = model(x)
    assert logits.shape == (2, 5)
    F.cross_entropy(logits, torch.tensor([1, 3])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))


@pytest.mark.parametrize(
    "name,features",
    [
        ("single-frame", (1, 256, 1, 7, 7)),
        ("early-fusion", (1, 256, 1, 7, 7)),
        ("late-fusion", (1, 512, 1, 7, 7)),
        ("slow-fusion", (1, 256, 1, 7, 7)),
        ("two-stream-spatial", (1, 512, 6, 6)),
        ("two-stream-temporal", (1, 512, 6, 6)),
        ("c3d", (1, 512, 1, 4, 4)),
        ("i3d", (1, 1024, 8, 7, 7)),
        ("i3d-flow", (1, 1024, 8, 7, 7)),
    ],
)
def test_paper_input_gives_paper_feature_maps(name, features):
    model = _on_meta(name).eval()
    x = get_entry(name).example_input(1, device="meta")
    assert tuple(model.forward_features(x).shape) == features


def test_multiresolution_streams_end_in_7x7():
    model = _on_meta("single-frame", multires=True).eval()
    x = torch.empty(1, 3, 1, 178, 178, device="meta")  # fovea = centre 89x89, context = 89x89 downsampled
    assert tuple(model.forward_features(x).shape) == (1, 512, 1, 7, 7)
    assert tuple(model(x).shape) == (1, 487)


def test_slow_fusion_grows_temporal_extent():
    model = _on_meta("slow-fusion").eval()
    report = count_flops(model, torch.empty(1, 3, 10, 170, 170, device="meta"))
    shapes = {layer.name: layer.output_shape for layer in report.layers}
    assert shapes["towers.0.conv1"][2] == 4  # T=4 stride 2 over 10 frames
    assert shapes["towers.0.conv2"][2] == 2
    assert shapes["towers.0.conv3"][2] == 1


def _layer(report, name):
    return next(layer for layer in report.layers if layer.name == name)


def test_karpathy_conv1_by_hand():
    # C(96, 11, 3), padding 5, on 170x170: (170 + 10 - 11) // 3 + 1 = 57
    single = _layer(profile_arch("single-frame"), "towers.0.conv1")
    assert single.params == 96 * 3 * 11 * 11 + 96
    assert single.macs == 96 * 57 * 57 * (3 * 11 * 11)
    early = _layer(profile_arch("early-fusion"), "towers.0.conv1")  # the filter spans 10 frames
    assert early.params == 96 * 3 * 10 * 11 * 11 + 96
    assert early.macs == 96 * 1 * 57 * 57 * (3 * 10 * 11 * 11)
    slow = _layer(profile_arch("slow-fusion"), "towers.0.conv1")  # T=4 stride 2: 4 responses
    assert slow.macs == 96 * 4 * 57 * 57 * (3 * 4 * 11 * 11)
    late = profile_arch("late-fusion")  # the shared tower runs on 2 frames; FC6 sees both
    assert _layer(late, "towers.0.conv1").macs == 2 * single.macs
    assert _layer(late, "head.hidden.0").params == 2 * 256 * 7 * 7 * 4096 + 4096


def test_two_stream_layers_by_hand():
    # CNN-M-2048 conv1 7x7x96 stride 2 on 224: (224 - 7) // 2 + 1 = 109
    spatial = profile_arch("two-stream-spatial")
    conv1 = _layer(spatial, "features.conv1")
    assert conv1.params == 96 * 3 * 7 * 7 + 96
    assert conv1.macs == 96 * 109 * 109 * 3 * 7 * 7
    assert _layer(spatial, "head.hidden.0").params == 512 * 6 * 6 * 4096 + 4096  # full6
    assert _layer(spatial, "head.hidden.3").params == 4096 * 2048 + 2048  # full7
    temporal = profile_arch("two-stream-temporal")  # 2L = 20 input channels
    assert _layer(temporal, "features.conv1").macs == 96 * 109 * 109 * 20 * 7 * 7
    names = {layer.name for layer in temporal.layers}
    assert "features.norm1" in names and "features.norm2" not in names


def test_c3d_figures_match_the_paper():
    report = profile_arch("c3d", num_classes=101)
    assert report.input_shapes == [(1, 3, 16, 112, 112)]
    assert report.params == pytest.approx(78.4e6, rel=0.01)
    assert report.gflops == pytest.approx(38.5, rel=0.01)


def test_i3d_figures_near_published():
    report = profile_arch("i3d")  # published: 107.9 GFLOPs, 12.1 M params (S3D paper / SlowFast Table 2)
    assert report.gflops == pytest.approx(108, rel=0.04)
    assert report.params == pytest.approx(12.1e6, rel=0.06)


def test_two_stream_average_fusion_is_mean_of_softmax_scores():
    torch.manual_seed(0)
    model = create_model("two-stream", num_classes=4, width_mult=0.125).eval()
    rgb, flow = get_entry("two-stream").example_input(2, 10, 64)
    with torch.no_grad():
        fused = model([rgb, flow]).exp()
        expected = (model.spatial(rgb).softmax(1) + model.temporal(flow).softmax(1)) / 2
    assert torch.allclose(fused, expected, atol=1e-6)
    linear = create_model("two-stream", num_classes=4, width_mult=0.125, fusion="linear")
    assert linear([rgb, flow]).shape == (2, 4)


def test_late_fusion_sees_frames_0_and_15_only():
    torch.manual_seed(0)
    model = create_model("late-fusion", num_classes=3, width_mult=0.125).eval()
    x = torch.randn(1, 3, 16, 64, 64)
    with torch.no_grad():
        base = model(x)
        y = x.clone()
        y[:, :, 7] = 0
        assert torch.equal(model(y), base)
        y[:, :, 15] = 0
        assert not torch.allclose(model(y), base)


def test_single_frame_on_a_static_clip_equals_one_frame():
    torch.manual_seed(0)
    model = create_model("single-frame", num_classes=3, width_mult=0.125).eval()
    frame = torch.randn(1, 3, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(frame.expand(-1, -1, 5, -1, -1)), model(frame), atol=1e-5)


@pytest.fixture(scope="module")
def googlenet():
    torch.manual_seed(0)
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    for m in net.modules():  # non-trivial BatchNorm statistics, so that copying them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


LAYERS = [
    "conv1",
    "maxpool1",
    "conv2",
    "conv3",
    "maxpool2",
    "inception3a",
    "inception3b",
    "maxpool3",
    "inception4a",
    "inception4b",
    "inception4c",
    "inception4d",
    "inception4e",
    "maxpool4",
    "inception5a",
    "inception5b",
]


def _record(model, store):
    return [
        getattr(model, name).register_forward_hook(lambda _m, _i, out, name=name: store.__setitem__(name, out))
        for name in LAYERS
    ]


def test_inflated_i3d_on_a_static_clip_matches_googlenet_on_the_frame(googlenet):
    net2d = googlenet
    i3d = create_model("i3d", num_classes=1000).eval()
    i3d.load_state_dict(inflate_2d_weights(net2d.state_dict(), i3d))
    frame = torch.randn(1, 3, 32, 32)
    # Temporal zero padding only touches the clip's ends; the temporal receptive field of Mixed_5c is
    # 99 frames, so the centre of a 112-frame static clip sees no padding at any layer.
    clip = frame.unsqueeze(2).expand(-1, -1, 112, -1, -1).contiguous()
    out2d, out3d = {}, {}
    hooks = _record(net2d, out2d) + _record(i3d, out3d)
    with torch.no_grad():
        logits2d = net2d(frame)
        features = i3d.forward_features(clip)
    for h in hooks:
        h.remove()
    for name in LAYERS:
        a, b = out2d[name], out3d[name]
        centre = b[:, :, b.shape[2] // 2]
        assert centre.shape == a.shape, name
        torch.testing.assert_close(centre, a, rtol=1e-4, atol=1e-4, msg=name)
    centre = features[:, :, features.shape[2] // 2 : features.shape[2] // 2 + 1]
    with torch.no_grad():
        torch.testing.assert_close(i3d.forward_head(centre), logits2d, rtol=1e-4, atol=1e-4)


def test_inflation_for_flow_and_other_heads(googlenet):
    net2d = googlenet
    flow = create_model("i3d-flow", num_classes=7)
    state = inflate_2d_weights(net2d.state_dict(), flow)
    w2d = net2d.state_dict()["conv1.conv.weight"]
    expected = (w2d.mean(1, keepdim=True) / 7).unsqueeze(2).expand(-1, 2, 7, -1, -1)
    torch.testing.assert_close(state["conv1.conv.weight"], expected)
    assert state["fc.weight"].shape == (7, 1024)  # a different head keeps the model's own init
    flow.load_state_dict(state)
    broken = dict(net2d.state_dict())
    del broken["inception4c.branch2.1.conv.weight"]
    with pytest.raises(CheckpointError, match="inception4c.branch2.1.conv.weight"):
        inflate_2d_weights(broken, flow)
