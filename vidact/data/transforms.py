"""Spatial transforms on clips shaped (C, T, H, W): scale, crop, flip, normalize.

Where a clip is scaled, cropped and flipped (training jitter, test crops) is decided in
:mod:`vidact.data.views`; these functions carry it out.

RGB clips are uint8 pixels or float in [0, 1] (:func:`normalize` takes both); flow clips are
float displacements in pixels with channel 0 = x and channel 1 = y. Functions taking
``is_flow`` keep flow physically consistent: resizing scales the displacements, and a
horizontal flip negates the x component.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidact.io.video import short_side_size

# PySlowFast's RGB statistics on [0, 1] pixels.
RGB_MEAN = (0.45, 0.45, 0.45)
RGB_STD = (0.225, 0.225, 0.225)
# Flow is divided by the JPEG quantisation bound (pixels) and not mean-centred.
FLOW_SCALE = 20.0


def _check_clip(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected a clip shaped (C, T, H, W), got shape {tuple(x.shape)}")


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def _resize_cpu(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """OpenCV per frame: area averaging when shrinking, bilinear when enlarging."""
    c, t, h, w = x.shape
    dtype = x.dtype if x.dtype in (torch.uint8, torch.float32) else torch.float32
    frames = x.to(dtype).permute(1, 2, 3, 0).numpy()  # (T, H, W, C)
    interp = cv2.INTER_AREA if height <= h and width <= w else cv2.INTER_LINEAR
    out = np.empty((t, height, width, c), frames.dtype)
    for i in range(t):
        for c0 in range(0, c, 4):  # OpenCV resizes at most 4 channels at a time
            chunk = np.ascontiguousarray(frames[i, :, :, c0 : c0 + 4])
            out[i, :, :, c0 : c0 + 4] = cv2.resize(chunk, (width, height), interpolation=interp).reshape(
                height, width, -1
            )
    return torch.from_numpy(out).permute(3, 0, 1, 2).to(x.dtype)


def _resize_torch(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    frames = x.float().permute(1, 0, 2, 3)  # (T, C, H, W): frames as a batch
    out = F.interpolate(
        frames, size=(height, width), mode="bilinear", align_corners=False, antialias=height < h or width < w
    ).permute(1, 0, 2, 3)
    return out.round().clamp(0, 255).to(x.dtype) if x.dtype == torch.uint8 else out.to(x.dtype)


def resize(x: torch.Tensor, height: int, width: int, *, is_flow: bool = False) -> torch.Tensor:
    """Resize every frame to (height, width), keeping the dtype; flow displacements scale along.

    CPU tensors go through OpenCV (area averaging to shrink, bilinear to enlarge), others
    through ``F.interpolate`` (antialiased bilinear).
    """
    _check_clip(x)
    h, w = x.shape[-2:]
    if (h, w) == (height, width):
        return x
    if is_flow and not x.is_floating_point():
        raise ValueError(f"flow must be a float tensor in pixels, got {x.dtype}")
    out = _resize_cpu(x, height, width) if x.device.type == "cpu" else _resize_torch(x, height, width)
    if is_flow:
        out[0] *= width / w
        out[1] *= height / h
    return out


def publisher_short_side_scale(x: torch.Tensor, size: int) -> torch.Tensor:
    """An RGB clip as float pixels in [0, 1], its shorter side scaled to ``size`` as PySlowFast's and
    PyTorchVideo's test transforms scale it: the long side ``floor(long / short * size)``, bilinear
    ``F.interpolate`` (``align_corners=False``, no antialiasing) on float pixels; a clip already at
    ``size`` is kept. (They normalise before resizing; bilinear weights sum to one, so the order
    changes only float rounding.)"""
    _check_clip(x)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    height, width = (int(math.floor(h / w * size)), size) if w < h else (size, int(math.floor(w / h * size)))
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


def short_side_scale(x: torch.Tensor, size: int, *, is_flow: bool = False) -> torch.Tensor:
    """Resize so the shorter side is ``size`` (dtype kept)."""
    _check_clip(x)
    width, height = short_side_size(width=x.shape[-1], height=x.shape[-2], short_side=size)
    return resize(x, height, width, is_flow=is_flow)


def crop_at(
    x: torch.Tensor, size: int | tuple[int, int], top: float, left: float, *, round_up: bool = False
) -> torch.Tensor:
    """A ``size`` crop whose offset is the fraction ``top``/``left`` (0..1) of the free room.

    Fractions rather than pixels let an RGB and a flow clip of different resolutions be
    cropped at matching places. ``round_up``: pixel offsets rounded up, as the publishers'
    ``uniform_crop`` centres (``ceil(free / 2)``), instead of to the nearest.
    """
    _check_clip(x)
    ch, cw = _pair(size)
    h, w = x.shape[-2:]
    if ch > h or cw > w:
        raise ValueError(f"crop {ch}x{cw} is larger than the frame {h}x{w}")
    place = math.ceil if round_up else round
    y0 = int(place(top * (h - ch)))
    x0 = int(place(left * (w - cw)))
    return x[..., y0 : y0 + ch, x0 : x0 + cw]


def horizontal_flip(x: torch.Tensor, is_flow: bool = False) -> torch.Tensor:
    """Mirror left-right; for flow the x displacement changes sign too."""
    _check_clip(x)
    out = x.flip(-1)
    if is_flow:
        if out.shape[0] != 2:
            raise ValueError(f"a flow clip has 2 channels (x, y), got {out.shape[0]}")
        out[0].neg_()
    return out


def normalize(
    x: torch.Tensor,
    mean: tuple[float, ...] = RGB_MEAN,
    std: tuple[float, ...] = RGB_STD,
) -> torch.Tensor:
    """``(x - mean) / std`` per channel (channel = dim 0)."""
    _check_clip(x)
    if len(mean) != x.shape[0] or len(std) != x.shape[0]:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} values for {x.shape[0]} channels")
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(-1, 1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(-1, 1, 1, 1)
    if x.dtype == torch.uint8 and x.device.type == "cpu":
        # numpy: single-threaded, so an in-process loader is not slowed by thread contention
        scale = (1.0 / (255.0 * np.asarray(std, np.float32))).reshape(-1, 1, 1, 1)
        shift = (np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(-1, 1, 1, 1)
        out = x.numpy().astype(np.float32, order="C")
        out *= scale
        out -= shift
        return torch.from_numpy(out)
    if x.dtype == torch.uint8:  # (x / 255 - m) / s in two in-place passes
        return x.float().mul_(1.0 / (255.0 * s)).sub_(m / s)
    return x.to(torch.float32, copy=True).sub_(m).div_(s)


def normalize_flow(x: torch.Tensor, scale: float = FLOW_SCALE) -> torch.Tensor:
    """Flow in pixels divided by a fixed ``scale`` (no mean-centring: zero motion stays 0)."""
    _check_clip(x)
    return x.float() / scale
