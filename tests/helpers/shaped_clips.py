"""In-memory clips served at any multigrid ``ClipSpec``, and a tiny3d multigrid config over them."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from helpers.tiny_model import register_tiny
from vidact.data.dataset import ClipSpec

FRAMES, SIZE = 8, 16


class ShapedClips(torch.utils.data.Dataset):
    """In-memory moving squares served at any ``ClipSpec`` (frames, crop by resizing, stride)."""

    def __init__(self, num_videos: int, num_classes: int = 4, seed: int = 0, train: bool = True):
        g = torch.Generator().manual_seed(seed)
        self.labels = [i % num_classes for i in range(num_videos)]
        self.clips = []
        for label in self.labels:
            clip = 0.1 * torch.randn(3, 2 * FRAMES, SIZE, SIZE, generator=g)
            y0, x0 = (int(v) for v in torch.randint(0, SIZE - 6, (2,), generator=g))
            dy, dx = [(0, 1), (0, -1), (1, 0), (-1, 0)][label]
            for t in range(2 * FRAMES):
                y, x = (y0 + dy * t // 2) % (SIZE - 6), (x0 + dx * t // 2) % (SIZE - 6)
                clip[:, t, y : y + 6, x : x + 6] += 2.0
            self.clips.append(clip)
        self.train, self.epoch, self.default = train, 0, ClipSpec(FRAMES, SIZE, 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key):
        index, spec = key if isinstance(key, tuple) else (key, self.default)
        clip = self.clips[index]
        span = (spec.num_frames - 1) * spec.stride + 1
        rng = np.random.default_rng([self.epoch, index])
        start = int(rng.integers(0, clip.shape[1] - span + 1)) if self.train else 0
        clip = clip[:, start : start + span : spec.stride]
        clip = (
            F.interpolate(clip.transpose(0, 1), size=(spec.crop_size,) * 2, mode="bilinear", align_corners=False)
            .transpose(0, 1)
            .contiguous()
        )
        return {"video": clip, "label": self.labels[index], "index": index, "view": 0}


def shaped_data():
    """64 training and 8 validation clips of four motion classes."""
    from vidact.train.data import TrainData

    return TrainData([f"class{i}" for i in range(4)], ShapedClips(64), ShapedClips(8, seed=1, train=False))


def shaped_config(out, **changes):
    """A tiny3d multigrid (long+short) training config over :func:`shaped_data`; ``changes`` override."""
    from vidact.train.config import load_config

    values = dict(
        arch=register_tiny(),
        data="memory",
        out=str(out),
        frames=FRAMES,
        size=SIZE,
        stride=1,
        epochs=2,
        batch_size=1,
        optimizer="sgd",
        lr=0.02,
        warmup_epochs=0.5,
        deterministic=True,
        workers=0,  # in-memory clips: nothing to decode
        overrides=["multigrid=long+short", "log_every=1"],
    )
    values.update(changes)
    return load_config(**values)
