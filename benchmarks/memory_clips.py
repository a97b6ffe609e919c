"""Synthetic clips held in memory for the training benchmarks (``multigrid.py``, ``x3d_parity.py``).

The clips are the synthetic set's own (``vidact.data.synthetic.render_clip`` with the seeds of
``vidact data synth``), rendered straight into memory without the H.264 round trip, so a
benchmark measures training rather than decoding; ``load_dataset_clips`` decodes an existing
data set folder instead.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

MEAN, STD = 0.45, 0.225


def render_split(
    classes: int,
    per_class: int,
    clip_frames: int,
    clip_size: int,
    *,
    frame_step: int = 1,
    seed: int = 0,
    style: str = "dots",
    val_fraction: float = 0.25,
) -> dict:
    """``{"train": (videos, labels), "val": ...}``: uint8 videos (N, T, 3, H, W), split as ``vidact data synth``."""
    from vidact.data.synthetic import MOTIONS, clip_seed, render_clip

    n_val = max(1, int(round(per_class * val_fraction)))
    out = {"train": ([], []), "val": ([], [])}
    for label, name in enumerate(MOTIONS[:classes]):
        for i in range(per_class):
            clip = render_clip(name, clip_frames, clip_size, clip_seed(seed, label, i), style=style)[::frame_step]
            split = "val" if i >= per_class - n_val else "train"
            out[split][0].append(torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2))
            out[split][1].append(label)
    return {k: (torch.stack(v), torch.tensor(y)) for k, (v, y) in out.items()}


def load_dataset_clips(folder) -> tuple[list[str], dict]:
    """Class names and decoded ``{"train": (videos, labels), "val": ...}`` of a data set folder."""
    from vidact.data.annotations import load_dataset_dir
    from vidact.io.video import decode_frames, probe

    ds = load_dataset_dir(folder)
    out = {}
    for split in ("train", "val"):
        videos, labels = [], []
        for s in ds.split(split):
            frames = decode_frames(s.path, np.arange(probe(s.path).num_frames))  # (T, H, W, 3) uint8
            videos.append(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))
            labels.append(s.label)
        n = min(len(v) for v in videos)
        out[split] = (torch.stack([v[:n] for v in videos]), torch.tensor(labels))
    return ds.classes, out


class ClipSource:
    """Clips of uint8 videos (N, T0, 3, H, W) at any (frames, stride, crop), for training or evaluation.

    A crop smaller than ``full_crop`` is taken from the frames scaled by ``crop / full_crop`` (it
    keeps the full crop's field of view, as multigrid's shapes do). The scaled copies of the whole
    set are made once per scale (:meth:`prepare`, or on first use), so an 8x batch of small clips
    costs what its training costs, not 8x the resizing.
    """

    def __init__(self, videos: torch.Tensor, full_crop: int):
        self.videos, self.full_crop = videos, full_crop
        self.scaled: dict[int, torch.Tensor] = {videos.shape[-1]: videos}

    def side(self, crop: int) -> int:
        return max(crop, int(round(self.videos.shape[-1] * crop / self.full_crop)))

    def prepare(self, crops) -> None:
        for crop in crops:
            side = self.side(crop)
            if side not in self.scaled:
                n, t, c, h, w = self.videos.shape
                out = torch.empty(n, t, c, side, side, dtype=torch.uint8)
                for lo in range(0, n, 64):
                    chunk = self.videos[lo : lo + 64].reshape(-1, c, h, w).float()
                    chunk = F.interpolate(
                        chunk, size=(side, side), mode="bilinear", align_corners=False, antialias=True
                    )
                    out[lo : lo + 64] = chunk.round_().clamp_(0, 255).to(torch.uint8).reshape(-1, t, c, side, side)
                self.scaled[side] = out

    def clip(self, index: int, frames: int, stride: int, crop: int, rng: np.random.Generator | None) -> torch.Tensor:
        """One normalised (3, T, S, S) clip: random start and crop with ``rng`` (training), else the centre."""
        side = self.side(crop)
        self.prepare([crop])
        video = self.scaled[side][index]
        n = len(video)
        stride = min(stride, max(1, (n - 1) // max(frames - 1, 1)))
        span = (frames - 1) * stride + 1
        start = int(rng.integers(0, n - span + 1)) if rng is not None else (n - span) // 2
        room = side - crop
        top, left = (int(rng.integers(0, room + 1)) for _ in range(2)) if rng is not None else (room // 2,) * 2
        clip = video[start : start + span : stride, :, top : top + crop, left : left + crop].float()
        return ((clip / 255.0 - MEAN) / STD).permute(1, 0, 2, 3).contiguous()

    def batch(self, index, frames: int, stride, crop: int, rng: np.random.Generator | None) -> torch.Tensor:
        """(B, 3, T, S, S) clips; ``stride`` is one int or one per clip."""
        strides = stride if isinstance(stride, (list, tuple, np.ndarray)) else [stride] * len(index)
        return torch.stack([self.clip(int(i), frames, int(s), crop, rng) for i, s in zip(index, strides)])


class MemoryClips(Dataset):
    """vidact's dataset interface over in-memory videos: keys are ``index`` or ``(index, ClipSpec)``.

    No flips: mirroring swaps the synthetic set's left/right and rotation classes.
    """

    def __init__(self, source: ClipSource, labels: torch.Tensor, default, *, train: bool, seed: int = 0):
        self.source, self.labels, self.default, self.train, self.seed = source, labels, default, train, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        index, spec = key if isinstance(key, tuple) else (key, self.default)
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        clip = self.source.clip(index, spec.num_frames, spec.stride, spec.crop_size, rng)
        return {"video": clip, "label": int(self.labels[index]), "index": index, "view": 0}
