"""The training loop: a set-up step that returns a :class:`Run`, one epoch, and small epoch-end steps.

``fit`` reads like torchvision's reference script: :func:`setup_run` (device, model, optimizer,
schedule, batches, loaders, resume, run folder), then per epoch :func:`train_one_epoch` and the
epoch-end steps :func:`precise_bn_step`, :func:`validate_step` and :func:`checkpoint_step`, then
:func:`finish_run`.

Seams for other schedules (multigrid) and for DDP:
- the batch source is a ``batch_sampler`` with ``set_epoch(epoch, start_batch)`` that yields lists
  of dataset keys (an index, or ``(index, ClipSpec)`` for a per-batch clip shape);
- the LR is a function of the fractional epoch (:class:`vidact.train.lr.LRSchedule` by default);
- rank/world size and metric reduction come from :mod:`vidact.runtime.distributed`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from vidact.data.loader import ClipLoader, LoaderPlan, make_loader, plan_loading
from vidact.errors import TrainingDiverged, UsageError
from vidact.evaluate.metrics import topk_accuracy
from vidact.evaluate.multiview import collect_view_scores
from vidact.io.atomic import atomic_write_text
from vidact.io.progress import make_progress
from vidact.io.video import decoder_threads, set_decoder_threads
from vidact.runtime import distributed
from vidact.runtime.build import ResolvedInput, build_model
from vidact.runtime.checkpoint import save_checkpoint
from vidact.runtime.device import autocast, check_amp, resolve_speed, seed_everything, select_device, to_device
from vidact.runtime.provenance import write_environment
from vidact.runtime.wrap import prepare_model, unwrap_model
from vidact.train.accumulate import accumulate_gradients
from vidact.train.config import TrainConfig, to_toml
from vidact.train.curves import plot_curves
from vidact.train.data import TrainData, build_data, config_input
from vidact.train.finetune import Finetuning, param_groups, prepare_finetuning
from vidact.train.lr import LRSchedule, set_lr
from vidact.train.memory import checkpoint_stages, out_of_memory
from vidact.train.metrics_log import MetricsLog
from vidact.train.noise_monitor import CONSECUTIVE, DEFAULT_CHECK_EVERY, DEFAULT_CHECK_WINDOW, NoiseMonitor
from vidact.train.noise_scale import (
    LocalGradientNorm,
    attach_local_norm,
    gradient_squared_norm,
    mean_over_ranks,
    micro_batch_backward,
    micro_batches_exact,
    sub_batches,
)
from vidact.train.precise_bn import average_bn_stats_across_ranks, update_bn_stats
from vidact.train.preemption import Cadence, StepControl, StopSignals, signal_name
from vidact.train.samplers import EpochBatchSampler, TrainingBatches
from vidact.train.state import BEST, LAST, TrainState, checkpoint_fields, resume_from_folder
from vidact.train.subbatch_bn import BN_BASE, convert_sub_batch_norm

logger = logging.getLogger(__name__)
DATA_WAIT_WARNING = 1 / 3  # share of a training step spent waiting for data that earns a warning
DATA_WAIT_MIN_STEPS = 8  # steps (each epoch's first left out) measured before the share is trusted


def build_optimizer(cfg: TrainConfig, model: nn.Module, head: list[str] = ()) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW; no weight decay on biases and normalisation parameters; with
    ``backbone_lr_mult`` the parameters outside ``head`` (the classifier's keys) in groups at lr x mult."""
    groups = param_groups(
        model, lr=cfg.lr, weight_decay=cfg.weight_decay, head=list(head), backbone_lr_mult=cfg.backbone_lr_mult
    )
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


# --------------------------------------------------------------------------- the run
@dataclass
class StepTimes:
    """Where an epoch's time went: waiting for the loader, and the steps themselves, per clip shape."""

    wait: float = 0.0
    compute: float = 0.0
    steady_wait: float = 0.0  # without each epoch's first batch (workers start, the prefetch queue refills)
    steady_compute: float = 0.0
    steady_steps: int = 0
    shapes: dict[str, dict] = field(default_factory=dict)

    def add(self, shape: str, clips: int, wait: float, compute: float, first: bool) -> None:
        self.wait += wait
        self.compute += compute
        if not first:
            self.steady_wait += wait
            self.steady_compute += compute
            self.steady_steps += 1
        row = self.shapes.setdefault(shape, {"steps": 0, "clips": 0, "wait_s": 0.0, "compute_s": 0.0})
        row["steps"] += 1
        row["clips"] += clips
        row["wait_s"] += wait
        row["compute_s"] += compute

    @property
    def wait_fraction(self) -> float:
        """Share of the epoch's steps spent waiting for data."""
        return self.wait / max(self.wait + self.compute, 1e-9)

    @property
    def steady_wait_fraction(self) -> float:
        """The same without each epoch's first batch: what more workers or faster reads could save."""
        return self.steady_wait / max(self.steady_wait + self.steady_compute, 1e-9)

    def to_dict(self) -> dict:
        shapes = {
            k: {**v, "clips_per_s": v["clips"] / max(v["wait_s"] + v["compute_s"], 1e-9)}
            for k, v in sorted(self.shapes.items())
        }
        return {
            "data_wait_s": self.wait,
            "compute_s": self.compute,
            "data_wait_fraction": self.wait_fraction,
            "shapes": shapes,
        }


