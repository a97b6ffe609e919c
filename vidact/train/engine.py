"""The training loop and its parts: input resolution, model/optimizer construction, epochs, checkpoints.

Seams for other schedules (multigrid) and for DDP:
- the batch source is a ``batch_sampler`` with ``set_epoch(epoch, start_batch)`` that yields lists
  of dataset keys (an index, or ``(index, ClipSpec)`` for a per-batch clip shape);
- the LR is a function of the fractional epoch (:class:`vidact.train.lr.LRSchedule` by default);
- rank/world size and metric reduction come from :mod:`vidact.train.distributed`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from vidact.errors import CheckpointError, UsageError
from vidact.evaluate.multiview import autocast, collect_view_scores, to_device
from vidact.evaluate.metrics import topk_accuracy
from vidact.io.atomic import atomic_write_text
from vidact.train import distributed as D
from vidact.train.checkpoint import (
    capture_rng_state,
    check_arch,
    check_classes,
    load_checkpoint,
    load_model_state,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from vidact.train.config import TrainConfig, to_toml
from vidact.train.curves import plot_curves
from vidact.train.lr import LRSchedule, set_lr
from vidact.train.metrics_log import MetricsLog
from vidact.train.precise_bn import average_bn_stats_across_ranks, update_bn_stats
from vidact.utils.progress import make_progress

LAST, BEST = "last.pt", "best.pt"


# --------------------------------------------------------------------------- inputs and models
@dataclass(frozen=True)
class ResolvedInput:
    """The clip a run feeds its model: the architecture's defaults with the config's overrides."""

    modality: str
    channels: int
    frames: int
    size: int
    stride: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_input(cfg: TrainConfig) -> ResolvedInput:
    from vidact.models import get_entry

    spec = get_entry(cfg.arch).input
    modality = cfg.modality or spec.modality
    if modality == "rgb+flow" and spec.modality != "rgb+flow":
        raise UsageError(f"arch {cfg.arch!r} takes one stream; modality 'rgb+flow' needs a two-stream model")
    if spec.modality == "rgb+flow" and modality != "rgb+flow":
        raise UsageError(f"arch {cfg.arch!r} is a two-stream model; use modality 'rgb+flow'")
    channels = spec.channels if modality == spec.modality else (2 if modality == "flow" else 3)
    return ResolvedInput(modality, channels, cfg.frames or spec.frames, cfg.size or spec.size,
                         cfg.stride or spec.stride)


def build_model(arch: str, num_classes: int, *, in_channels: int | None = None, dropout: float | None = None,
                width_mult: float = 1.0) -> nn.Module:
    """``create_model`` with only the options the run changes (a clear error if the arch lacks one)."""
    from vidact.models import create_model, get_entry

    entry = get_entry(arch)
    kwargs: dict = {"num_classes": num_classes}
    if in_channels is not None and in_channels != entry.input.channels:
        kwargs["in_channels"] = in_channels
    if dropout is not None:
        kwargs["dropout"] = dropout
    if width_mult != 1.0:
        kwargs["width_mult"] = width_mult
    try:
        return create_model(arch, **kwargs)
    except TypeError as exc:
        raise UsageError(f"arch {arch!r} does not accept these options ({exc})") from None


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' asked for, but no CUDA GPU is available")
    return device


def check_amp(amp: str, device: torch.device) -> None:
    if amp == "fp16" and device.type != "cuda":
        raise UsageError("amp=fp16 needs a CUDA device; use amp=bf16 on CPU")


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW; no weight decay on biases and normalisation parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def prepare_model(model: nn.Module, device: torch.device, *, channels_last: bool, compile: bool) -> nn.Module:
    """Move to ``device``; channels-last-3d memory format, ``torch.compile`` and DDP when asked."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if D.get_world_size() > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        model = torch.compile(model)
    return model


