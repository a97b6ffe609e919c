"""Training metrics: one JSON object per line in ``RUN/metrics.jsonl``, TensorBoard when installed."""

from __future__ import annotations

import json
import math
from pathlib import Path

from vidact.io.atomic import append_line, atomic_write_text

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every record of ``RUN/metrics.jsonl`` (an unfinished last line from a killed run is skipped)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def before_position(record: dict, epoch: int, iteration: int) -> bool:
    """True when ``record`` was logged before a checkpoint at ``epoch`` (the running one) and step ``iteration``:
    earlier epochs, and the running epoch's per-step records up to that step."""
    if record.get("epoch", 0) != epoch:
        return record.get("epoch", 0) < epoch
    return record.get("kind") not in ("val", "epoch") and record.get("step", 0) <= iteration


class MetricsLog:
    """Append-only metrics log; on resume it drops the records that the resumed run will write again."""

    def __init__(self, run_dir: str | Path, resume_at: tuple[int, int] | None = None, tensorboard: bool = True) -> None:
        """``resume_at``: the (running epoch, step) of the checkpoint a resumed run starts from."""
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_at is None:
            atomic_write_text(self.path, "")
        else:
            kept = [r for r in read_metrics(run_dir) if before_position(r, *resume_at)]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.writer = _tensorboard_writer(Path(run_dir) / "tb") if tensorboard else None

    def log(self, record: dict) -> None:
        """Append one record (``kind``: ``train``/``val``/``epoch``, with ``epoch`` and ``step``)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        append_line(self.path, json.dumps(clean))
        if self.writer is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if key not in ("epoch", "step", "kind") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{record.get('kind', 'train')}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard_writer(log_dir: Path):
    """A SummaryWriter when ``tensorboard`` is installed, else None."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))