@runtime_checkable
class EpochAware(Protocol):
    """A training set whose augmentation depends on the epoch (``VideoClipDataset``)."""

    def set_epoch(self, epoch: int) -> None: ...


@dataclass
class PreciseBN:
    """Full-shape training batches that refresh BatchNorm statistics before a validation."""

    batches: int  # per refresh
    sampler: EpochBatchSampler  # a fixed draw per epoch, so a resumed run draws the same
    loader: ClipLoader


@dataclass(kw_only=True)
class Run:
    """A training run after :func:`setup_run`: what every epoch and epoch-end step reads."""

    cfg: TrainConfig
    data: TrainData
    inp: ResolvedInput
    device: torch.device
    amp: str  # resolved: none | bf16 | fp16
    channels_last: bool  # resolved
    state: TrainState
    batches: TrainingBatches
    lr_at: Callable[[float], float]
    num_epochs: int
    loader: ClipLoader
    val_loader: ClipLoader | None
    precise_bn: PreciseBN | None
    criterion: nn.Module
    folder: Path
    log: MetricsLog | None  # rank 0 only
    resumed_from: int | None  # the epoch a resumed run continued from
    loading: LoaderPlan  # loader workers, decoder and torch threads
    finetuning: Finetuning | None = None  # pretrained weights loaded, parts frozen (registry models only)
    noise: NoiseMonitor | None = None  # gradient noise-scale measurement, when on
    local_norm: LocalGradientNorm | None = None  # under DDP: each rank's gradient norm before the all-reduce
    control: StepControl = field(default_factory=StepControl)  # after each step: save? stop? (agreed by all ranks)
    probe: dict | None = None  # what the probe measured before training (auto settings)
    history: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    steady: StepTimes = field(default_factory=StepTimes)  # the run's steps so far, for the warning
    warned_data_wait: bool = False

    @property
    def is_main_process(self) -> bool:
        """Rank 0 (or the only process): the one that writes the run folder."""
        return distributed.is_main_process()


def _runtime(cfg: TrainConfig) -> tuple[torch.device, LoaderPlan]:
    """Seeds, the device (one GPU per process under torchrun) and this process's share of the cores:
    loader workers, decoder threads and torch threads (:func:`vidact.data.loader.plan_loading`)."""
    seed_everything(cfg.seed, cfg.deterministic)
    processes = distributed.launch_env().local_world_size
    loading = plan_loading(processes=processes, workers=cfg.workers, torch_threads=cfg.threads)
    torch.set_num_threads(loading.torch_threads)
    set_decoder_threads(loading.decoder_threads)  # what this process opens itself (no workers, evaluation)
    return select_device(cfg.device), loading


def _model(
    cfg: TrainConfig,
    inp: ResolvedInput,
    num_classes: int,
    model: nn.Module | None,
    *,
    load_pretrained: bool = True,
    notify: Callable[[str], None] | None = None,
) -> tuple[nn.Module, Finetuning | None]:
    """The registry model (``cfg.pretrained`` loaded, ``cfg.freeze`` applied) or ``model``, its stages'
    activations checkpointed when asked."""
    if cfg.num_classes and cfg.num_classes != num_classes:
        raise UsageError(f"num_classes={cfg.num_classes} but {cfg.data} has {num_classes} classes")
    finetuning = None
    if model is None:

        def rebuild(n: int) -> nn.Module:
            return build_model(
                cfg.arch,
                n,
                in_channels=inp.channels,
                dropout=cfg.dropout,
                width_mult=cfg.width_mult,
                train_clip=(inp.frames, inp.size),
            )

        model = rebuild(num_classes)
        main = distributed.is_main_process()
        finetuning = prepare_finetuning(
            model, cfg, rebuild, load_weights=load_pretrained, progress=None if main else False
        )
        if notify is not None and main:
            for line in finetuning.lines():
                notify(line)
    if cfg.activation_checkpointing:
        stages = checkpoint_stages(model, cfg.activation_checkpointing)
        if notify is not None and distributed.is_main_process():
            notify(f"activation checkpointing: {len(stages)} stages ({', '.join(stages)})")
    return model, finetuning


def _decide(
    cfg: TrainConfig,
    data: TrainData,
    inp: ResolvedInput,
    model: nn.Module,
    device: torch.device,
    amp: str,
    loading: LoaderPlan,
    head: list[str] = (),
    notify: Callable[[str], None] | None = None,
) -> tuple[TrainConfig, dict | None]:
    """The recipe's steps check, then what waits on the probe (``--multigrid auto``, ``--lr auto``, the bounded
    rule's critical batch), decided on ``model`` at its initial weights."""
    from vidact.train.auto import resolve_auto
    from vidact.train.recipes import get_recipe

    if cfg.recipe and notify is not None and distributed.is_main_process():
        line = get_recipe(cfg.recipe).steps_warning(cfg, len(data.train_set), distributed.get_world_size())
        if line:
            notify(line)
    return resolve_auto(
        cfg,
        data.train_set,
        model,
        device,
        frames=inp.frames,
        size=inp.size,
        stride=inp.stride,
        amp=amp,
        loading=loading,
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        make_optimizer=lambda lr: build_optimizer(dataclasses.replace(cfg, lr=lr), model, head),
        notify=notify,
    )


