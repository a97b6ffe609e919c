"""Checkpoint interop: PyTorchVideo / PySlowFast state dicts become vidact weights with equal logits."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.pytorchvideo_weights import ptv_functional, randomise_norms
from torch import nn

from vidact.errors import CheckpointError, UsageError
from vidact.models import create_model
from vidact.weights.convert import convert_state_dict, source_key

ptv_x3d = pytest.importorskip(
    "pytorchvideo.models.x3d", reason="pytorchvideo is not installed (pip install -e '.[test]')"
)
ptv_slowfast = pytest.importorskip("pytorchvideo.models.slowfast", reason="pytorchvideo is not installed")


pytestmark = pytest.mark.usefixtures("one_thread")


def _ptv_x3d_m(frames: int = 4, size: int = 32) -> nn.Module:
    # X3D-M at a small clip: the fixed head pool of PyTorchVideo then covers the whole map.
    return ptv_x3d.create_x3d(input_clip_length=frames, input_crop_size=size, depth_factor=2.2, head_activation=None)


@torch.no_grad()
def test_pytorchvideo_x3d_m_gives_equal_logits():
    torch.manual_seed(0)
    ref = randomise_norms(_ptv_x3d_m())
    state, report = convert_state_dict(ref.state_dict(), "x3d-m")
    assert (report.source, report.num_classes) == ("pytorchvideo", 400)
    assert report.filled_identity[0] == "res2.0.branch1_bn.weight"  # PyTorchVideo lacks this BN
    model = create_model("x3d-m").eval()
    model.load_state_dict(state)
    x = torch.randn(2, 3, 4, 32, 32)
    expected = ref(x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_pytorchvideo_slowfast_r50_gives_equal_logits():
    torch.manual_seed(0)
    ref = randomise_norms(ptv_slowfast.create_slowfast(head_pool=nn.AdaptiveAvgPool3d))  # R50 8x8
    state, report = convert_state_dict(ref.state_dict(), "slowfast-r50-8x8")
    assert report.filled_identity == []
    model = create_model("slowfast-r50-8x8").eval()
    model.load_state_dict(state)
    x = torch.randn(1, 3, 16, 32, 32)
    slow = ptv_functional().uniform_temporal_subsample(x, 16 // 4, temporal_dim=2)  # PyTorchVideo's PackPathway choice
    expected = ref([slow, x])
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model([slow, x]), expected, atol=1e-4, rtol=1e-4)


def test_pytorchvideo_4x16_and_r101_map_key_for_key():
    with torch.device("meta"):
        r50_4x16 = ptv_slowfast.create_slowfast(
            slowfast_fusion_conv_kernel_size=(5, 1, 1), slowfast_fusion_conv_stride=(8, 1, 1), model_num_class=10
        )
        r101 = ptv_slowfast.create_slowfast(model_depth=101, slowfast_fusion_conv_kernel_size=(5, 1, 1))
    _, report = convert_state_dict(r50_4x16.state_dict(), "slowfast-r50-4x16")
    assert report.num_classes == 10
    _, report = convert_state_dict(r101.state_dict(), "slowfast-r101-8x8")
    assert report.tensors == len(r101.state_dict())


def test_pyslowfast_names():
    assert source_key("stem.conv_t.weight", "x3d", "pyslowfast") == "s1.pathway0_stem.conv.weight"
    assert source_key("res3.2.branch2.se.fc1.bias", "x3d", "pyslowfast") == "s3.pathway0_res2.branch2.se.fc1.bias"
    assert source_key("conv5_bn.running_var", "x3d", "pyslowfast") == "head.conv_5_bn.running_var"
    assert source_key("head.lin5.weight", "x3d", "pyslowfast") == "head.lin_5.weight"
    assert source_key("stem_fuse.conv.weight", "slowfast", "pyslowfast") == "s1_fuse.conv_f2s.weight"
    assert source_key("res4.fast.5.branch2.a_bn.bias", "slowfast", "pyslowfast") == "s4.pathway1_res5.branch2.a_bn.bias"
    assert source_key("res3_fuse.bn.weight", "slowfast", "pyslowfast") == "s3_fuse.bn.weight"


def _as_pyslowfast(model: nn.Module, family: str) -> dict:
    """A PySlowFast training checkpoint of ``model``: ``model_state`` with DDP's ``module.`` prefix."""
    state = {f"module.{source_key(k, family, 'pyslowfast')}": v for k, v in model.state_dict().items()}
    return {"model_state": state, "epoch": 196}


def test_pyslowfast_checkpoint_round_trip():
    torch.manual_seed(0)
    model = randomise_norms(create_model("x3d-xs", num_classes=7))
    state, report = convert_state_dict(_as_pyslowfast(model, "x3d"), "x3d-xs")
    assert (report.source, report.num_classes) == ("pyslowfast", 7)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_mismatched_shape_names_the_key():
    with torch.device("meta"):
        state = _ptv_x3d_m().state_dict()
    state["blocks.2.res_blocks.1.branch2.conv_a.weight"] = torch.empty(99, 48, 1, 1, 1, device="meta")
    with pytest.raises(CheckpointError) as err:
        convert_state_dict(state, "x3d-m")
    assert str(err.value) == (
        "shape mismatch at 'blocks.2.res_blocks.1.branch2.conv_a.weight': (99, 48, 1, 1, 1) "
        "in the checkpoint, (108, 48, 1, 1, 1) for vidact 'res3.1.branch2.a.weight' in x3d-m"
    )


