"""``vidact data``: make, index and check data sets."""

from __future__ import annotations

from pathlib import Path

import typer

from vidact.cli.common import JsonFlag, finish, out_console, print_json
from vidact.errors import UsageError, first_line
from vidact.io.progress import make_progress

app = typer.Typer(help="Make, index and check data sets.", no_args_is_help=True)


@app.command("synth")
def synth(
    out: Path = typer.Argument(..., help="Folder to write the data set into."),
    classes: int = typer.Option(8, help="Number of motion classes (2-10)."),
    per_class: int = typer.Option(
        48, help="Clips per class (48: enough that small 3D nets learn motion, not appearance)."
    ),
    frames: int = typer.Option(24, help="Frames per clip."),
    size: int = typer.Option(64, help="Frame width and height in pixels."),
    fps: int = typer.Option(25, help="Frame rate of the written videos."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives identical clips."),
    style: str = typer.Option(
        "dots",
        help="dots (small shapes, easy) or natural (shapes and texture at several scales, camera drift; harder).",
    ),
    json_out: JsonFlag = False,
) -> None:
    """Write the built-in synthetic motion data set (H.264 clips, classes.txt, train/val lists).

    Example: vidact data synth data/synth --classes 8 --per-class 48
    """
    from vidact.data.synthetic import SynthConfig, generate

    try:
        cfg = SynthConfig(
            classes=classes, per_class=per_class, frames=frames, size=size, fps=fps, seed=seed, style=style
        )
    except ValueError as exc:
        raise UsageError(first_line(exc)) from None
    with make_progress() as progress:
        task = progress.add_task("synth", total=classes * per_class, status="")
        try:
            result = generate(out, cfg, progress=lambda: progress.advance(task))
        except ValueError as exc:
            raise UsageError(first_line(exc)) from None
    if json_out:
        print_json(result)
    else:
        out_console.print(
            f"wrote {result['train']} train + {result['val']} val clips of {len(result['classes'])} classes to {out}"
        )


@app.command("check")
def check(
    lists: Path = typer.Argument(..., help="Data set folder: classes.txt plus train.csv / val.csv / test.csv."),
    split: str = typer.Option("all", help="Which split to check: all, train, val or test."),
    workers: int = typer.Option(1, help="Videos opened in parallel."),
    output: Path = typer.Option(None, "-o", "--output", help="Also write the report to a .json or .md file."),
    json_out: JsonFlag = False,
) -> None:
    """Scan a data set before training: decodability, frame counts, durations, sizes, labels, duplicates.

    Exit code 1 when any problem was found, 0 when the data set is clean.

    Example: vidact data check data/synth --workers 2 -o check.md
    """
    from vidact.cli.common import finish
    from vidact.data.check import check_dataset, write_report

    with make_progress() as progress:
        task = progress.add_task("check", total=None, status="")
        report = check_dataset(
            lists,
            split=split,
            workers=workers,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if output is not None:
        write_report(report, output)
    if json_out:
        print_json(report.to_dict())
    else:
        s = report.summary()
        out_console.print(
            f"{s['readable']} of {s['listed']} listed videos readable; {s['errors']} errors, {s['warnings']} warnings",
            highlight=False,
        )
        for p in report.problems:
            out_console.print(f"{p.severity}: {p}", highlight=False, markup=False, soft_wrap=True)
    finish(report.exit_code)


@app.command("index")
def index(
    root: Path = typer.Argument(..., help="Data set root (videos, and annotation files unless --ann)."),
    fmt: str = typer.Option(
        ..., "--format", "-f", help="Layout: ucf101, hmdb51, kinetics, ssv2, folder, csv, videolist, rawframes."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Data set folder to write (classes.txt, train.csv, val.csv)."),
    split: int = typer.Option(1, "--split", help="Official split number for ucf101/hmdb51 (1-3)."),
    ann: Path = typer.Option(None, "--ann", help="Annotation file or folder (default: the usual place under ROOT)."),
    val_fraction: float = typer.Option(
        0.2, "--val-fraction", help="folder format without train/val subfolders: share of each class for val."
    ),
    json_out: JsonFlag = False,
) -> None:
    """Index a data set in its own layout into a data set folder that --data accepts.

    Listed videos that are not on disk are skipped, written to OUT/missing.txt, and make
    the exit code 1.

    Example: vidact data index UCF101/ --format ucf101 --split 1 --ann ucfTrainTestlist/ -o lists/ucf101-1
    """
    from vidact.data.index import index_dataset, write_dataset_dir

    result = write_dataset_dir(index_dataset(root, fmt, split=split, ann=ann, val_fraction=val_fraction), out)
    if json_out:
        print_json(result)
    else:
        counts = ", ".join(f"{result[s]} {s}" for s in ("train", "val", "test") if s in result)
        out_console.print(
            f"indexed {counts} videos of {result['classes']} classes into {out}", highlight=False, soft_wrap=True
        )
        if result["missing"]:
            out_console.print(
                f"{result['missing']} listed videos not found: see {out / 'missing.txt'}",
                highlight=False,
                soft_wrap=True,
            )
    finish(1 if result["missing"] else 0)