def plan_run(cfg: TrainConfig, notify: Callable[[str], None] | None = None) -> tuple[TrainConfig, dict | None]:
    """What ``vidact train`` would decide before its first epoch (``--dry-run``): ``cfg`` with the probe's
    decisions, and the probe's report (None when nothing waited on it)."""
    cfg.validate()
    (device, loading), inp = _runtime(cfg), config_input(cfg)
    data = build_data(cfg, inp)
    model, finetuning = _model(cfg, inp, len(data.classes), None)
    amp, _ = resolve_speed(model, device, amp=cfg.amp, channels_last=cfg.channels_last)
    head = finetuning.head if finetuning is not None else ()
    return _decide(cfg, data, inp, model.to(device), device, amp, loading, head, notify)


def _schedule(
    cfg: TrainConfig, num_samples: int, batch_sampler: TrainingBatches | None, lr_at: Callable[[float], float] | None
) -> tuple[TrainingBatches, Callable[[float], float], int]:
    """(batch sampler, LR function, epochs): plain, multigrid, or the caller's seams."""
    if cfg.multigrid != "none" and batch_sampler is None:
        from vidact.train.samplers import multigrid_training

        multigrid = multigrid_training(cfg, num_samples)  # shapes, batches and LR; epochs x 1.5
        return multigrid.sampler, multigrid.lr_at, multigrid.epochs
    return (
        batch_sampler or EpochBatchSampler(num_samples, cfg.step_batch_size, cfg.seed),
        lr_at or LRSchedule.from_config(cfg),
        cfg.epochs,
    )