def test_wrong_arch_names_the_first_missing_key():
    with torch.device("meta"):
        state = _ptv_x3d_m().state_dict()
    with pytest.raises(
        CheckpointError,
        match=r"^missing key 'blocks\.1\.res_blocks\.3\.branch2\.conv_a\.weight' "
        r"\(vidact 'res2\.3\.branch2\.a\.weight'\): checkpoint does not fit x3d-l$",
    ):
        convert_state_dict(state, "x3d-l")


def test_unused_source_key_is_an_error():
    with torch.device("meta"):
        state = _ptv_x3d_m().state_dict()
    state["blocks.4.res_blocks.7.branch2.conv_a.weight"] = torch.empty(432, 192, 1, 1, 1, device="meta")
    with pytest.raises(
        CheckpointError,
        match=r"^unexpected key 'blocks\.4\.res_blocks\.7\.branch2\.conv_a\.weight' "
        r"\(1 unused\): checkpoint does not fit x3d-m$",
    ):
        convert_state_dict(state, "x3d-m")


def test_unknown_origin_and_wrong_family():
    with pytest.raises(CheckpointError, match="cannot tell the checkpoint's origin from its keys"):
        convert_state_dict({"features.0.weight": torch.zeros(1)}, "x3d-m")
    with pytest.raises(CheckpointError, match="not a state dict"):
        convert_state_dict({"epoch": 3}, "x3d-m")
    with pytest.raises(UsageError, match="convert supports the slowfast and x3d families, not 'c3d'"):
        convert_state_dict({"blocks.0.weight": torch.zeros(1)}, "c3d")


@pytest.fixture(scope="module")
def ptv_x3d_xs_file(tmp_path_factory):
    torch.manual_seed(0)
    ref = ptv_x3d.create_x3d(input_clip_length=4, input_crop_size=160, depth_factor=2.2, model_num_class=3)
    path = tmp_path_factory.mktemp("ptv") / "X3D_XS.pyth"
    torch.save({"model_state": ref.state_dict()}, path)
    return path


def test_cli_convert_writes_a_vidact_checkpoint(cli, ptv_x3d_xs_file, tmp_path):
    import json

    from vidact.runtime.checkpoint import load_checkpoint, load_model_state

    classes = tmp_path / "classes.txt"
    classes.write_text("jump\nrun\nswim\n")
    dst = tmp_path / "x3d_xs.pt"
    res = cli("models", "convert", ptv_x3d_xs_file, dst, "--arch", "x3d-xs", "--classes", classes, "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert (report["arch"], report["source"], report["num_classes"]) == ("x3d-xs", "pytorchvideo", 3)
    ckpt = load_checkpoint(dst)
    assert ckpt["arch"] == "x3d-xs" and ckpt["classes"] == ["jump", "run", "swim"]
    model = create_model("x3d-xs", num_classes=3)
    load_model_state(model, ckpt["model"], dst)


def test_cli_convert_wrong_arch_is_one_line_exit_2(cli, ptv_x3d_xs_file, tmp_path):
    res = cli("models", "convert", ptv_x3d_xs_file, tmp_path / "out.pt", "--arch", "slowfast-r50-8x8")
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0
    assert res.stderr.startswith(
        f"error: {ptv_x3d_xs_file}: missing key 'blocks.6.proj.weight': not a pytorchvideo slowfast checkpoint"
    )
    assert not (tmp_path / "out.pt").exists()


def test_colour_codes_in_a_library_message_never_reach_the_terminal(cli, tmp_path):
    from vidact.errors import CheckpointError, first_line

    coloured = RuntimeError("Weights only load failed, \x1b[1mdo those steps only if you trust it\x1b[0m.\nmore")
    assert first_line(coloured) == "Weights only load failed, do those steps only if you trust it."
    assert "\x1b" not in str(CheckpointError(f"x.pt: cannot read ({coloured})"))

    path = tmp_path / "objects.pt"  # a pickled object weights-only loading refuses, with torch's coloured message
    torch.save({"model_state": {"w": torch.zeros(1)}, "extra": CheckpointError("x")}, path)
    res = cli("models", "convert", path, tmp_path / "out.pt", "--arch", "x3d-xs")
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "\x1b" not in res.stderr
    assert "refused: the file holds pickled Python objects" in res.stderr


def test_cli_convert_takes_a_url_and_needs_an_arch_for_a_file(cli, ptv_x3d_xs_file, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDACT_CACHE", str(tmp_path / "cache"))
    res = cli("models", "convert", ptv_x3d_xs_file.as_uri(), tmp_path / "x.pt", "--arch", "x3d-xs", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["test_protocol"] == {"name": "pytorchvideo", "crop_size": 182, "short_side": 182}
    res = cli("models", "convert", ptv_x3d_xs_file, tmp_path / "y.pt")
    assert res.exit_code == 2 and "--arch is needed" in res.stderr
    res = cli("models", "convert", tmp_path / "none.pth", tmp_path / "y.pt", "--arch", "x3d-xs")
    assert res.exit_code == 2 and res.stderr.strip() == f"error: {tmp_path / 'none.pth'}: checkpoint not found"
