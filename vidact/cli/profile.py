"""``vidact profile``: parameters, multiply-adds per op and layer, activations, measured speed."""

from __future__ import annotations

import typer
from rich.table import Table

from vidact.cli.common import JsonFlag, out_console, print_json, wide_console
from vidact.errors import UsageError, first_line


def _table_of_layers(report, depth: int) -> Table:
    table = Table(title=f"per layer (depth {depth})", show_edge=False)
    for col in ("layer", "type", "output", "params", "GFLOPs", "%", "elements (M)", "activations (M)"):
        table.add_column(col, justify="left" if col in ("layer", "type", "output") else "right", no_wrap=True)
    for layer in report.layers_at(depth):
        share = 100 * layer.macs / report.macs if report.macs else 0.0
        shape = "x".join(map(str, layer.output_shape)) if layer.output_shape else ""
        table.add_row(
            layer.name,
            layer.type,
            shape,
            f"{layer.params:,}",
            f"{layer.macs / 1e9:.3f}",
            f"{share:.1f}",
            f"{layer.elements / 1e6:.2f}",
            f"{layer.activations / 1e6:.2f}",
        )
    return table


def _print_report(arch: str, report, bench) -> None:
    from vidact.profile.flops import op_summary, shape_text

    total = f"{report.gflops:.2f} GFLOPs"
    if report.views > 1:
        total += f" x {report.views} views = {report.gflops * report.views:.1f} GFLOPs"
    out_console.print(
        f"[bold]{arch}[/bold]  input {shape_text(report.input_shapes)} (B x C x T x H x W)", highlight=False
    )
    rows = [
        ("parameters", f"{report.params / 1e6:.2f} M ({report.params:,})"),
        ("FLOPs (multiply-adds)", f"{total} at input {shape_text(report.input_shapes)}"),
        ("  by op", op_summary(report.macs_by_op)),
        ("activations", f"{report.activations / 1e6:.2f} M (outputs of conv/linear/matmul)"),
        ("normalisation (elements)", op_summary(report.norm)),
        ("pointwise (elements)", op_summary(report.pointwise)),
        ("pooling (elements)", op_summary(report.pooling)),
        ("reduction (elements)", op_summary(report.reduction)),
        ("data movement (calls)", op_summary(report.data_movement)),
        ("not counted (calls)", op_summary(report.not_counted)),
    ]
    for key, value in rows:
        out_console.print(f"{key:26s} {value}", highlight=False, markup=False, soft_wrap=True)
    if bench is not None:
        table = Table(
            title=f"measured on {bench.device} (batch {bench.batch}, "
            f"{'bf16 autocast' if bench.amp else 'fp32'}, {bench.threads} threads, "
            f"median of {bench.iters})",
            show_edge=False,
        )
        for col in (
            "forward ms",
            "fwd+bwd ms",
            "inference clips/s",
            "training clips/s",
            f"peak MiB ({bench.memory_kind})",
        ):
            table.add_column(col, justify="right")
        table.add_row(
            f"{bench.forward_ms:.1f}",
            f"{bench.train_step_ms:.1f}",
            f"{bench.forward_clips_per_s:.2f}",
            f"{bench.train_clips_per_s:.2f}",
            f"{bench.peak_memory_mb:.0f}",
        )
        wide_console(140).print(table)


def profile(
    arch: str = typer.Option(..., "--arch", "-a", help="Registered architecture (see `vidact models`)."),
    frames: int | None = typer.Option(None, "--frames", "-t", min=1, help="Clip length T (default: the model's)."),
    size: int | None = typer.Option(None, "--size", "-s", min=8, help="Frame height = width (default: model's)."),
    batch: int = typer.Option(1, "--batch", "-b", min=1, help="Batch size."),
    num_classes: int | None = typer.Option(None, "--num-classes", min=1, help="Classifier outputs."),
    per_layer: bool = typer.Option(False, "--per-layer", help="Print the per-layer table."),
    depth: int = typer.Option(1, "--depth", min=1, help="Module depth of the per-layer table."),
    views: str = typer.Option("1", "--views", help="Test views, e.g. 10x3 (clips x crops): total = per view x views."),
    device: str = typer.Option("cpu", "--device", help="Device for --bench (cpu, cuda, cuda:N)."),
    bench: bool = typer.Option(False, "--bench", help="Also measure forward / forward+backward latency."),
    amp: bool = typer.Option(False, "--amp", help="Measure under bf16 autocast."),
    iters: int = typer.Option(5, "--iters", min=1, help="Timed iterations for --bench."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for --bench (default: torch's)."),
    json_out: JsonFlag = False,
) -> None:
    """Count an architecture's parameters and FLOPs (multiply-adds, on the meta device); --bench times it.

    Example: vidact profile --arch c3d --num-classes 101 --per-layer --views 10x3
    """
    from vidact.profile.bench import benchmark_arch
    from vidact.profile.flops import parse_views, profile_arch

    try:
        n_views = parse_views(views)
    except ValueError as exc:
        raise UsageError(first_line(exc)) from None
    report = profile_arch(arch, frames, size, batch, num_classes, views=n_views)
    result = None
    if bench:
        result = benchmark_arch(
            arch, frames, size, batch, num_classes, device=device, amp=amp, iters=iters, threads=threads
        )
    if json_out:
        doc = {"arch": arch, **report.to_dict()}
        if not per_layer:
            doc.pop("layers")
        doc["bench"] = result.to_dict() if result else None
        print_json(doc)
        return
    _print_report(arch, report, result)
    if per_layer:
        wide_console(140).print(_table_of_layers(report, depth))