def _run_folder(
    cfg: TrainConfig, folder: Path, finetuning: Finetuning | None = None, loading: LoaderPlan | None = None
) -> None:
    """Create the run folder and write ``config.toml`` (with the loading chosen, as a comment), ``env.json``
    and ``pretrained.json`` (rank 0)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a parent is a regular file, or a read-only file system
        raise UsageError(f"{folder}: cannot create the run folder: {exc.strerror or exc}") from None
    chosen = f"# {loading.line()}\n" if loading is not None else ""
    atomic_write_text(folder / "config.toml", chosen + to_toml(cfg))
    write_environment(folder)
    if finetuning is not None and finetuning.pretrained is not None:
        atomic_write_text(folder / "pretrained.json", json.dumps(finetuning.pretrained.to_dict(), indent=2) + "\n")


def setup_run(
    cfg: TrainConfig,
    data: TrainData,
    *,
    resume: bool = False,
    batch_sampler: TrainingBatches | None = None,
    lr_at: Callable[[float], float] | None = None,
    model: nn.Module | None = None,
    notify: Callable[[str], None] | None = None,
) -> Run:
    """Everything before the first epoch: device, model (pretrained, frozen), optimizer, schedule, loaders,
    resume, run folder. ``notify`` receives the one-line reports of what ``--pretrained``/``--freeze`` did.
    ``cfg`` is validated (:func:`fit` and :func:`vidact.train.config.load_config` do it)."""
    started = time.perf_counter()
    device, loading = _runtime(cfg)
    inp = config_input(cfg)
    folder = Path(cfg.out)
    # a resumed run restores its weights from last.pt: no pretrained download or conversion then
    resuming = resume and (folder / LAST).is_file()
    model, finetuning = _model(cfg, inp, len(data.classes), model, load_pretrained=not resuming, notify=notify)
    head = finetuning.head if finetuning is not None else ()
    amp, channels_last = resolve_speed(model, device, amp=cfg.amp, channels_last=cfg.channels_last)
    check_amp(amp, device)
    probe = None
    if not resuming and batch_sampler is None:  # a resumed run's config holds what its probe decided
        cfg, probe = _decide(cfg, data, inp, model.to(device), device, amp, loading, head, notify)
    if cfg.multigrid != "none":
        convert_sub_batch_norm(model)  # BatchNorm statistics over 8 clips, whatever the multigrid batch
    elif cfg.accumulate > 1:
        convert_sub_batch_norm(model, base=cfg.batch_size)  # each micro-batch normalised alone, stats once a step
    model = prepare_model(model, device, channels_last=channels_last, compile=cfg.compile)
    optimizer = build_optimizer(cfg, unwrap_model(model), head)
    state = TrainState(model, optimizer, torch.amp.GradScaler(device.type, enabled=amp == "fp16"))
    batches, lr_at, num_epochs = _schedule(cfg, len(data.train_set), batch_sampler, lr_at)
    resumed_from = resume_from_folder(state, cfg, data.classes, folder) if resume else None
    if distributed.is_main_process():
        _run_folder(cfg, folder, finetuning, loading)
        if notify is not None:
            notify(loading.line())
    resume_at = None if resumed_from is None else (state.epoch, state.iteration)
    if resume_at is not None and notify is not None and distributed.is_main_process():
        notify(f"resumed from {folder / LAST} at {state.position()}")
    log = MetricsLog(folder, resume_at=resume_at) if distributed.is_main_process() else None

    # One loader each for the run (persistent workers); the sampler and the data set are told the epoch.
    workers = dict(workers=loading.workers, decoder_threads=loading.decoder_threads, seed=cfg.seed, device=device)
    loader = make_loader(data.train_set, batch_sampler=batches, train=True, **workers)
    val_loader = None if data.val_set is None else make_loader(data.val_set, batch_size=cfg.batch_size, **workers)
    noise = _noise_monitor(cfg, batches, unwrap_model(model), notify)
    return Run(
        cfg=cfg,
        data=data,
        inp=inp,
        device=device,
        amp=amp,
        channels_last=channels_last,
        state=state,
        batches=batches,
        lr_at=lr_at,
        num_epochs=num_epochs,
        loader=loader,
        val_loader=val_loader,
        precise_bn=_precise_bn(cfg, data, device, loading),
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        folder=folder,
        log=log,
        resumed_from=resumed_from,
        loading=loading,
        finetuning=finetuning,
        noise=noise,
        local_norm=attach_local_norm(model) if noise is not None else None,
        probe=probe,
        started=started,
    )


def _noise_monitor(
    cfg: TrainConfig, batches: TrainingBatches, model: nn.Module, notify: Callable[[str], None] | None
) -> NoiseMonitor | None:
    """The run's noise-scale measurement: every ``noise_scale_every`` steps when asked; and, for a multigrid
    run on the paper's batch rule, a few early measurements that check its batches against the critical batch."""
    from vidact.train.samplers import MultigridBatchSampler

    schedule = batches.schedule if isinstance(batches, MultigridBatchSampler) else None
    world = distributed.get_world_size()
    largest = cfg.step_batch_size * (schedule.largest_batch_mult() if schedule is not None else 1)
    base = cfg.batch_size if cfg.accumulate > 1 else BN_BASE  # the micro-batches: --accumulate's, or BN's
    cut = sub_batches(largest, base) >= 2 and micro_batches_exact(model)
    method = "ddp" if world > 1 else ("micro" if cut else "steps")
    check = schedule is not None and schedule.batch_rule == "paper" and schedule.largest_batch_mult() > 1
    if not (cfg.noise_scale_every or (check and method != "steps")):
        return None
    if method == "steps" and notify is not None and distributed.is_main_process():
        notify(
            f"noise scale: this run's batches ({largest} clips"
            + ("" if micro_batches_exact(model) else ", BatchNorm over the whole batch")
            + f") cannot be cut into {base}-clip sub-batches on one process: each step's gradient is "
            f"measured against the mean of {CONSECUTIVE} consecutive steps' (an approximation: the weights move "
            "between them; under torchrun with 2 or more processes it is exact)"
        )
    monitor = NoiseMonitor(
        every=cfg.noise_scale_every or DEFAULT_CHECK_EVERY,
        method=method,
        base=base,
        window=None if cfg.noise_scale_every else DEFAULT_CHECK_WINDOW,
    )
    if check:
        from vidact.train.multigrid import paper_batch_warning

        def on_ready(estimate) -> None:
            line = paper_batch_warning(schedule, estimate.b_simple, cfg.step_batch_size * world)
            if line and notify is not None and distributed.is_main_process():
                notify(line)

        monitor.on_ready = on_ready
    return monitor


def _precise_bn(cfg: TrainConfig, data: TrainData, device: torch.device, loading: LoaderPlan) -> PreciseBN | None:
    """Precise BN's own sampler and loader over the training set, or None when it is off."""
    batches = cfg.resolved_precise_bn()
    if not batches:
        return None
    sampler = EpochBatchSampler(len(data.train_set), cfg.batch_size, seed=cfg.seed + 1)
    batches = min(batches, len(sampler))  # never more clips than one epoch holds (the recipes ask for 200 batches)
    loader = make_loader(
        data.train_set,
        batch_sampler=sampler,
        workers=loading.workers,
        decoder_threads=loading.decoder_threads,
        seed=cfg.seed,
        device=device,
    )
    return PreciseBN(batches, sampler, loader)


# --------------------------------------------------------------------------- one epoch
def _diverged(run: Run, loss: torch.Tensor, epoch: int, lr: float) -> TrainingDiverged:
    last = run.folder / LAST
    kept = f"; the last good checkpoint is {last}" if last.is_file() else ""
    return TrainingDiverged(
        f"training diverged: loss became {loss.item()} at epoch {epoch + 1}, iteration {run.state.batch_in_epoch + 1} "
        f"(step {run.state.iteration + 1}, lr {lr:.3g}); try a lower lr, --set clip_grad=1.0 or a warm-up{kept}"
    )


def _shape_of(x) -> tuple:
    """The input's shape without the batch dimension (of the first stream)."""
    first = x[0] if isinstance(x, (list, tuple)) else x
    return tuple(first.shape[1:])


