"""``vidact profile`` and ``vidact models`` through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def test_unknown_arch_is_one_line_with_close_matches(cli):
    res = cli("profile", "--arch", "c3dd")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == "error: unknown architecture 'c3dd'; did you mean c3d, c3d-bn, i3d?"
    res = cli("profile", "--arch", "slow_fusoin")
    assert res.exit_code == 2 and "slow-fusion" in res.stderr


def test_profile_c3d_json_hits_the_paper(cli):
    res = cli("profile", "--arch", "c3d", "--num-classes", "101", "--views", "10x3", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["input"] == "1x3x16x112x112"
    assert doc["gflops"] == pytest.approx(38.5, rel=0.01)
    assert doc["params"] == pytest.approx(78.4e6, rel=0.01)
    assert doc["views"] == 30 and doc["gflops_x_views"] == pytest.approx(30 * doc["gflops"])
    assert doc["not_counted"] == {} and "layers" not in doc and doc["bench"] is None


def test_profile_text_always_shows_the_input_shape(cli):
    res = cli("profile", "--arch", "i3d-two-stream", "--frames", "32", "--size", "112", "--per-layer")
    assert res.exit_code == 0, res.stderr
    assert "input 1x3x32x112x112 + 1x2x32x112x112" in res.stdout
    assert "GFLOPs at input 1x3x32x112x112 + 1x2x32x112x112" in res.stdout
    for word in ("parameters", "normalisation", "native_batch_norm", "not counted", "rgb", "flow"):
        assert word in res.stdout


def test_per_layer_depth(cli):
    res = cli("profile", "--arch", "c3d", "--per-layer", "--depth", "2")
    assert res.exit_code == 0, res.stderr
    assert "features.conv5b" in res.stdout and "head.fc" in res.stdout


def test_bench_reports_latency_and_memory(cli):
    res = cli(
        "profile",
        "--arch",
        "i3d",
        "--frames",
        "8",
        "--size",
        "32",
        "--batch",
        "2",
        "--bench",
        "--iters",
        "1",
        "--threads",
        "1",
        "--json",
    )
    assert res.exit_code == 0, res.stderr
    bench = json.loads(res.stdout)["bench"]
    assert bench["device"] == "cpu" and bench["batch"] == 2 and bench["threads"] == 1
    assert bench["forward_ms"] > 0 and bench["train_step_ms"] > 0 and bench["peak_memory_mb"] > 0
    assert bench["train_clips_per_s"] == pytest.approx(2000 / bench["train_step_ms"])


def test_bad_usage_exits_2(cli):
    res = cli("profile", "--arch", "c3d", "--views", "10by3")
    assert res.exit_code == 2 and "views must look like 10x3" in res.stderr
    if not torch.cuda.is_available():
        res = cli("profile", "--arch", "c3d", "--bench", "--device", "cuda")
        assert res.exit_code == 2
        assert res.stderr.strip() == "error: device 'cuda' requested but CUDA is not available here"


def test_models_lists_inputs_params_and_gflops(cli):
    res = cli("models", "--family", "c3d", "--json")
    assert res.exit_code == 0, res.stderr
    row, bn_row = json.loads(res.stdout)
    assert (row["name"], row["channels"], row["frames"], row["size"], row["stride"]) == ("c3d", 3, 16, 112, 1)
    assert row["gflops"] == pytest.approx(38.5, rel=0.01) and row["num_classes"] == 101
    assert bn_row["name"] == "c3d-bn" and bn_row["gflops"] == pytest.approx(row["gflops"], rel=1e-3)
    res = cli("models", "--family", "two-stream")
    assert res.exit_code == 0
    for text in ("two-stream-spatial", "two-stream-temporal", "3x1x224x224 + 2x10x224x224", "GFLOPs"):
        assert text in res.stdout
    assert cli("models", "--family", "nope").exit_code == 2


@pytest.mark.slow
def test_models_lists_every_architecture(cli):
    from vidact.models import model_names

    res = cli("models", "--json")
    assert res.exit_code == 0, res.stderr
    assert [r["name"] for r in json.loads(res.stdout)] == model_names()
