"""``vidact train``: train an architecture on a data set folder."""

from __future__ import annotations

from pathlib import Path

import typer

from vidact.cli.common import JsonFlag, err_console, finish, out_console, print_json


def train(
    arch: str | None = typer.Option(None, "--arch", help="Architecture name (see vidact models)."),
    data: Path | None = typer.Option(None, "--data", help="Data set folder: classes.txt, train.csv, val.csv."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder for checkpoints, metrics, curves."),
    config: Path | None = typer.Option(None, "--config", help="TOML file of 'key = value' config lines."),
    overrides: list[str] = typer.Option([], "--set", help="Override one config key: --set key=value (repeatable)."),
    modality: str | None = typer.Option(None, "--modality", help="rgb, flow or rgb+flow (default: the arch's)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Training epochs."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Clips per batch."),
    lr: str | None = typer.Option(
        None, "--lr", help="Base learning rate, or auto (an LR range test in a short probe picks it)."
    ),
    optimizer: str | None = typer.Option(None, "--optimizer", help="sgd (momentum) or adamw."),
    workers: int | None = typer.Option(
        None, "--workers", help="Data loader worker processes (default: one per usable core, shared by the processes)."
    ),
    frames: int | None = typer.Option(None, "--frames", help="Frames per clip (default: the arch's)."),
    size: int | None = typer.Option(None, "--size", help="Crop size in pixels (default: the arch's)."),
    stride: int | None = typer.Option(None, "--stride", help="Frame stride (default: the arch's)."),
    amp: str | None = typer.Option(
        None,
        "--amp",
        help="Mixed precision: auto (default: the family's choice on CUDA, none on CPU), none, bf16, fp16 (CUDA).",
    ),
    channels_last: str | None = typer.Option(
        None,
        "--channels-last",
        help="channels-last-3d memory format: auto (default: the family's measured choice on the device), on, off.",
    ),
    compile: bool | None = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (data order, augmentation, init)."),
    deterministic: bool | None = typer.Option(
        None, "--deterministic/--no-deterministic", help="Deterministic algorithms (bit-exact resume on CPU)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt with its saved config."),
    accumulate: int | None = typer.Option(
        None, "--accumulate", help="Micro-batches of --batch-size clips per optimizer step (gradient accumulation)."
    ),
    activation_checkpointing: str | None = typer.Option(
        None,
        "--activation-checkpointing",
        help="Recompute activations in the backward pass: 'all' stages or names 'res3,res4' (less memory).",
    ),
    checkpoint_every: str | None = typer.Option(
        None,
        "--checkpoint-every",
        help="Also write last.pt every N iterations (500) or every duration (90s, 30m, 2h); default: each epoch.",
    ),
    recipe: str | None = typer.Option(
        None, "--recipe", help="Training recipe by name; default: the arch's own (none: defaults only)."
    ),
    pretrained: str | None = typer.Option(
        None, "--pretrained", help="Start from weights: zoo name (vidact models zoo), imagenet, file or URL."
    ),
    freeze: str | None = typer.Option(
        None, "--freeze", help="Freeze 'backbone' or modules 'stem,res2' (BN in eval mode)."
    ),
    multigrid: str | None = typer.Option(
        None,
        "--multigrid",
        help="Multigrid schedule: none, long, short, long+short (epochs x 1.5), or auto (a short probe measures "
        "the critical batch and picks the schedule and its batch rule: --set multigrid_batch=paper|bounded|fixed).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the multigrid schedule (epochs, T, S, batch, LR) and exit."
    ),
    json_out: JsonFlag = False,
) -> None:
    """Train a model; writes RUN/last.pt, RUN/best.pt, metrics.jsonl, curves.png, config.toml.

    SIGTERM, SIGUSR1 or SIGINT: the current iteration finishes, last.pt is written at that exact position
    and the run exits with code 75 (rerun with --resume to continue); a second signal exits at once.

    Config: defaults <- the resumed run's config (--resume) <- the arch's recipe (vidact/recipes, scaled to
    the batch size; --recipe NAME or none) <- --config FILE <- options <- --set.

    Fine-tune: vidact train --arch x3d-xs --data LISTS/ --pretrained pytorchvideo-x3d-xs --freeze backbone

    Example: vidact train --arch c3d --data data/synth --epochs 10 --out runs/c3d --set width_mult=0.25

    Multigrid: vidact train --arch x3d-xs --epochs 10 --multigrid long+short --dry-run
    """
    from vidact.errors import UsageError
    from vidact.train.config import load_config
    from vidact.train.engine import train as run_training
    from vidact.train.state import resume_config, should_resume

    resume = should_resume(resume, out)  # also after torchrun restarted the group (--max-restarts)
    base = resume_config(out) if (resume and out is not None) else None
    lr_value, lr_finder = parse_lr(lr)
    cfg = load_config(
        config,
        overrides,
        base=base,
        recipe=None if resume else (recipe or "auto"),
        arch=arch,
        data=None if data is None else str(data),
        out=None if out is None else str(out),
        modality=modality,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr_value,
        lr_finder=lr_finder,
        optimizer=optimizer,
        workers=workers,
        frames=frames,
        size=size,
        stride=stride,
        amp=amp,
        channels_last=channels_last,
        compile=compile,
        device=device,
        seed=seed,
        deterministic=deterministic,
        multigrid=multigrid,
        pretrained=pretrained,
        freeze=freeze,
        checkpoint_every=checkpoint_every,
        accumulate=accumulate,
        activation_checkpointing=activation_checkpointing,
    )

    def notify(line: str) -> None:
        err_console.print(line, highlight=False, markup=False, soft_wrap=True)

    if dry_run:
        from vidact.train.auto import needs_probe
        from vidact.train.engine import plan_run
        from vidact.train.multigrid import describe_batch_rule, format_table, schedule_for_config
        from vidact.train.recipes import get_recipe

        probe = None
        if needs_probe(cfg):
            if not cfg.data:
                raise UsageError("--dry-run with auto settings runs the probe on the data: give --data")
            cfg, probe = plan_run(cfg, notify)
        schedule = schedule_for_config(cfg)
        chosen = get_recipe(cfg.recipe) if cfg.recipe else None
        if json_out:
            print_json(
                {
                    **schedule.to_dict(),
                    "config": cfg.to_dict(),
                    "recipe": chosen.to_dict() if chosen is not None else None,
                    "probe": probe,
                }
            )
        else:
            if chosen is not None:
                out_console.print(chosen.summary(cfg), highlight=False, markup=False, soft_wrap=True)
            else:
                out_console.print(
                    f"no recipe for {cfg.arch}: vidact's defaults (lr {cfg.lr:g} at batch "
                    f"{cfg.batch_size}, {cfg.epochs} epochs)",
                    highlight=False,
                    markup=False,
                )
            if schedule.mode != "none":
                out_console.print(describe_batch_rule(schedule), highlight=False, markup=False, soft_wrap=True)
            out_console.print(format_table(schedule))
        return

    summary = run_training(cfg, resume=resume, notify=notify, stop_signals=True)
    from vidact.errors import EXIT_PREEMPTED
    from vidact.runtime.distributed import launched_rank

    if launched_rank() != 0:
        finish(EXIT_PREEMPTED if summary.get("stopped") else 0)
        return  # under torchrun, rank 0 reports for all
    if summary.get("stopped"):  # a stop signal: the position is saved; the same command with --resume goes on
        if json_out:
            print_json(summary)
        err_console.print(summary["stopped"]["message"], highlight=False, markup=False, soft_wrap=True)
        finish(EXIT_PREEMPTED)
        return
    failed = summary.get("unreadable_samples", 0)
    if failed:  # partial failure: each bad video was named once above, the rest trained
        err_console.print(
            f"warning: {failed} reads of unreadable videos were replaced by other samples; "
            f"vidact data check {cfg.data} lists every problem",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if json_out:
        print_json(summary)
    else:
        top1 = summary["best_val_top1"]
        out_console.print(
            f"trained {summary['arch']} for {summary['epochs']} epochs in {summary['seconds']:.0f} s: "
            f"final loss {summary['final_train_loss']:.3f}"
            + (f", best val top-1 {100 * top1:.1f}%" if top1 is not None else "")
            + f"; checkpoints in {summary['run']}"
        )
        noise = summary.get("noise_scale")
        if noise and noise.get("measurements"):
            from vidact.train.noise_monitor import noise_scale_line

            out_console.print(noise_scale_line(noise), highlight=False, markup=False, soft_wrap=True)
    finish(1 if failed else 0)


def parse_lr(text: str | None) -> tuple[float | None, bool | None]:
    """``--lr``: (a learning rate, None) or (None, True) for ``auto``; (None, None) when not given."""
    from vidact.errors import UsageError

    if text is None:
        return None, None
    if text.strip().lower() == "auto":
        return None, True
    try:
        return float(text), None
    except ValueError:
        raise UsageError(f"--lr expects a number or auto, got {text!r}") from None