def _shape_key(x) -> str:
    """``"TxS"`` (frames x crop) of a batch's clips, for per-shape timings."""
    shape = _shape_of(x)
    return f"{shape[1]}x{shape[-1]}"


def _forward_backward(run: Run, x, y: torch.Tensor, epoch: int, lr: float, epoch_f: float) -> torch.Tensor:
    """One step's forward and backward (gradients left in ``.grad``); the loss. A step the noise monitor
    picks is measured: cut into micro-batches on one process, its local gradient read under DDP, or its
    gradient added to the monitor's window of consecutive steps."""
    state, noise = run.state, run.noise
    model, scaler = state.model, state.scaler
    mode = noise.mode(state.iteration, len(y)) if noise is not None else None
    scale = float(scaler.get_scale()) if scaler.is_enabled() else 1.0
    started = time.perf_counter()

    def loss_of(xs, ys) -> torch.Tensor:
        with autocast(run.device, run.amp):
            loss = run.criterion(model(xs).float(), ys)
        if not torch.isfinite(loss):
            raise _diverged(run, loss, epoch, lr)
        return scaler.scale(loss)

    state.optimizer.zero_grad(set_to_none=True)
    accumulate = run.cfg.accumulate
    if mode == "micro":  # with --accumulate, its micro-batches are the measured ones (the monitor's base)
        step = micro_batch_backward(model, x, y, sub_batches(len(y), noise.base), loss_of, scale=scale)
        loss, small_sq, big_sq, b_small, b_big = step.loss, step.small_sq, step.big_sq, step.micro_size, len(y)
    else:
        if mode == "ddp":
            run.local_norm.start()
        loss = accumulate_gradients(model, x, y, accumulate, loss_of) / scale
        if mode == "ddp":
            small_sq = mean_over_ranks(run.local_norm.stop() / scale**2)  # the one extra scalar all-reduce
            big_sq = gradient_squared_norm(model, scale)
            b_small, b_big = len(y), len(y) * distributed.get_world_size()
    window = None
    if mode == "steps":
        window = noise.add_step(state.iteration, [p.grad for p in model.parameters()], len(y), scale)
    if noise is not None:
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        noise.time_step(_shape_of(x), len(y), time.perf_counter() - started, measured=mode is not None)
        if window is not None:
            small_sq, big_sq, b_small, b_big = window
        if mode in ("micro", "ddp") or window is not None:
            record = noise.record(small_sq, big_sq, b_small, b_big)
            if run.log is not None:
                run.log.log({**record, "epoch": epoch, "step": state.iteration + 1, "epoch_f": epoch_f})
    return loss


def train_one_epoch(run: Run, epoch: int, iters_per_epoch: int, on_step: Callable[[dict], None] | None = None) -> dict:
    """One pass over the run's loader (what is left of it); returns the epoch's mean loss, clips and clips/s,
    where the time went (``times``: :class:`StepTimes`) and ``stopped``: the signal that stopped it after an
    iteration (None when it ran to the end)."""
    state, cfg, device = run.state, run.cfg, run.device
    model, optimizer, scaler = state.model, state.optimizer, state.scaler
    model.train()
    first_clips, start, decision = state.epoch_clips, time.perf_counter(), None
    times, ready, first = StepTimes(), start, True  # ready: when the loader was last asked for a batch
    for batch in run.loader:
        arrived = time.perf_counter()
        epoch_f = epoch + state.batch_in_epoch / iters_per_epoch
        lr = run.lr_at(epoch_f)
        set_lr(optimizer, lr)
        x = to_device(batch["video"], device, run.channels_last)
        y = torch.as_tensor(batch["label"]).to(device)
        loss = _forward_backward(run, x, y, epoch, lr, epoch_f)
        if cfg.clip_grad > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        state.batch_in_epoch += 1
        state.iteration += 1
        decision = run.control.after_step(loss, state.iteration)  # the loss reduced and read: the step is done
        times.add(_shape_key(x), len(y), arrived - ready, time.perf_counter() - arrived, first)
        first = False
        loss_value = decision.loss
        state.epoch_loss_sum += loss_value * len(y)
        state.epoch_clips += len(y)
        total_clips = state.epoch_clips - first_clips
        if on_step is not None:
            elapsed = time.perf_counter() - start
            on_step(
                {
                    "epoch": epoch,
                    "step": state.iteration,
                    "epoch_f": epoch + state.batch_in_epoch / iters_per_epoch,
                    "batch": state.batch_in_epoch,
                    "loss": loss_value,
                    "lr": lr,
                    "clips": len(y) * distributed.get_world_size(),
                    "clips_per_s": total_clips * distributed.get_world_size() / max(elapsed, 1e-9),
                }
            )
        if decision.save:
            save_last(run, epoch_so_far(run))
        if decision.stop is not None:
            break
        ready = time.perf_counter()  # the progress bar, the log and a checkpoint count as neither data nor compute
    seconds, total_clips = time.perf_counter() - start, state.epoch_clips - first_clips
    return {
        "loss": state.epoch_loss_sum / max(state.epoch_clips, 1),
        "clips": total_clips,
        "seconds": seconds,
        "clips_per_s": total_clips * distributed.get_world_size() / max(seconds, 1e-9),
        "stopped": None if decision is None or decision.stop is None else (decision.stop, decision.save),
        "times": times,
    }