# --------------------------------------------------------------------------- batch source
class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled batches whose order depends only on (seed, epoch); this rank's share under DDP.

    ``set_epoch(epoch, start_batch)`` selects the epoch and skips the batches a resumed run
    has already done, so the data order continues exactly.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, *, shuffle: bool = True,
                 drop_last: bool = True, rank: int | None = None, world_size: int | None = None):
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank = D.get_rank() if rank is None else rank
        self.world_size = D.get_world_size() if world_size is None else world_size
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def batches(self) -> list[list[int]]:
        """Every batch of this rank for the current epoch (before skipping)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        order = order[self.rank::self.world_size]
        n = len(order) // self.batch_size if self.drop_last else math.ceil(len(order) / self.batch_size)
        n = max(n, 1)  # a data set smaller than one batch still trains
        return [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(n)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.start_batch:])

    def __len__(self) -> int:
        return max(len(self.batches()) - self.start_batch, 0)


def make_loader(dataset: Dataset, *, batch_size: int = 1, batch_sampler=None, workers: int = 0,
                seed: int = 0, device: torch.device | None = None, train: bool = False):
    """``build_loader`` over ``batch_sampler`` (or fixed-size batches in order); workers seeded from ``seed``."""
    from vidact.data.loader import build_loader

    return build_loader(dataset, batch_size, train=train and batch_sampler is None, workers=workers,
                        batch_sampler=batch_sampler, seed=seed, drop_last=False,
                        pin_memory=device is not None and device.type == "cuda")


# --------------------------------------------------------------------------- state and one epoch
@dataclass
class TrainState:
    """What the loop changes and a checkpoint restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    epoch: int = 0  # epochs finished
    batch_in_epoch: int = 0  # batches finished in the running epoch
    iteration: int = 0  # optimizer steps in total
    best_top1: float = -1.0


def train_one_epoch(state: TrainState, loader, *, epoch: int, iters_per_epoch: int, lr_at: Callable[[float], float],
                    device: torch.device, cfg: TrainConfig, criterion: nn.Module,
                    on_step: Callable[[dict], None] | None = None) -> dict:
    """One pass over ``loader``; returns mean loss, clips and clips/s."""
    model, optimizer, scaler = state.model, state.optimizer, state.scaler
    model.train()
    total_loss, total_clips, start = 0.0, 0, time.perf_counter()
    for batch in loader:
        epoch_f = epoch + state.batch_in_epoch / iters_per_epoch
        lr = lr_at(epoch_f)
        set_lr(optimizer, lr)
        x = to_device(batch["video"], device, cfg.channels_last)
        y = torch.as_tensor(batch["label"]).to(device)
        with autocast(device, cfg.amp):
            logits = model(x)
            loss = criterion(logits.float(), y)
        if not torch.isfinite(loss):
            raise UsageError(f"loss became {loss.item()} at epoch {epoch + 1}, iteration {state.batch_in_epoch + 1}; "
                             f"lower lr (now {lr:.3g}) or enable clip_grad")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.clip_grad > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        clips = len(y) * D.get_world_size()
        loss_value = float(D.all_reduce_mean(loss.detach()).item())
        total_loss += loss_value * len(y)
        total_clips += len(y)
        state.batch_in_epoch += 1
        state.iteration += 1
        if on_step is not None:
            elapsed = time.perf_counter() - start
            on_step({"epoch": epoch, "step": state.iteration, "epoch_f": epoch + state.batch_in_epoch / iters_per_epoch,
                     "batch": state.batch_in_epoch, "loss": loss_value, "lr": lr, "clips": clips,
                     "clips_per_s": total_clips * D.get_world_size() / max(elapsed, 1e-9)})
    seconds = time.perf_counter() - start
    return {"loss": total_loss / max(total_clips, 1), "clips": total_clips, "seconds": seconds,
            "clips_per_s": total_clips * D.get_world_size() / max(seconds, 1e-9)}


def precise_bn(model: nn.Module, loader, num_batches: int, device: torch.device, cfg: TrainConfig) -> float:
    """Recompute BatchNorm running statistics over ``num_batches`` full-shape training batches; seconds taken."""
    start = time.perf_counter()
    with autocast(device, cfg.amp):
        update_bn_stats(unwrap_model(model), loader, num_batches, device, channels_last=cfg.channels_last)
    average_bn_stats_across_ranks(unwrap_model(model))
    return time.perf_counter() - start


