"""``trajectory.jsonl``: one JSON line per trained candidate, appended as each finishes, read back on
a rerun so that finished candidates are not trained again."""

from __future__ import annotations

import json
from pathlib import Path

from vidact.errors import VidactError, first_line
from vidact.io.atomic import append_line, atomic_write_text
from vidact.models.x3d import X3DFactors


def factors_of(record: dict) -> X3DFactors:
    """The factors a trajectory record was trained at."""
    return X3DFactors(**record["factors"])


RECORD_KEYS = ("step", "kind", "axis", "factors", "gflops", "params", "flops_ratio", "top1", "train_seconds", "chosen")


class Trajectory:
    """``trajectory.jsonl``: one JSON object per trained candidate, appended as each finishes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict] = self._read()

    def _read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                X3DFactors(**rec["factors"])
                missing = [k for k in RECORD_KEYS if k not in rec]
                if missing:
                    raise KeyError(", ".join(missing))
                records.append(rec)
            except (ValueError, KeyError, TypeError) as exc:
                if n == len(lines):  # torn last line of a killed run: drop it
                    self._rewrite(records)
                    break
                raise VidactError(f"{self.path}:{n}: not a trajectory record ({first_line(exc)})") from None
        return records

    def _rewrite(self, records: list[dict]) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in records))

    def find(self, step: int, kind: str, axis: str, factors: X3DFactors) -> dict | None:
        for rec in self.records:
            if (rec["step"], rec["kind"], rec["axis"]) == (step, kind, axis) and factors_of(rec) == factors:
                return rec
        return None

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_line(self.path, json.dumps(record), sync=True)
        self.records.append(record)

    def mark_chosen(self, chosen: list[dict]) -> None:
        """Set ``chosen`` on exactly the records of the chosen path and rewrite the file."""
        ids = {id(r) for r in chosen}
        for rec in self.records:
            rec["chosen"] = id(rec) in ids
        self._rewrite(self.records)