def warn_data_wait(run: Run, times: StepTimes) -> None:
    """One warning line per run when the training steps so far spent more than a third of their time waiting
    for data (each epoch's first step left out; at least :data:`DATA_WAIT_MIN_STEPS` steps measured)."""
    steady = run.steady
    steady.steady_wait += times.steady_wait
    steady.steady_compute += times.steady_compute
    steady.steady_steps += times.steady_steps
    if run.warned_data_wait or not run.is_main_process or steady.steady_steps < DATA_WAIT_MIN_STEPS:
        return
    if steady.steady_wait_fraction <= DATA_WAIT_WARNING:
        return
    run.warned_data_wait = True
    workers = run.loading.workers
    logger.warning(
        f"training waited for data {100 * steady.steady_wait_fraction:.0f}% of each step with {workers} loader "
        f"worker{'s' if workers != 1 else ''}: more --workers, or frames extracted once with `vidact frames "
        f"extract` (then train on the frame folders), would keep the model busy"
    )


# --------------------------------------------------------------------------- epoch-end steps
def precise_bn(
    model: nn.Module, loader, num_batches: int, device: torch.device, *, amp: str = "none", channels_last: bool = False
) -> float:
    """Recompute BatchNorm running statistics over ``num_batches`` full-shape training batches; seconds taken."""
    start = time.perf_counter()
    with autocast(device, amp):
        update_bn_stats(unwrap_model(model), loader, num_batches, device, channels_last=channels_last)
    average_bn_stats_across_ranks(unwrap_model(model))
    return time.perf_counter() - start


def validate(model: nn.Module, loader, device: torch.device, *, amp: str = "none", channels_last: bool = False) -> dict:
    """Top-1/top-5 and loss over the validation loader's views (one centre clip per video in training)."""
    scores = collect_view_scores(model, loader, device, amp=amp, channels_last=channels_last)
    logits = torch.from_numpy(scores.logits)
    loss = nn.functional.cross_entropy(logits, torch.from_numpy(scores.labels)).item()
    return {
        "top1": topk_accuracy(scores.logits, scores.labels, 1),
        "top5": topk_accuracy(scores.logits, scores.labels, 5),
        "loss": loss,
        "clips": len(scores.labels),
    }


def base_epochs_done(epoch: int, num_epochs: int, base_epochs: int) -> int:
    """Epochs of the base (plain) schedule done at the end of run epoch ``epoch`` of ``num_epochs``.

    A multigrid run stretches ``base_epochs`` over ``num_epochs`` (1.5x) passes over the data; each
    pass stands for base_epochs / num_epochs of the plain run's epochs (its clips and compute).
    """
    return (epoch + 1) * base_epochs // num_epochs


def is_validation_epoch(run: Run, epoch: int) -> bool:
    """Validate (after precise BN) at the plain run's cadence: when a base epoch ends (every
    ``val_every``-th), so a multigrid run validates as often as the plain run it stands for; and at the end."""
    if run.data.val_set is None:
        return False
    if epoch + 1 == run.num_epochs:
        return True
    base = run.cfg.epochs
    done = base_epochs_done(epoch, run.num_epochs, base)
    return done > base_epochs_done(epoch - 1, run.num_epochs, base) and done % run.cfg.val_every == 0


def precise_bn_step(run: Run, epoch: int, record: dict) -> None:
    """Before a validation (and at the end): BatchNorm statistics at the full shape, when enabled."""
    bn = run.precise_bn
    if bn is None or not (is_validation_epoch(run, epoch) or epoch + 1 == run.num_epochs):
        return
    bn.sampler.set_epoch(epoch)
    record["precise_bn_seconds"] = precise_bn(
        run.state.model, bn.loader, bn.batches, run.device, amp=run.amp, channels_last=run.channels_last
    )
    record["precise_bn_batches"] = bn.batches


def validate_step(run: Run, epoch: int, record: dict) -> bool:
    """Validate when due; True when this epoch is the best so far."""
    if not is_validation_epoch(run, epoch):
        return False
    started = time.perf_counter()
    val = validate(run.state.model, run.val_loader, run.device, amp=run.amp, channels_last=run.channels_last)
    record.update({"val_top1": val["top1"], "val_top5": val["top5"], "val_loss": val["loss"]})
    record["val_seconds"] = time.perf_counter() - started
    if run.log is not None:
        run.log.log({"kind": "val", "epoch": epoch, "step": run.state.iteration, **val})
    if val["top1"] > run.state.best_top1:
        run.state.best_top1 = val["top1"]
        return True
    return False


def save_last(run: Run, record: dict, *, best: bool = False) -> None:
    """Rank 0 writes ``last.pt`` (and ``best.pt``) at the run's exact position, atomically."""
    if run.is_main_process:
        fields = checkpoint_fields(
            run.state, run.cfg, classes=run.data.classes, inp=run.inp, lr_at=run.lr_at, metrics=record
        )
        save_checkpoint(run.folder / LAST, **fields)
        if best:
            save_checkpoint(run.folder / BEST, **fields)