def validate(model: nn.Module, loader, device: torch.device, cfg: TrainConfig) -> dict:
    """Top-1/top-5 and loss over the validation loader's views (one centre clip per video in training)."""
    scores = collect_view_scores(model, loader, device, amp=cfg.amp, channels_last=cfg.channels_last)
    logits = torch.from_numpy(scores.logits)
    loss = nn.functional.cross_entropy(logits, torch.from_numpy(scores.labels)).item()
    return {"top1": topk_accuracy(scores.logits, scores.labels, 1),
            "top5": topk_accuracy(scores.logits, scores.labels, 5), "loss": loss, "clips": len(scores.labels)}


# --------------------------------------------------------------------------- checkpoints
def checkpoint_fields(state: TrainState, cfg: TrainConfig, classes: list[str], inp: ResolvedInput,
                      lr_at: Callable[[float], float], metrics: dict) -> dict:
    return {
        "arch": cfg.arch, "classes": list(classes), "config": cfg.to_dict(), "input": inp.to_dict(),
        "model": unwrap_model(state.model).state_dict(), "optimizer": state.optimizer.state_dict(),
        "scaler": state.scaler.state_dict(),
        "schedule": {"epoch": float(state.epoch), "lr": float(lr_at(float(state.epoch)))},
        "rng": capture_rng_state(), "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch,
        "iteration": state.iteration, "best_top1": float(state.best_top1), "metrics": metrics,
    }


def restore_state(state: TrainState, ckpt: dict, path: Path) -> None:
    """Load model, optimizer, scaler, counters and RNG states from a checkpoint of this run."""
    load_model_state(state.model, ckpt["model"], path)
    try:
        state.optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: optimizer state does not fit ({exc}); was optimizer changed?") from None
    if ckpt.get("scaler"):
        state.scaler.load_state_dict(ckpt["scaler"])
    state.epoch, state.batch_in_epoch = int(ckpt["epoch"]), int(ckpt.get("batch_in_epoch", 0))
    state.iteration, state.best_top1 = int(ckpt["iteration"]), float(ckpt.get("best_top1", -1.0))
    restore_rng_state(ckpt["rng"])


def resume_config(run_dir: str | Path) -> TrainConfig | None:
    """The config saved in ``RUN/last.pt`` (the base for ``--resume``), or None when there is none."""
    path = Path(run_dir) / LAST
    if not path.is_file():
        return None
    return TrainConfig.from_dict(load_checkpoint(path)["config"])


# --------------------------------------------------------------------------- data
@dataclass
class TrainData:
    classes: list[str]
    train_set: Dataset
    val_set: Dataset | None


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
    common = dict(modality=inp.modality, num_frames=inp.frames, stride=inp.stride, crop_size=inp.size,
                  flow_root=cfg.flow_root or None, data_root=cfg.data if cfg.flow_root else None, seed=cfg.seed,
                  hflip={"on": True, "off": False}.get(cfg.hflip, splits.horizontal_flip))
    try:
        train_set = VideoClipDataset(train_samples, train=True, **common)
        val_set = VideoClipDataset(val_samples, train=False, num_clips=1, num_crops=1, **common) if val_samples else None
    except ValueError as exc:
        raise UsageError(f"{cfg.data}: {exc}") from None
    return TrainData(splits.classes, train_set, val_set)


