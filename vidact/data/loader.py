"""``build_loader`` and ``make_loader``: DataLoaders for ``VideoClipDataset`` with seeded workers and a clip collate."""

from __future__ import annotations

import random
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def collate_clips(items: list[dict]) -> dict:
    """Stack items into a batch: ``video`` (B, C, T, H, W) or a list of such per stream,
    and ``label``, ``index``, ``view`` as int64 tensors."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    first = items[0]["video"]
    if isinstance(first, (list, tuple)):
        video = [torch.stack([it["video"][s] for it in items]) for s in range(len(first))]
    else:
        video = torch.stack([it["video"] for it in items])
    batch = {"video": video}
    for key in ("label", "index", "view"):
        batch[key] = torch.tensor([int(it[key]) for it in items], dtype=torch.int64)
    return batch


# Signals that ask a job to stop (a scheduler's SIGTERM or chosen SIGUSR1, a terminal's SIGINT). A job
# scheduler sends them to every process of the job: loader workers ignore them, so that the main
# process decides when to stop (a worker that died of one would end it mid-iteration).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a worker from torch's per-worker seed (itself from the loader's seed);
    the worker ignores :data:`STOP_SIGNALS` (it still ends when its main process does).

    OpenCV's thread count is deliberately left alone: ``cv2.setNumThreads`` in a forked
    worker can deadlock on the parent's thread-pool state (seen with OpenCV 5.0).
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    workers: int = 2,
    sampler=None,
    batch_sampler=None,
    seed: int = 0,
    drop_last: bool | None = None,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
) -> DataLoader:
    """A DataLoader over ``dataset``: shuffled when ``train`` (unless a sampler is given),
    persistent seeded workers when ``workers > 0``, batches from :func:`collate_clips`.

    With ``batch_sampler`` (e.g. multigrid's shape-per-batch sampler) the batch size,
    shuffling and ``drop_last`` come from it.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    generator = torch.Generator()
    generator.manual_seed(seed)
    kwargs = dict(
        num_workers=workers,
        collate_fn=collate_clips,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker,
        generator=generator,
    )
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=prefetch_factor)
    if batch_sampler is not None:
        if sampler is not None:
            raise ValueError("give either sampler or batch_sampler, not both")
        return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train if drop_last is None else drop_last,
        **kwargs,
    )


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int = 1,
    batch_sampler=None,
    workers: int = 0,
    seed: int = 0,
    device: torch.device | None = None,
    train: bool = False,
) -> DataLoader:
    """:func:`build_loader` over ``batch_sampler`` (or fixed-size batches in order), pinned memory for CUDA."""
    return build_loader(
        dataset,
        batch_size,
        train=train and batch_sampler is None,
        workers=workers,
        batch_sampler=batch_sampler,
        seed=seed,
        drop_last=False,
        pin_memory=device is not None and device.type == "cuda",
    )