def epoch_so_far(run: Run) -> dict:
    """The running epoch's record so far (a mid-epoch checkpoint's metrics)."""
    state = run.state
    loss = state.epoch_loss_sum / max(state.epoch_clips, 1)
    return {"epoch": state.epoch, "batch": state.batch_in_epoch, "train_loss": loss}


def checkpoint_step(run: Run, record: dict, is_best: bool) -> None:
    """Log the epoch; rank 0 writes ``last.pt`` (and ``best.pt``) atomically."""
    if run.log is not None:
        run.log.log({"kind": "epoch", "step": run.state.iteration, **record})
    save_last(run, record, best=is_best)


def end_epoch(run: Run, epoch: int, stats: dict) -> dict:
    """The epoch-end steps in order; the epoch's record."""
    run.state.epoch, run.state.batch_in_epoch = epoch + 1, 0
    run.state.epoch_loss_sum, run.state.epoch_clips = 0.0, 0
    record = {
        "epoch": epoch,
        "train_loss": stats["loss"],
        "clips_per_s": stats["clips_per_s"],
        "seconds": stats["seconds"],
        **stats["times"].to_dict(),
    }
    warn_data_wait(run, stats["times"])
    precise_bn_step(run, epoch, record)
    is_best = validate_step(run, epoch, record)
    run.history.append(record)
    checkpoint_step(run, record, is_best)
    return record


def stop_run(run: Run, signum: int, saved: bool) -> dict:
    """Stopped by a signal between two iterations: ``last.pt`` at this exact position (unless the step's
    periodic checkpoint just wrote it), the log and the curves so far; the summary's ``stopped`` says how to go on."""
    state, last = run.state, run.folder / LAST
    if not saved:
        save_last(run, epoch_so_far(run))
    name = signal_name(signum) if signum else "a signal to another rank"
    if run.log is not None:
        run.log.log({"kind": "stop", "epoch": state.epoch, "step": state.iteration, "signal": name})
    distributed.barrier()  # every rank leaves once the checkpoint is on disk
    summary = finish_run(run)
    summary["stopped"] = {
        "signal": name,
        "epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch,
        "iteration": state.iteration,
        "checkpoint": str(last),
        "message": f"stopped by {name} at {state.position()}: saved {last}; "
        f"continue with the same command and --resume (vidact train --out {run.folder} --resume)",
    }
    return summary


# --------------------------------------------------------------------------- the run
SECONDS_KEYS = ("seconds", "data_wait_s", "compute_s", "precise_bn_seconds", "val_seconds")
# an epoch record's measurements of time: they differ between two runs that are otherwise identical
TIMING_KEYS = (*SECONDS_KEYS, "clips_per_s", "data_wait_fraction", "shapes")


def time_spent(history: list[dict]) -> dict:
    """Seconds of the epochs in ``history``: training steps (waiting for data, computing), precise BN, validation."""
    total = {k: sum(r.get(k) or 0.0 for r in history) for k in SECONDS_KEYS}
    total["data_wait_fraction"] = total["data_wait_s"] / max(total["data_wait_s"] + total["compute_s"], 1e-9)
    return total


def finish_run(run: Run) -> dict:
    """Close the log, plot the curves and summarise the run."""
    if run.noise is not None:
        run.noise.settle()  # a run shorter than the noise check's window
    if run.log is not None:
        run.log.close()
    if run.is_main_process:
        plot_curves(run.folder)
    final = run.history[-1] if run.history else {}
    state, data, ft = run.state, run.data, run.finetuning
    seconds = time.perf_counter() - run.started
    return {
        "run": str(run.folder),
        "arch": run.cfg.arch,
        "epochs": run.num_epochs,
        "device": str(run.device),
        "amp": run.amp,
        "channels_last": run.channels_last,
        "resumed_from_epoch": run.resumed_from,
        "restart": distributed.launch_env().restart_count,  # torchrun's restarts of the group (--max-restarts)
        "train_clips": len(data.train_set),
        "seconds": seconds,
        "time": time_spent(run.history),  # where the seconds went, summed over the epochs
        "loading": run.loading.to_dict(),
        "iterations": state.iteration,
        "final_train_loss": final.get("train_loss"),
        "final_val_top1": final.get("val_top1"),
        "best_val_top1": state.best_top1 if state.best_top1 >= 0 else None,
        "clips_per_s": final.get("clips_per_s"),
        "last": str(run.folder / LAST),
        "best": str(run.folder / BEST) if (run.folder / BEST).is_file() else None,
        "history": run.history,
        # reads of unreadable videos that were replaced by other samples (each logged once)
        "unreadable_samples": sum(getattr(ds, "skipped", 0) for ds in (data.train_set, data.val_set) if ds is not None),
        "recipe": run.cfg.recipe or None,
        "pretrained": ft.pretrained.to_dict() if ft is not None and ft.pretrained is not None else None,
        "freeze": ft.freeze.to_dict() if ft is not None and ft.freeze.frozen_params else None,
        "noise_scale": run.noise.summary(sum(r["seconds"] for r in run.history)) if run.noise is not None else None,
        "probe": _probe_summary(run.probe, seconds) if run.probe is not None else None,
        "decisions": run.cfg.probe_decision or None,
        "multigrid": run.cfg.multigrid,
        "multigrid_batch": run.cfg.multigrid_batch if run.cfg.multigrid != "none" else None,
        "lr": run.cfg.lr,
    }


