"""Spatial sampling: where a clip is scaled, cropped and flipped, for training, test views and prediction.

A view is planned before any pixel is read (:class:`SpatialParams`) and then applied to
every stream of an item (:func:`apply_view`). Crop offsets are fractions of the free room,
so an RGB clip and a flow clip of another resolution are cropped at matching places.

- training (:func:`train_view`): the short side drawn from a jitter range (default
  :func:`default_scale_range`), a random crop position, a random horizontal flip;
- test (:func:`eval_view`): the short side scaled to ``short_side`` (default: the crop
  size), crop ``k`` of ``num_crops`` along the longer side (:func:`crop_positions`:
  1 -> centre, 3 -> left/centre/right, or top/centre/bottom on a portrait frame).

A ``publisher`` test view resizes as PySlowFast's and PyTorchVideo's test transforms do
(:func:`vidact.data.transforms.publisher_short_side_scale`: pixels in [0, 1] as float, bilinear
without antialiasing, the long side floored) and places crops as their ``uniform_crop`` does (offsets
rounded up); vidact's own views resize uint8 frames with OpenCV's area filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vidact.data import transforms


@dataclass(frozen=True)
class SpatialParams:
    """Where one item is scaled, cropped and flipped; shared by its RGB and flow streams.

    ``top``/``left`` place the crop as fractions (0..1) of the free room. ``long_side``, when
    set (test views), places it along the frame's longer side instead; the other offset
    still applies across it.
    """

    short_side: int  # the shorter side is scaled to this first
    crop_size: int  # then a square crop of this size is taken
    top: float
    left: float
    flip: bool
    long_side: float | None = None
    publisher: bool = False  # resize and place crops as PySlowFast / PyTorchVideo test transforms do

    def crop_offsets(self, height: int, width: int) -> tuple[float, float]:
        """(top, left) crop fractions for a scaled frame of ``height`` x ``width``."""
        if self.long_side is None:
            return self.top, self.left
        return (self.top, self.long_side) if width >= height else (self.long_side, self.left)


def default_scale_range(crop_size: int) -> tuple[int, int]:
    """Training short-side jitter: crop x 8/7 .. crop x 10/7 (256..320 for a 224 crop)."""
    return int(round(crop_size * 8 / 7)), int(round(crop_size * 10 / 7))


def crop_positions(num_crops: int) -> list[float]:
    """Crop offsets along the long side: 1 -> centre; 3 -> start/centre/end (``n`` evenly spaced)."""
    return [0.5] if num_crops == 1 else np.linspace(0.0, 1.0, num_crops).tolist()


def train_view(
    rng: np.random.Generator,
    crop_size: int,
    scale_range: tuple[int, int],
    *,
    base_crop_size: int | None = None,
    hflip: bool = True,
) -> SpatialParams:
    """A random training view: short side uniform in ``scale_range``, random crop position and flip.

    ``scale_range`` is meant for crops of ``base_crop_size`` (default ``crop_size``); a
    smaller or larger crop (a multigrid shape) scales it along, never below the crop.
    The draws are the same with ``hflip`` off, so switching flips off changes nothing else.
    """
    ratio = crop_size / (base_crop_size or crop_size)
    lo, hi = (max(crop_size, int(round(s * ratio))) for s in scale_range)
    short = int(rng.integers(lo, max(lo, hi) + 1))
    flip = bool(rng.random() < 0.5) and hflip
    return SpatialParams(short, crop_size, float(rng.random()), float(rng.random()), flip)


def eval_view(
    crop_size: int, crop: int = 0, num_crops: int = 1, *, short_side: int | None = None, publisher: bool = False
) -> SpatialParams:
    """Test view ``crop`` of ``num_crops``: short side to ``short_side`` (default ``crop_size``), crop along it.

    The crop is centred across the longer side and moves along it through
    :func:`crop_positions`; no flip. ``publisher``: the publishers' resize and crop rounding.
    """
    if not 0 <= crop < num_crops:
        raise ValueError(f"crop {crop} out of range ({num_crops} crops)")
    short = short_side if short_side is not None else crop_size
    if short < crop_size:
        raise ValueError(f"short side {short} is smaller than the crop {crop_size}")
    return SpatialParams(
        short, crop_size, 0.5, 0.5, False, long_side=crop_positions(num_crops)[crop], publisher=publisher
    )


def apply_view(x: torch.Tensor, p: SpatialParams, *, is_flow: bool = False) -> torch.Tensor:
    """Scale, crop and flip a clip (C, T, H, W) as ``p`` says; the dtype is kept (no normalisation), except
    in a publisher view, which gives float pixels in [0, 1]."""
    if p.publisher:
        if is_flow:
            raise ValueError("the publishers' test views are for RGB clips")
        x = transforms.publisher_short_side_scale(x, p.short_side)
        return transforms.crop_at(x, p.crop_size, *p.crop_offsets(*x.shape[-2:]), round_up=True)
    x = transforms.short_side_scale(x, p.short_side, is_flow=is_flow)
    x = transforms.crop_at(x, p.crop_size, *p.crop_offsets(*x.shape[-2:]))
    return transforms.horizontal_flip(x, is_flow=is_flow) if p.flip else x
