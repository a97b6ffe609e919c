"""``vidact demo``: the whole pipeline on the built-in synthetic data set, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from vidact.cli.common import JsonFlag, print_json


def demo(
    out: Path = typer.Argument(Path("demo_out"), help="Folder for data, frames, flow, runs and the report."),
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes and 1 epoch per run (a smoke test, ~1 min)."),
    json_out: JsonFlag = False,
) -> None:
    """Synthesise -> frames -> TV-L1 flow -> train/eval 5 models + two-stream fusion -> profile -> report.

    Writes OUT/report.md (results table) and OUT/report.html (table + figures). Re-running skips
    the stages that finished (markers in OUT/stages/).

    Example: vidact demo demo_out
    """
    from vidact.demo.pipeline import run_demo

    summary = run_demo(out, quick=quick)
    if json_out:
        print_json(summary)
        return
    typer.echo(Path(summary["report_md"]).read_text(encoding="utf-8"))
    typer.echo(f"report: {summary['report_md']} and {summary['report_html']}")
