"""``vidact profile`` over bad names, inputs too small for a model, odd sizes and missing devices."""

from __future__ import annotations

import json

import pytest
import torch


def test_unknown_architecture_suggests_close_names(cli):
    r = cli("profile", "--arch", "c3dd")
    assert r.exit_code == 2
    assert r.stderr.splitlines() == ["error: unknown architecture 'c3dd'; did you mean c3d, c3d-bn, i3d?"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--arch", "two-stream", "--frames", "1", "--size", "8"],
            "error: two-stream: input 1x3x1x8x8 + 1x2x1x8x8 is too small for this architecture (Calculated padded",
        ),
        (
            ["--arch", "single-frame", "--frames", "1", "--size", "9"],
            "error: single-frame: input 1x3x1x9x9 is too small for this architecture (",
        ),
    ],
)
def test_input_too_small_for_the_model_is_one_line(cli, args, message):
    r = cli("profile", *args)
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(message)
    assert r.stdout == ""


def test_odd_and_huge_frame_sizes_are_counted(cli):
    small = json.loads(cli("profile", "--arch", "i3d", "--frames", "8", "--size", "224", "--json").stdout)
    r = cli("profile", "--arch", "i3d", "--frames", "8", "--size", "4097", "--json")
    assert r.exit_code == 0, r.stderr
    huge = json.loads(r.stdout)
    assert huge["input"] == "1x3x8x4097x4097"
    assert huge["params"] == small["params"]
    # conv cost grows with the pixel count: (4097/224)^2 = 334x, give or take the borders
    assert 250 < huge["macs"] / small["macs"] < 400


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--arch", "c3d", "--frames", "0"], "Invalid value for '--frames'"),
        (["--arch", "c3d", "--size", "4"], "Invalid value for '--size'"),
        (["--arch", "c3d", "--views", "0x3"], "views must look like 10x3 or 30, not '0x3'"),
    ],
)
def test_bad_option_values_exit_2(cli, args, fragment):
    r = cli("profile", *args)
    assert r.exit_code == 2
    assert r.stderr.splitlines()[-1].startswith("error: ") and fragment in r.stderr.splitlines()[-1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_bench_on_missing_gpu_is_usage_error(cli):
    r = cli("profile", "--arch", "c3d", "--frames", "4", "--size", "16", "--bench", "--device", "cuda")
    assert r.exit_code == 2
    assert r.stderr.splitlines() == ["error: device 'cuda' requested but CUDA is not available here"]