# --------------------------------------------------------------------------- the run
def fit(cfg: TrainConfig, data: TrainData, *, resume: bool = False, progress: bool | None = None,
        batch_sampler=None, lr_at: Callable[[float], float] | None = None,
        model: nn.Module | None = None) -> dict:
    """Train ``cfg.arch`` on ``data``; checkpoints, metrics and curves go to ``cfg.out``.

    ``batch_sampler`` (default :class:`EpochBatchSampler`) and ``lr_at`` (default
    :class:`LRSchedule`) are the seams for other schedules; ``model`` trains a network built
    elsewhere (e.g. an X3D search candidate) in place of ``cfg.arch``'s registry model.
    """
    cfg.validate()
    run = Path(cfg.out)
    main = D.is_main_process()
    seed_everything(cfg.seed, cfg.deterministic)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = select_device(cfg.device)
    if D.is_dist() and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", D.get_local_rank())  # one GPU per process under torchrun
    check_amp(cfg.amp, device)
    inp = resolve_input(cfg)
    num_classes = len(data.classes)
    if cfg.num_classes and cfg.num_classes != num_classes:
        raise UsageError(f"num_classes={cfg.num_classes} but {cfg.data} has {num_classes} classes")
    if model is None:
        model = build_model(cfg.arch, num_classes, in_channels=inp.channels, dropout=cfg.dropout,
                            width_mult=cfg.width_mult)
    if cfg.multigrid != "none":
        from vidact.train.subbatch_bn import convert_sub_batch_norm

        convert_sub_batch_norm(model)  # BatchNorm statistics over 8 clips, whatever the multigrid batch
    model = prepare_model(model, device, channels_last=cfg.channels_last, compile=cfg.compile)
    optimizer = build_optimizer(cfg, unwrap_model(model))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    state = TrainState(model, optimizer, scaler)
    lr_at = lr_at or LRSchedule.from_config(cfg)
    num_epochs = cfg.epochs
    if cfg.multigrid != "none" and batch_sampler is None:
        from vidact.train.samplers import multigrid_training

        multigrid = multigrid_training(cfg, len(data.train_set))  # shapes, batches and LR; epochs x 1.5
        batch_sampler, lr_at, num_epochs = multigrid.sampler, multigrid.lr_at, multigrid.epochs

    last = run / LAST
    if resume and last.is_file():
        ckpt = load_checkpoint(last)
        check_arch(ckpt, cfg.arch, last)
        check_classes(ckpt, data.classes, last, cfg.data)
        restore_state(state, ckpt, last)
    resumed_from = state.epoch if state.epoch or state.batch_in_epoch else None
    if main:
        try:
            run.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # e.g. a parent is a regular file, or a read-only file system
            raise UsageError(f"{run}: cannot create the run folder: {exc.strerror or exc}") from None
        atomic_write_text(run / "config.toml", to_toml(cfg))
    log = MetricsLog(run, resume_epoch=resumed_from) if main else None

    batches = batch_sampler or EpochBatchSampler(len(data.train_set), cfg.batch_size, cfg.seed)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    batches.set_epoch(0, 0)
    iters_per_epoch = len(batches)
    summary = {"run": str(run), "arch": cfg.arch, "epochs": num_epochs, "device": str(device),
               "resumed_from_epoch": resumed_from, "train_clips": len(data.train_set)}
    history: list[dict] = []
    started = time.perf_counter()
    with make_progress(disable=None if (main and progress is not False) else True) as bar:
        planned = getattr(batches, "total_batches", lambda n: n * iters_per_epoch)  # multigrid: varies per epoch
        task = bar.add_task(f"epoch {state.epoch + 1}/{num_epochs}", total=planned(num_epochs),
                            completed=planned(state.epoch) + state.batch_in_epoch, status="")

        def on_step(rec: dict) -> None:
            bar.update(task, advance=1, description=f"epoch {rec['epoch'] + 1}/{num_epochs}",
                       status=f"it {rec['batch']}/{iters_per_epoch} loss {rec['loss']:.3f} "
                              f"{rec['clips_per_s']:.1f} clips/s")
            if log is not None and (rec["batch"] % cfg.log_every == 0 or rec["batch"] == iters_per_epoch):
                log.log({"kind": "train", **rec})

        # One loader each for the run (persistent workers); the sampler and the data set are told the epoch.
        loader = make_loader(data.train_set, batch_sampler=batches, workers=cfg.workers, seed=cfg.seed,
                             device=device, train=True)
        val_loader = None if data.val_set is None else make_loader(
            data.val_set, batch_size=cfg.batch_size, workers=cfg.workers, seed=cfg.seed, device=device)
        # Precise BN: full-shape training clips, a fixed draw per epoch (so a resumed run draws the same).
        bn_batches = cfg.resolved_precise_bn()
        bn_sampler = EpochBatchSampler(len(data.train_set), cfg.batch_size, seed=cfg.seed + 1) if bn_batches else None
        bn_loader = None if bn_sampler is None else make_loader(
            data.train_set, batch_sampler=bn_sampler, workers=cfg.workers, seed=cfg.seed, device=device)
        for epoch in range(state.epoch, num_epochs):
            batches.set_epoch(epoch, state.batch_in_epoch)
            iters_per_epoch = len(batches) + state.batch_in_epoch
            if hasattr(data.train_set, "set_epoch"):
                data.train_set.set_epoch(epoch)
            stats = train_one_epoch(state, loader, epoch=epoch, iters_per_epoch=iters_per_epoch, lr_at=lr_at,
                                    device=device, cfg=cfg, criterion=criterion, on_step=on_step)
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            record = {"epoch": epoch, "train_loss": stats["loss"], "clips_per_s": stats["clips_per_s"],
                      "seconds": stats["seconds"]}
            is_best = False
            validating = data.val_set is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == num_epochs)
            if bn_loader is not None and (validating or epoch + 1 == num_epochs):
                bn_sampler.set_epoch(epoch)
                record["precise_bn_seconds"] = precise_bn(state.model, bn_loader, bn_batches, device, cfg)
            if validating:
                val = validate(state.model, val_loader, device, cfg)
                record.update({"val_top1": val["top1"], "val_top5": val["top5"], "val_loss": val["loss"]})
                if log is not None:
                    log.log({"kind": "val", "epoch": epoch, "step": state.iteration, **val})
                if val["top1"] > state.best_top1:
                    state.best_top1, is_best = val["top1"], True
            history.append(record)
            if log is not None:
                log.log({"kind": "epoch", "step": state.iteration, **record})
            if main:
                fields = checkpoint_fields(state, cfg, data.classes, inp, lr_at, record)
                save_checkpoint(last, **fields)
                if is_best:
                    save_checkpoint(run / BEST, **fields)
    if log is not None:
        log.close()
    if main:
        plot_curves(run)
    final = history[-1] if history else {}
    summary.update({
        "seconds": time.perf_counter() - started, "iterations": state.iteration,
        "final_train_loss": final.get("train_loss"), "final_val_top1": final.get("val_top1"),
        "best_val_top1": state.best_top1 if state.best_top1 >= 0 else None,
        "clips_per_s": final.get("clips_per_s"), "last": str(last),
        "best": str(run / BEST) if (run / BEST).is_file() else None, "history": history,
        # reads of unreadable videos that were replaced by other samples (each logged once)
        "unreadable_samples": sum(getattr(ds, "skipped", 0) for ds in (data.train_set, data.val_set) if ds is not None),
    })
    return summary


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool | None = None) -> dict:
    """Everything ``vidact train`` does: data from ``cfg.data``, then :func:`fit`."""
    cfg.validate()
    inp = resolve_input(cfg)
    joined = D.init_from_env()  # under torchrun: join the process group (gloo on CPU, NCCL on CUDA)
    try:
        return fit(cfg, build_data(cfg, inp), resume=resume, progress=progress)
    finally:
        if joined:
            D.cleanup()


def model_from_checkpoint(ckpt: dict, path: str | Path, device: torch.device) -> tuple[nn.Module, ResolvedInput]:
    """The trained model of a checkpoint, in eval mode on ``device``, with the input it expects."""
    cfg = TrainConfig.from_dict(ckpt["config"])
    inp = ResolvedInput(**ckpt["input"]) if "input" in ckpt else resolve_input(cfg)
    model = build_model(ckpt["arch"], len(ckpt["classes"]), in_channels=inp.channels, dropout=cfg.dropout,
                        width_mult=cfg.width_mult)
    load_model_state(model, ckpt["model"], path)
    return model.to(device).eval(), inp
