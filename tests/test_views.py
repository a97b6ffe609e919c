"""Spatial sampling (vidact.data.views): training jitter, crop positions and flips, test crops, matching streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidact.data.views import SpatialParams, apply_view, crop_positions, default_scale_range, eval_view, train_view


def _grid(h: int, w: int) -> torch.Tensor:
    """A (1, 1, h, w) clip whose values name their pixel (row * w + column)."""
    return torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)


def test_default_scale_range_and_crop_positions():
    assert default_scale_range(224) == (256, 320)
    assert default_scale_range(112) == (128, 160)
    assert crop_positions(1) == [0.5]
    assert crop_positions(2) == [0.0, 1.0]
    assert crop_positions(3) == [0.0, 0.5, 1.0]


def test_train_view_short_side_within_range_and_seeded():
    sides = {train_view(np.random.default_rng(s), 4, (6, 9)).short_side for s in range(40)}
    assert sides == {6, 7, 8, 9}
    assert train_view(np.random.default_rng(3), 4, (6, 9)) == train_view(np.random.default_rng(3), 4, (6, 9))
    p = train_view(np.random.default_rng(3), 4, (6, 9))
    assert p.crop_size == 4 and 0 <= p.top < 1 and 0 <= p.left < 1 and p.long_side is None


def test_train_view_scales_the_range_with_the_crop_and_never_below_it():
    # a range for 24-pixel crops, drawn for a 12-pixel crop: 27..34 -> 14..17
    sides = {train_view(np.random.default_rng(s), 12, (27, 34), base_crop_size=24).short_side for s in range(60)}
    assert sides == {14, 15, 16, 17}
    assert {train_view(np.random.default_rng(s), 20, (8, 10)).short_side for s in range(10)} == {20}


def test_train_view_flips_half_the_time_and_flip_off_changes_nothing_else():
    on = [train_view(np.random.default_rng(s), 4, (6, 9)) for s in range(200)]
    off = [train_view(np.random.default_rng(s), 4, (6, 9), hflip=False) for s in range(200)]
    assert 60 < sum(p.flip for p in on) < 140 and not any(p.flip for p in off)
    assert [(p.short_side, p.top, p.left) for p in on] == [(p.short_side, p.top, p.left) for p in off]


def test_train_crops_stay_inside_and_vary():
    x = _grid(10, 12)
    corners = set()
    for s in range(60):
        p = train_view(np.random.default_rng(s), 4, (10, 10), hflip=False)  # short side 10: no scaling
        crop = apply_view(x, p)
        assert crop.shape == (1, 1, 4, 4)
        y0, x0 = divmod(int(crop[0, 0, 0, 0]), 12)
        assert (y0, x0) == (round(p.top * 6), round(p.left * 8))
        assert torch.equal(crop, x[..., y0 : y0 + 4, x0 : x0 + 4])
        corners.add((y0, x0))
    assert len(corners) > 20


def test_a_flipped_view_mirrors_the_crop_and_negates_flow_x():
    x = torch.randn(2, 3, 8, 8)
    p = SpatialParams(8, 4, 0.25, 0.75, True)
    plain = SpatialParams(8, 4, 0.25, 0.75, False)
    assert torch.equal(apply_view(x, p), apply_view(x, plain).flip(-1))
    flow = apply_view(x, p, is_flow=True)
    assert torch.equal(flow[0], -apply_view(x, plain)[0].flip(-1)) and torch.equal(flow[1], apply_view(x, p)[1])


def test_eval_view_one_crop_is_centred():
    x = _grid(10, 12)
    assert eval_view(4, short_side=10) == SpatialParams(10, 4, 0.5, 0.5, False, long_side=0.5)
    assert torch.equal(apply_view(x, eval_view(4, short_side=10)), x[..., 3:7, 4:8])


def test_eval_view_three_crops_move_along_the_long_side():
    wide = _grid(8, 20)
    left, centre, right = (apply_view(wide, eval_view(8, c, 3)) for c in range(3))
    assert torch.equal(left, wide[..., :, 0:8])
    assert torch.equal(centre, wide[..., :, 6:14])
    assert torch.equal(right, wide[..., :, 12:20])
    tall = _grid(20, 8)
    top, centre, bottom = (apply_view(tall, eval_view(8, c, 3)) for c in range(3))
    assert torch.equal(top, tall[..., 0:8, :])
    assert torch.equal(centre, tall[..., 6:14, :])
    assert torch.equal(bottom, tall[..., 12:20, :])


def test_eval_view_with_a_larger_short_side_stays_centred_across():
    # PyTorchVideo/PySlowFast-style: short side scaled beyond the crop, crops along the long side
    x = _grid(10, 16)
    left, _, right = (apply_view(x, eval_view(6, c, 3, short_side=10)) for c in range(3))
    assert torch.equal(left, x[..., 2:8, 0:6]) and torch.equal(right, x[..., 2:8, 10:16])


def test_eval_view_scales_the_short_side_to_the_crop_by_default():
    x = torch.rand(3, 2, 40, 64)
    out = apply_view(x, eval_view(20))
    assert out.shape == (3, 2, 20, 20)
    assert eval_view(20).short_side == 20


def test_eval_view_refuses_crops_out_of_range_and_short_sides_below_the_crop():
    with pytest.raises(ValueError, match="crop 3 out of range"):
        eval_view(8, 3, 3)
    with pytest.raises(ValueError, match="short side 6 is smaller than the crop 8"):
        eval_view(8, short_side=6)


@pytest.mark.parametrize("view", ["train", "eval0", "eval2"])
def test_streams_of_two_resolutions_are_cropped_at_matching_places(view):
    # one picture at full and at half resolution (exact 2x2 means): the same view gives the same crop
    full = torch.rand(3, 2, 40, 64, generator=torch.Generator().manual_seed(0))
    half = full.view(3, 2, 20, 2, 32, 2).mean(dim=(3, 5))
    if view == "train":
        p = train_view(np.random.default_rng(5), 12, (20, 20))
    else:
        p = eval_view(12, int(view[-1]), 3, short_side=20)
    assert torch.allclose(apply_view(full, p), apply_view(half, p), atol=1e-6)
