"""The data a training run reads: the classes and the train and validation sets of a data set folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from vidact.errors import UsageError, first_line
from vidact.runtime.build import ResolvedInput, resolve_input
from vidact.train.config import TrainConfig


@dataclass
class TrainData:
    """Class names and the two data sets (any map-style ``Dataset`` of ``{"video", "label", ...}`` items)."""

    classes: list[str]
    train_set: Dataset
    val_set: Dataset | None


def config_input(cfg: TrainConfig) -> ResolvedInput:
    """The clip a config's run feeds its model (the architecture's defaults with the config's overrides)."""
    return resolve_input(cfg.arch, cfg.modality, cfg.frames, cfg.size, cfg.stride)


def build_data(cfg: TrainConfig, inp: ResolvedInput) -> TrainData:
    """Train and validation datasets from the data set folder ``cfg.data``."""
    from vidact.data.annotations import load_dataset_dir
    from vidact.data.dataset import VideoClipDataset

    if not cfg.data:
        raise UsageError("no data: pass --data LISTS/ (a folder with classes.txt and train.csv)")
    splits = load_dataset_dir(cfg.data)
    train_samples = splits.split("train")
    if not train_samples:
        raise UsageError(f"{Path(cfg.data) / 'train.csv'}: no samples listed")
    val_samples = splits.splits.get(cfg.val_split) or []
    common = dict(
        modality=inp.modality,
        num_frames=inp.frames,
        stride=inp.stride,
        crop_size=inp.size,
        flow_root=cfg.flow_root or None,
        data_root=cfg.data if cfg.flow_root else None,
        seed=cfg.seed,
        hflip={"on": True, "off": False}.get(cfg.hflip, splits.horizontal_flip),
        scale_range=tuple(cfg.scale_range) if cfg.scale_range else None,
    )
    try:
        train_set = VideoClipDataset(train_samples, train=True, **common)
        val_set = (
            VideoClipDataset(val_samples, train=False, num_clips=1, num_crops=1, **common) if val_samples else None
        )
    except ValueError as exc:
        raise UsageError(f"{cfg.data}: {first_line(exc)}") from None
    return TrainData(splits.classes, train_set, val_set)
