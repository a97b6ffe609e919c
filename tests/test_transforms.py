"""Clip transforms on (C, T, H, W): shapes, crops, flips, flow handling, normalisation numbers.

Where the crops and scales are drawn (training jitter, test crops) is tested in test_views.py.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidact.data import transforms


def _clip(c=3, t=4, h=12, w=20, seed=0) -> torch.Tensor:
    return torch.rand((c, t, h, w), generator=torch.Generator().manual_seed(seed))


def test_short_side_scale_shapes_landscape_and_portrait():
    assert transforms.short_side_scale(_clip(h=12, w=20), 6).shape == (3, 4, 6, 10)
    assert transforms.short_side_scale(_clip(h=30, w=15), 10).shape == (3, 4, 20, 10)
    x = _clip()
    assert transforms.short_side_scale(x, 12) is x  # already the right size: untouched


def test_short_side_scale_keeps_dtype_and_values_of_a_constant_clip():
    x = torch.full((3, 2, 8, 8), 200, dtype=torch.uint8)
    for size in (4, 13):
        y = transforms.short_side_scale(x, size)
        assert y.dtype == torch.uint8 and y.shape == (3, 2, size, size) and bool((y == 200).all())
    f = transforms.short_side_scale(torch.full((5, 2, 8, 6), 0.25), 3)  # more than OpenCV's 4 channels
    assert f.shape == (5, 2, 4, 3) and torch.allclose(f, torch.full_like(f, 0.25))


def test_resize_area_average_when_halving():
    x = torch.tensor([[0.0, 2.0], [4.0, 6.0]]).view(1, 1, 2, 2)
    assert transforms.resize(x, 1, 1).item() == pytest.approx(3.0)


def test_resize_of_constant_flow_scales_displacements():
    flow = torch.zeros(2, 3, 10, 20)
    flow[0], flow[1] = 2.0, -1.0
    out = transforms.resize(flow, 5, 40, is_flow=True)  # x twice as wide, y half as tall
    assert torch.allclose(out[0], torch.full_like(out[0], 4.0))
    assert torch.allclose(out[1], torch.full_like(out[1], -0.5))


def test_crop_at_places_the_crop_by_fractions_of_the_free_room():
    x = torch.arange(10 * 12, dtype=torch.float32).view(1, 1, 10, 12)
    assert torch.equal(transforms.crop_at(x, 4, 0.5, 0.5), x[..., 3:7, 4:8])
    assert torch.equal(transforms.crop_at(x, 4, 0.0, 1.0), x[..., 0:4, 8:12])
    assert torch.equal(transforms.crop_at(x, (2, 6), 1.0, 0.25), x[..., 8:10, 2:8])  # 0.25 x 6 = 1.5 rounds to 2


def test_crop_larger_than_frame_raises():
    with pytest.raises(ValueError, match="crop 16x16 is larger than the frame 12x20"):
        transforms.crop_at(_clip(), 16, 0.5, 0.5)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9), st.booleans())
def test_flip_twice_is_identity(c, t, h, w, is_flow):
    x = torch.randn(2 if is_flow else c, t, h, w)
    assert torch.equal(transforms.horizontal_flip(transforms.horizontal_flip(x, is_flow), is_flow), x)


def test_flip_mirrors_columns_and_flow_negates_x_only():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3)
    rgb_like = transforms.horizontal_flip(x)
    assert rgb_like[0, 0, 0].tolist() == [2.0, 1.0, 0.0]
    flow = transforms.horizontal_flip(x, is_flow=True)
    assert flow[0, 0, 0].tolist() == [-2.0, -1.0, -0.0]
    assert flow[1, 0, 0].tolist() == [8.0, 7.0, 6.0]
    assert x[0, 0, 0].tolist() == [0.0, 1.0, 2.0]  # input untouched


def test_normalize_numbers():
    x = torch.tensor([0.0, 0.45, 0.9]).view(1, 3, 1, 1).expand(3, 3, 1, 1)
    y = transforms.normalize(x)
    assert torch.allclose(y[:, :, 0, 0], torch.tensor([-2.0, 0.0, 2.0]).expand(3, 3), atol=1e-6)
    u8 = torch.full((3, 1, 1, 1), 255, dtype=torch.uint8)
    assert torch.allclose(
        transforms.normalize(u8, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0)).flatten(), torch.tensor([2.0, 1.0, 0.5])
    )
    with pytest.raises(ValueError, match="mean/std have 3/3 values for 2 channels"):
        transforms.normalize(torch.zeros(2, 1, 1, 1))


def test_flow_normalisation_divides_by_bound_without_centring():
    flow = torch.tensor([-20.0, 0.0, 10.0]).view(1, 3, 1, 1).expand(2, 3, 1, 1)
    y = transforms.normalize_flow(flow)
    assert y[0, :, 0, 0].tolist() == [-1.0, 0.0, 0.5]


def test_non_clip_input_is_refused():
    with pytest.raises(ValueError, match=r"expected a clip shaped \(C, T, H, W\), got shape \(3, 8, 8\)"):
        transforms.crop_at(torch.zeros(3, 8, 8), 4, 0.5, 0.5)
