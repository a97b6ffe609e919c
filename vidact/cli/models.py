"""``vidact models``: every registered architecture with its default input, parameters and GFLOPs."""

from __future__ import annotations

import typer
from rich.table import Table

from vidact.cli.common import JsonFlag, print_json, wide_console

app = typer.Typer()  # help comes from the callback's docstring


@app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    family: str | None = typer.Option(None, "--family", help="Only this family (e.g. i3d, c3d, karpathy)."),
    json_out: JsonFlag = False,
) -> None:
    """List every architecture: default input (C, T, H, W, frame stride), parameters and GFLOPs.

    GFLOPs are multiply-adds for one view at batch 1, counted on the meta device.

    Example: vidact models --family i3d --json
    """
    if ctx.invoked_subcommand is not None:
        return
    from vidact.profile.flops import summarize_models

    rows = summarize_models(family=family)
    if json_out:
        print_json(rows)
        return
    table = Table(show_edge=False)
    for col in ("name", "family", "modality", "input CxTxHxW", "stride", "params (M)", "GFLOPs", "classes"):
        numeric = col in ("stride", "params (M)", "GFLOPs", "classes")
        table.add_column(col, justify="right" if numeric else "left", no_wrap=True)
    for r in rows:
        table.add_row(
            r["name"],
            r["family"],
            r["modality"],
            r["input_text"],
            str(r["stride"]),
            f"{r['params'] / 1e6:.2f}",
            f"{r['gflops']:.2f}",
            str(r["num_classes"]),
        )
    wide_console(120).print(table)


from vidact.cli.models_convert import convert  # noqa: E402  (PyTorchVideo / PySlowFast checkpoint conversion)

app.command("convert")(convert)

from vidact.cli.models_zoo import zoo  # noqa: E402

app.command("zoo")(zoo)
