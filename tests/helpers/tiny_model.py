"""A tiny 3D CNN registered as ``tiny3d``, in-memory motion clips and untrained checkpoints for the tests."""

from __future__ import annotations

import torch
from torch import nn

from vidact.models.registry import _REGISTRY, InputSpec, register_model

TINY = "tiny3d"
TINY_INPUT = InputSpec(channels=3, frames=8, size=32, stride=2)


class Tiny3d(nn.Module):
    """conv-bn-relu, strided conv, global pool, dropout, linear."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3, dropout: float = 0.0, width_mult: float = 1.0):
        super().__init__()
        width = max(4, int(8 * width_mult))
        self.features = nn.Sequential(
            nn.Conv3d(in_channels, width, 3, padding=1),
            nn.BatchNorm3d(width),
            nn.ReLU(),
            nn.Conv3d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))


def register_tiny() -> str:
    """Register ``tiny3d`` once per process; returns its name."""
    if TINY not in _REGISTRY:
        register_model(TINY, input=TINY_INPUT, family="test")(Tiny3d)
    return TINY


class FakeMotionClips(torch.utils.data.Dataset):
    """In-memory clips whose class is a square of one colour moving in one of four directions.

    Items use the global torch and numpy RNGs (noise, flips), like real augmentation does,
    so an exact resume must restore them.
    """

    def __init__(
        self,
        num_videos: int = 16,
        num_classes: int = 4,
        frames: int = 8,
        size: int = 16,
        seed: int = 0,
        train: bool = True,
    ):
        g = torch.Generator().manual_seed(seed)
        self.labels = [i % num_classes for i in range(num_videos)]
        self.clips = []
        for label in self.labels:
            clip = 0.1 * torch.randn(3, frames, size, size, generator=g)
            y0, x0 = (int(v) for v in torch.randint(0, size - 6, (2,), generator=g))
            dy, dx = [(0, 1), (0, -1), (1, 0), (-1, 0)][label % 4]
            colour = torch.tensor([(1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0), (1.0, 1.0, 0)][label % 4])
            for t in range(frames):
                y, x = (y0 + dy * t // 2) % (size - 6), (x0 + dx * t // 2) % (size - 6)
                clip[:, t, y : y + 6, x : x + 6] += 2 * colour[:, None, None]
            self.clips.append(clip)
        self.train = train

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index):
        clip = self.clips[index]
        if self.train:
            import numpy as np

            clip = (clip + 0.05 * torch.randn_like(clip)) * float(np.random.uniform(0.9, 1.1))
        return {"video": clip, "label": self.labels[index], "index": index, "view": 0}


def fake_data(num_classes: int = 4):
    from vidact.train.data import TrainData

    return TrainData(
        [f"class{i}" for i in range(num_classes)],
        FakeMotionClips(16, num_classes),
        FakeMotionClips(8, num_classes, seed=1, train=False),
    )


def fake_config(out, **changes):
    from vidact.train.config import load_config

    register_tiny()
    values = dict(
        arch=TINY,
        data="fake",
        out=str(out),
        frames=8,
        size=16,
        epochs=3,
        batch_size=4,
        optimizer="adamw",
        lr=0.03,
        weight_decay=0.0,
        dropout=0.2,
        warmup_epochs=0.5,
        deterministic=True,
        log_every=1,
        workers=0,  # in-memory clips: nothing to decode
    )
    values.update(changes)
    return load_config(**values)


def run_fake_training(out: str, epochs: int, resume: bool, seconds_per_step: float = 0.0, **changes) -> None:
    """Entry point for the SIGKILL tests' child processes; each step can be slowed down by ``seconds_per_step``."""
    from helpers.step_hooks import slow_steps
    from vidact.train.engine import fit

    torch.set_num_threads(1)
    slow_steps(seconds_per_step)
    fit(fake_config(out, epochs=epochs, **changes), fake_data(), resume=resume, progress=False)


def make_checkpoint(path, classes: list[str], *, frames: int = 4, size: int = 16, stride: int = 2, seed: int = 0):
    """An untrained ``tiny3d`` checkpoint for ``classes`` (eval/predict tests need no training)."""
    from vidact.runtime.checkpoint import save_checkpoint
    from vidact.train.config import load_config

    register_tiny()
    torch.manual_seed(seed)
    cfg = load_config(arch=TINY, frames=frames, size=size, stride=stride, dropout=0.0)
    model = Tiny3d(num_classes=len(classes), dropout=0.0)
    inp = {"modality": "rgb", "channels": 3, "frames": frames, "size": size, "stride": stride}
    save_checkpoint(
        path,
        arch=TINY,
        classes=list(classes),
        config=cfg.to_dict(),
        input=inp,
        model=model.state_dict(),
        epoch=0,
        iteration=0,
    )
    return path
