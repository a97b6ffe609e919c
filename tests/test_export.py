"""vidact export: TorchScript and ONNX files give the checkpoint's logits."""

from __future__ import annotations

import json

import pytest
import torch

from vidact.export import export_checkpoint, onnx_available

ONNX_MISSING = onnx_available()  # None when onnx and onnxruntime are installed (the test extra)
CLASSES = ["move_left", "move_right", "move_up", "move_down"]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_checkpoint(path, arch: str, modality: str, channels: int, frames: int, size: int, width_mult: float):
    """A checkpoint of a registry architecture with random weights and non-trivial BatchNorm statistics."""
    from vidact.runtime.build import build_model
    from vidact.runtime.checkpoint import save_checkpoint
    from vidact.train.config import load_config

    torch.manual_seed(0)
    cfg = load_config(arch=arch, modality=modality, frames=frames, size=size, overrides=[f"width_mult={width_mult}"])
    model = build_model(arch, len(CLASSES), in_channels=channels, dropout=cfg.dropout, width_mult=width_mult)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    inp = {"modality": modality, "channels": channels, "frames": frames, "size": size, "stride": 1}
    save_checkpoint(
        path,
        arch=arch,
        classes=CLASSES,
        config=cfg.to_dict(),
        input=inp,
        model=model.state_dict(),
        epoch=0,
        iteration=0,
    )
    return path, model.eval()


def _logits(model, x):
    with torch.no_grad():
        return model(x)


def test_torchscript_gives_the_checkpoint_logits_at_another_batch_size(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "x3d.pt", "x3d-xs", "rgb", 3, 4, 32, 0.5)
    result = export_checkpoint(ckpt, "torchscript")
    assert result["out"] == str(tmp_path / "x3d-scripted.pt")
    assert result["input"] == [[3, 4, 32, 32]] and result["arch"] == "x3d-xs" and result["classes"] == 4
    loaded = torch.jit.load(result["out"])
    x = torch.randn(3, 3, 4, 32, 32)
    expected = _logits(model, x)
    assert expected.shape == (3, 4)
    torch.testing.assert_close(_logits(loaded, x), expected, rtol=1e-4, atol=1e-5)


def test_torchscript_two_stream_takes_rgb_and_flow(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "ts.pt", "two-stream", "rgb+flow", 3, 10, 48, 0.125)
    result = export_checkpoint(ckpt, "torchscript", tmp_path / "out" / "two_stream.pt")
    assert result["input"] == [[3, 1, 48, 48], [2, 10, 48, 48]]
    loaded = torch.jit.load(result["out"])
    x = [torch.randn(2, 3, 1, 48, 48), torch.randn(2, 2, 10, 48, 48)]
    torch.testing.assert_close(_logits(loaded, x), _logits(model, x), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(ONNX_MISSING is not None, reason=f"ONNX check skipped: {ONNX_MISSING}")
def test_onnx_gives_the_checkpoint_logits(tmp_path):
    import onnxruntime as ort

    ckpt, model = make_checkpoint(tmp_path / "x3d.pt", "x3d-xs", "rgb", 3, 4, 32, 0.5)
    result = export_checkpoint(ckpt, "onnx")
    assert result["out"] == str(tmp_path / "x3d.onnx")
    session = ort.InferenceSession(result["out"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["clip"]
    x = torch.randn(5, 3, 4, 32, 32)  # batch 5: the batch axis is free
    got = torch.from_numpy(session.run(None, {"clip": x.numpy()})[0])
    torch.testing.assert_close(got, _logits(model, x), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(ONNX_MISSING is not None, reason=f"ONNX check skipped: {ONNX_MISSING}")
def test_onnx_refusal_is_one_line_and_leaves_no_file(cli, tmp_path):
    # torch's ONNX exporter cannot size adaptive pooling after ceil-mode max pooling (CNN-M towers)
    ckpt, _ = make_checkpoint(tmp_path / "flow.pt", "two-stream-temporal", "flow", 2, 10, 48, 0.125)
    r = cli("export", ckpt, "--format", "onnx")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: --format onnx: torch cannot export this model (")
    assert r.stderr.rstrip().endswith("use --format torchscript") and len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.pt"]


@pytest.mark.skipif(ONNX_MISSING is not None, reason=f"ONNX check skipped: {ONNX_MISSING}")
def test_export_cli_onnx_json(cli, tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "x3d.pt", "x3d-xs", "rgb", 3, 4, 32, 0.5)
    r = cli("export", ckpt, "--format", "onnx", "-o", tmp_path / "model.onnx", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["format"] == "onnx" and out["max_abs_diff"] < 1e-4 and (tmp_path / "model.onnx").stat().st_size > 0


def test_export_cli_errors(cli, tmp_path):
    r = cli("export", tmp_path / "missing.pt")
    assert r.exit_code == 2
    assert f"error: {tmp_path / 'missing.pt'}: checkpoint not found" in r.stderr
    ckpt, _ = make_checkpoint(tmp_path / "x3d.pt", "x3d-xs", "rgb", 3, 4, 32, 0.5)
    r = cli("export", ckpt, "--format", "tflite")
    assert r.exit_code == 2
    assert "error: --format must be one of torchscript, onnx, got 'tflite'" in r.stderr
    r = cli("export", ckpt, "-o", ckpt)
    assert r.exit_code == 2 and "would overwrite the checkpoint" in r.stderr
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    r = cli("export", tmp_path / "junk.pt")
    assert r.exit_code == 2 and str(tmp_path / "junk.pt") in r.stderr and len(r.stderr.strip().splitlines()) == 1
