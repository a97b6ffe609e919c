"""``vidact x3d``: X3D's progressive expansion search."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from vidact.cli.common import DeviceChoice, JsonFlag, out_console, print_json, require_path
from vidact.io.progress import make_progress

app = typer.Typer(help="X3D: grow a tiny X2D network one axis at a time.", no_args_is_help=True)


@app.command("expand")
def expand(
    data: Path = typer.Option(..., "--data", help="Data set folder: classes.txt, train.csv, val.csv."),
    steps: int = typer.Option(3, "--steps", help="Expansion steps (each tries one candidate per axis)."),
    budget: str = typer.Option(
        "1ep", "--budget-per-candidate", help="Training per candidate: 2 or 2ep (epochs), 30it (iterations)."
    ),
    target_gflops: float | None = typer.Option(
        None, "--target-gflops", help="Afterwards, contract the last expanded axis to fit."
    ),
    out: Path = typer.Option(
        Path("runs/x3d-expand"),
        "--out",
        "-o",
        help="Search folder: trajectory.jsonl, trajectory.png, one run per candidate.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of every candidate's training (same for all)."),
    ratio: float = typer.Option(2.0, "--ratio", help="FLOPs multiplier each expansion aims for."),
    axes: str = typer.Option("t,tau,s,w,b,d", "--axes", help="Axes to try, comma-separated."),
    base_size: int = typer.Option(112, "--base-size", help="X2D crop size in pixels (paper: 112)."),
    base_stride: int = typer.Option(
        16, "--base-stride", help="X2D frame stride: the clip duration the frame-rate axis keeps."
    ),
    batch_size: int = typer.Option(8, "--batch-size", help="Clips per batch."),
    lr: float = typer.Option(0.002, "--lr", help="Learning rate (AdamW unless --set optimizer=sgd)."),
    device: DeviceChoice = "auto",
    threads: int = typer.Option(
        0, "--threads", help="torch CPU threads (0: torch's default; 1 is fastest on a busy machine)."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Other training config key=value (repeatable)."),
    json_out: JsonFlag = False,
) -> None:
    """Expand X2D step by step (duration, frame rate, size, width, bottleneck, depth), keeping the best.

    Each candidate doubles the FLOPs on one axis and is trained with the same budget; the one with
    the best validation top-1 is kept. Rerun the same command to resume an interrupted search.

    Example: vidact x3d expand --data data/synth --steps 3 --budget-per-candidate 2ep --threads 1 --out runs/x3d
    """
    from vidact.search.axes import X2D
    from vidact.search.candidates import SearchConfig
    from vidact.search.x3d_expand import run_search

    require_path(data, "data folder", kind="dir")
    cfg = SearchConfig(
        data=str(data),
        out=str(out),
        steps=steps,
        budget=budget,
        target_gflops=target_gflops,
        seed=seed,
        base=replace(X2D, gamma_s=base_size, gamma_tau=base_stride),
        goal_ratio=ratio,
        axes=tuple(a.strip() for a in axes.split(",") if a.strip()),
        batch_size=batch_size,
        lr=lr,
        device=device,
        threads=threads,
        overrides=tuple(overrides),
    ).validate()
    with make_progress() as bar:
        task = bar.add_task("x3d expand", total=None, status="")

        def on_event(kind: str, info: dict) -> None:
            if kind == "plan":
                bar.update(task, total=info["candidates"])
            elif kind == "start":
                bar.update(task, description=f"step {info['step']} {info['axis']}", status="training")
            elif kind in ("done", "skip"):
                note = "skipped" if kind == "skip" else ("cached" if info["reused"] else "trained")
                bar.update(task, advance=1, status=f"{info['axis']}: {note}")

        summary = run_search(cfg, on_event=on_event)
    if json_out:
        print_json(summary)
        return
    _print_path(summary)


def _print_path(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"X3D expansion ({summary['budget']} per candidate)")
    for col in ("step", "axis", "GFLOPs", "x prev", "top-1", "t x tau", "size", "w", "b", "d"):
        table.add_column(col, justify="left" if col == "axis" else "right", no_wrap=True)
    for rec in summary["path"]:
        f = rec["factors"]
        table.add_row(
            str(rec["step"]),
            rec["axis"] if rec["kind"] != "contract" else f"{rec['axis']} contracted",
            f"{rec['gflops']:.4f}",
            f"{rec['flops_ratio']:.2f}",
            f"{100 * rec['top1']:.1f}%",
            f"{f['gamma_t']}x{f['gamma_tau']}",
            str(f["gamma_s"]),
            f"{f['gamma_w']:g}",
            f"{f['gamma_b']:g}",
            f"{f['gamma_d']:g}",
        )
    out_console.print(table)
    out_console.print(
        f"{summary['trained']} candidates trained, {summary['reused']} read back from "
        f"{summary['trajectory']}; plot: {summary['plot']}"
    )
