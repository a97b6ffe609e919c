"""Helpers every command uses: JSON output, result printing, one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from vidact.errors import UsageError

out_console = Console()  # results go to stdout
err_console = Console(stderr=True)  # progress, logs and errors go to stderr


def _default(obj: Any):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (one JSON document)."""
    sys.stdout.write(json.dumps(obj, default=_default, indent=2) + "\n")
    sys.stdout.flush()


def require_path(path: Path, what: str = "input", kind: str = "any") -> Path:
    """Raise a one-line UsageError unless ``path`` exists (as a file/dir when asked)."""
    if not path.exists():
        raise UsageError(f"{path}: {what} not found")
    if kind == "file" and not path.is_file():
        raise UsageError(f"{path}: {what} is not a file")
    if kind == "dir" and not path.is_dir():
        raise UsageError(f"{path}: {what} is not a folder")
    return path


def finish(exit_code: int) -> None:
    """Leave the command with ``exit_code`` (0 ok, 1 partial failure, 2 bad usage)."""
    if exit_code:
        raise typer.Exit(exit_code)


def report_video_jobs(result: dict, out: Path, json_out: bool, verb: str) -> None:
    """Print a per-video job summary (frames/flow extraction) and exit 1 when some videos failed.

    Each failure is one stderr line naming the file and the cause; the summary goes to stdout.
    """
    for failure in result["failures"]:
        err_console.print(f"error: {failure['reason']}", highlight=False, markup=False, soft_wrap=True)
    if json_out:
        print_json(result)
    else:
        out_console.print(
            f"{result['done']} videos {verb}, {result['skipped']} skipped (done before), "
            f"{result['failed']} failed -> {out}",
            highlight=False,
            soft_wrap=True,
        )
        if result["failed"]:
            out_console.print(f"failures listed in {result['failures_file']}", highlight=False, soft_wrap=True)
    finish(1 if result["failed"] else 0)


# Options several commands share, as typer ``Annotated`` aliases: ``json_out: JsonFlag = False``.
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
DeviceChoice = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]


def wide_console(width: int) -> Console:
    """stdout, at least ``width`` columns wide when it is not a terminal (pipes and files)."""
    return out_console if out_console.is_terminal else Console(width=max(out_console.width, width))
