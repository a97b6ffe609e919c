"""Flow storage: quantisation, JPEG pairs, npz, manifests and foreign naming conventions."""

from __future__ import annotations

import numpy as np
import pytest

from vidact.errors import VidactError
from vidact.io.flowio import (
    count_flow,
    dequantize,
    quantize,
    read_flow,
    read_manifest,
    write_flow_jpgs,
    write_flow_npz,
    write_manifest,
)


def _smooth_flows(n=3, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for _ in range(n):
        a, b = rng.uniform(-6, 6, size=2)
        out.append(np.stack([a * np.cos(xx / 7.0), b * np.sin(yy / 5.0)]))
    return np.stack(out).astype(np.float32)


def test_quantize_zero_is_128_and_clips_at_bound():
    q = quantize(np.array([0.0, -20.0, 20.0, -35.0, 99.0, 1e9]), bound=20)
    assert q.dtype == np.uint8
    assert q.tolist() == [128, 0, 255, 0, 255, 255]


@pytest.mark.parametrize("bound", [15.0, 20.0, 32.0])
def test_quantize_round_trip_error_within_half_step(bound):
    f = np.linspace(-bound, bound, 2001, dtype=np.float32)
    err = np.abs(dequantize(quantize(f, bound), bound) - f)
    assert err.max() <= bound / 255 + 1e-5


def test_jpg_round_trip_and_manifest(tmp_path):
    flows = _smooth_flows()
    assert write_flow_jpgs(tmp_path, flows, bound=20, quality=100) == 3
    assert (tmp_path / "flow_x_00001.jpg").is_file() and (tmp_path / "flow_y_00003.jpg").is_file()
    assert not (tmp_path / "flow_x_00000.jpg").exists()
    write_manifest(tmp_path, {"format": "jpg", "bound": 20.0, "index_base": 1, "prefix": "flow_", "num_flows": 3})
    assert read_manifest(tmp_path)["index_base"] == 1
    assert count_flow(tmp_path) == 3
    got = read_flow(tmp_path, [2, 0])
    assert got.dtype == np.float32 and got.shape == (2, 2, 24, 32)
    # JPEG at quality 100 adds a little on top of the quantisation step (40/255 px).
    assert np.abs(got - flows[[2, 0]]).mean() < 0.15
    assert np.abs(got - flows[[2, 0]]).max() < 0.6


def test_npz_round_trip_float16(tmp_path):
    flows = _smooth_flows(n=4)
    write_flow_npz(tmp_path, flows)
    assert count_flow(tmp_path) == 4
    got = read_flow(tmp_path, [3, 1])
    np.testing.assert_allclose(got, flows[[3, 1]], atol=6e-3)
    assert read_flow(tmp_path).shape == (4, 2, 24, 32)
    with pytest.raises(VidactError, match="out of range"):
        read_flow(tmp_path, [4])


def test_reads_denseflow_zero_based_and_bare_prefix(tmp_path):
    flows = _smooth_flows(n=2)
    zero = tmp_path / "denseflow"
    write_flow_jpgs(zero, flows, start=0, quality=100)
    bare = tmp_path / "bare"
    write_flow_jpgs(bare, flows, prefix="", quality=100)
    assert (bare / "x_00001.jpg").is_file()
    for folder in (zero, bare):
        assert count_flow(folder) == 2
        np.testing.assert_allclose(read_flow(folder, [1]), flows[[1]], atol=0.6)


def test_manifest_overrides_bound_and_base(tmp_path):
    flows = np.full((1, 2, 8, 8), 10.0, np.float32)
    write_flow_jpgs(tmp_path, flows, bound=15, start=0, prefix="", quality=100)
    write_manifest(tmp_path, {"format": "jpg", "bound": 15, "index_base": 0, "prefix": ""})
    np.testing.assert_allclose(read_flow(tmp_path, [0]), flows, atol=15 / 255 + 0.1)


def test_missing_folder_and_index_report_one_line(tmp_path):
    with pytest.raises(VidactError, match="flow folder not found"):
        read_flow(tmp_path / "nope", [0])
    write_flow_jpgs(tmp_path, _smooth_flows(n=1))
    with pytest.raises(VidactError, match="flow_x_00002.jpg: missing"):
        read_flow(tmp_path, [1])