def _probe_summary(probe: dict, run_seconds: float) -> dict:
    """The probe's report with its share of the whole run's seconds."""
    return {**probe, "fraction_of_run": probe["seconds"] / run_seconds if run_seconds > 0 else None}


def fit(
    cfg: TrainConfig,
    data: TrainData,
    *,
    resume: bool = False,
    progress: bool | None = None,
    batch_sampler: TrainingBatches | None = None,
    lr_at: Callable[[float], float] | None = None,
    model: nn.Module | None = None,
    notify: Callable[[str], None] | None = None,
    stop_signals: bool = False,
) -> dict:
    """Train ``cfg.arch`` on ``data``; checkpoints, metrics and curves go to ``cfg.out``.

    ``batch_sampler`` (default :class:`EpochBatchSampler`) and ``lr_at`` (default
    :class:`LRSchedule`) are the seams for other schedules; ``model`` trains a network built
    elsewhere (e.g. an X3D search candidate) in place of ``cfg.arch``'s registry model.
    With ``stop_signals``, SIGTERM, SIGUSR1 and SIGINT stop the run after the current iteration
    (:func:`stop_run`; the summary then has ``stopped``).
    """
    cfg.validate()
    previous_threads = decoder_threads()
    try:
        with StopSignals() if stop_signals else contextlib.nullcontext() as signals:
            run = setup_run(
                cfg, data, resume=resume, batch_sampler=batch_sampler, lr_at=lr_at, model=model, notify=notify
            )
            run.control = StepControl(Cadence.parse(cfg.checkpoint_every), signals)
            try:
                return _train_epochs(run, progress)
            except torch.OutOfMemoryError:
                raise out_of_memory(
                    run.device,
                    batch_size=cfg.batch_size,
                    accumulate=cfg.accumulate,
                    amp=run.amp,
                    checkpointing=cfg.activation_checkpointing,
                ) from None
            finally:
                close_loaders(run)
    finally:
        set_decoder_threads(previous_threads)  # setup_run set this run's; the process gets its own back


def close_loaders(run: Run) -> None:
    """End the run's loader workers (training, validation, precise BN) as the run ends."""
    for loader in (run.loader, run.val_loader, run.precise_bn.loader if run.precise_bn else None):
        if loader is not None:
            loader.close()


def _train_epochs(run: Run, progress: bool | None) -> dict:
    """The epochs left, with a progress bar; the run's summary."""
    cfg, data = run.cfg, run.data
    state, batches = run.state, run.batches
    batches.set_epoch(0, 0)
    iters_per_epoch = len(batches)
    with make_progress(disable=None if (run.is_main_process and progress is not False) else True) as bar:
        task = bar.add_task(
            f"epoch {state.epoch + 1}/{run.num_epochs}",
            total=batches.total_batches(run.num_epochs),  # multigrid: the count varies per epoch
            completed=batches.total_batches(state.epoch) + state.batch_in_epoch,
            status="",
        )

        def on_step(rec: dict) -> None:
            bar.update(
                task,
                advance=1,
                description=f"epoch {rec['epoch'] + 1}/{run.num_epochs}",
                status=f"it {rec['batch']}/{iters_per_epoch} loss {rec['loss']:.3f} {rec['clips_per_s']:.1f} clips/s",
            )
            if run.log is not None and (rec["batch"] % cfg.log_every == 0 or rec["batch"] == iters_per_epoch):
                run.log.log({"kind": "train", **rec})

        for epoch in range(state.epoch, run.num_epochs):
            batches.set_epoch(epoch, state.batch_in_epoch)
            iters_per_epoch = len(batches) + state.batch_in_epoch
            if isinstance(data.train_set, EpochAware):
                data.train_set.set_epoch(epoch)
            stats = train_one_epoch(run, epoch, iters_per_epoch, on_step)
            if stats["stopped"] is not None:
                return stop_run(run, *stats["stopped"])
            end_epoch(run, epoch, stats)
            stopped = run.control.stop_requested()  # a signal during validation: stop at the epoch's checkpoint
            if stopped is not None and epoch + 1 < run.num_epochs:
                return stop_run(run, stopped, saved=True)
    return finish_run(run)


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool | None = None,
    notify: Callable[[str], None] | None = None,
    stop_signals: bool = False,
) -> dict:
    """Everything ``vidact train`` does: data from ``cfg.data``, then :func:`fit`."""
    inp = config_input(cfg)
    joined = distributed.init_from_env()  # under torchrun: join the process group (gloo on CPU, NCCL on CUDA)
    try:
        data = build_data(cfg, inp)
        return fit(cfg, data, resume=resume, progress=progress, notify=notify, stop_signals=stop_signals)
    finally:
        if joined:
            distributed.cleanup()
