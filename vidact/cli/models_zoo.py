"""``vidact models zoo``: the named pretrained checkpoints ``--pretrained`` accepts."""

from __future__ import annotations

import typer
from rich.table import Table

from vidact.cli.common import JsonFlag, print_json, wide_console


def zoo(
    arch: str | None = typer.Option(None, "--arch", help="Only checkpoints for this vidact architecture."),
    json_out: JsonFlag = False,
) -> None:
    """Published checkpoints: vidact arch, source, data set, published top-1, test views and crop, URL, sha256.

    Use a name with vidact train --pretrained NAME (downloaded once into $VIDACT_CACHE, else
    $TORCH_HOME/hub/checkpoints). arch '-' marks a published model vidact does not implement.

    Example: vidact models zoo --arch x3d-xs
    """
    from vidact.models import get_entry
    from vidact.weights.zoo import zoo_rows

    rows = zoo_rows(get_entry(arch).name if arch else None)
    if json_out:
        print_json(rows)
        return
    table = Table(show_edge=False)
    for col in ("name", "arch", "source", "dataset", "top-1", "views", "test crop", "frames", "sha256"):
        table.add_column(col, justify="right" if col in ("top-1", "test crop") else "left", no_wrap=True)
    for r in rows:
        table.add_row(
            r["name"],
            r["arch"] or "-",
            r["source"],
            r["dataset"],
            str(r["top1"]),
            r["views"],
            str(r["test_crop"] or "-"),
            r["frames"] or "-",
            r["sha256"] or "-",
        )
    wide_console(140).print(table)
