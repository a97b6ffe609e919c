"""The live table ``vidact predict`` shows on a terminal while it scores a stream."""

from __future__ import annotations

from collections import deque

from rich.console import Console
from rich.live import Live
from rich.table import Table

ROWS = 12  # the latest windows shown


class LiveTable:
    """A table of the latest windows (time span, top classes, latency), redrawn as windows arrive."""

    def __init__(self, console: Console, source: str, topk: int):
        self.source, self.topk = source, min(topk, 3)
        self.rows: deque = deque(maxlen=ROWS)
        self.count = 0
        self.live = Live(self._table(), console=console, refresh_per_second=8, transient=False)

    def _table(self) -> Table:
        table = Table(title=f"{self.source}: {self.count} windows", show_edge=False)
        for col in ("window", "seconds", "top classes", "latency ms"):
            table.add_column(col, justify="left" if col == "top classes" else "right", no_wrap=True)
        for row in self.rows:
            top = ", ".join(f"{t['class']} {100 * t['prob']:.0f}%" for t in row["top"][: self.topk])
            table.add_row(str(row["window"]), f"{row['start']:.2f}-{row['end']:.2f}", top, f"{row['latency_ms']:.0f}")
        return table

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.count += 1
        self.live.update(self._table())

    def __enter__(self) -> LiveTable:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    @staticmethod
    def summary(report) -> str:
        lat = report.latency_ms
        latency = f"latency mean {lat['mean']:.0f} ms, p95 {lat['p95']:.0f} ms, " if lat else ""
        dropped = f", {report.dropped_frames} frames dropped to keep up" if report.dropped_frames else ""
        return (
            f"{report.windows} windows over {report.frames} frames ({report.ended}): {latency}"
            f"{report.windows_per_second:.2f} windows/s{dropped}"
        )
