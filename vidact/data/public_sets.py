"""The public data sets' own annotation files: HMDB51 split files, Kinetics CSVs, Something-Something v2 JSON.

:mod:`vidact.data.index` reads them to write a vidact data set folder (``vidact data index``).
UCF101's ``classInd.txt`` and train/test lists are also one of the generic list formats
(``--list`` takes them), so they are parsed in :mod:`vidact.data.annotations`. Malformed entries raise
``AnnotationError`` (``file:line: reason``), as there.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vidact.data.annotations import Sample, SeenEntries, entry_lines, require_file, resolve_path
from vidact.errors import AnnotationError

# ---------------------------------------------------------------------------- HMDB51


HMDB51_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$")
HMDB51_USE = {"0": None, "1": "train", "2": "test"}


def parse_hmdb51_split(path: str | Path, root: str | Path, label: int) -> dict[str, list[Sample]]:
    """One HMDB51 ``<class>_test_split<N>.txt``: ``video.avi 1`` (train), ``2`` (test), ``0`` (unused).

    Videos live in ``root/<class>/``. Returns ``{"train": [...], "test": [...]}``.
    """
    path = Path(path)
    m = HMDB51_SPLIT_FILE.match(path.name)
    if m is None:
        raise AnnotationError(path, None, "expected a file name like '<class>_test_split1.txt'")
    seen = SeenEntries(path)
    out: dict[str, list[Sample]] = {"train": [], "test": []}
    for n, line in entry_lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise AnnotationError(path, n, f"expected 'video.avi 0|1|2', got {line!r}")
        if parts[1] not in HMDB51_USE:
            raise AnnotationError(path, n, f"split id must be 0, 1 or 2, got {parts[1]!r}")
        seen.add(parts[0], n)
        split = HMDB51_USE[parts[1]]
        if split is not None:
            out[split].append(Sample(resolve_path(f"{m['cls']}/{parts[0]}", root, path, n), label))
    return out


# ---------------------------------------------------------------------------- Kinetics


KINETICS_HEADER = ["label", "youtube_id", "time_start", "time_end", "split"]
KINETICS_SPLITS = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}


def kinetics_clip_name(youtube_id: str, start: int, end: int, ext: str = ".mp4") -> str:
    """``<youtube_id>_<start:06d>_<end:06d>.mp4``, the name the download scripts use."""
    return f"{youtube_id}_{start:06d}_{end:06d}{ext}"


def _whole_seconds(value: str, what: str, path: Path, line: int) -> int:
    try:
        seconds = float(value)
    except ValueError:
        raise AnnotationError(path, line, f"{what} must be a number, got {value!r}") from None
    if seconds < 0 or seconds != int(seconds):
        raise AnnotationError(path, line, f"{what} must be a whole number of seconds >= 0, got {value!r}")
    return int(seconds)


@dataclass(frozen=True)
class KineticsClip:
    """One Kinetics CSV row: where it came from and the clip file it names."""

    where: str  # file:line
    label: str
    name: str  # clip file name
    split: str  # train | val | test


def parse_kinetics_csv(path: str | Path) -> list[KineticsClip]:
    """Kinetics CSV with header ``label,youtube_id,time_start,time_end,split`` (the test CSV may omit label)."""
    path = require_file(Path(path))
    seen = SeenEntries(path)
    clips = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, None) or []]
        has_label = header == KINETICS_HEADER
        if not has_label and header != KINETICS_HEADER[1:]:
            raise AnnotationError(path, 1, f"expected the header {','.join(KINETICS_HEADER)!r}")
        for row in reader:
            n = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise AnnotationError(path, n, f"expected {len(header)} fields ({','.join(header)}), got {len(row)}")
            row = [v.strip() for v in row]
            label, (yid, start, end, split) = (row[0], row[1:]) if has_label else ("", row)
            if has_label and not label:
                raise AnnotationError(path, n, "empty label")
            if not yid:
                raise AnnotationError(path, n, "empty youtube_id")
            start_s = _whole_seconds(start, "time_start", path, n)
            end_s = _whole_seconds(end, "time_end", path, n)
            if end_s <= start_s:
                raise AnnotationError(path, n, f"time_end {end} must be after time_start {start}")
            if split not in KINETICS_SPLITS:
                raise AnnotationError(path, n, f"unknown split {split!r} (expected train, val, validate or test)")
            name = kinetics_clip_name(yid, start_s, end_s)
            seen.add(name, n)
            clips.append(KineticsClip(f"{path}:{n}", label, name, KINETICS_SPLITS[split]))
    return clips


# ---------------------------------------------------------------------------- Something-Something v2


def read_ssv2_labels(path: str | Path) -> list[str]:
    """``something-something-v2-labels.json``: ``{"Template name": "index"}`` with indices 0..N-1."""
    path = require_file(Path(path))
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    if not isinstance(table, dict) or not table:
        raise AnnotationError(path, 1, "expected an object {label name: index}")
    names: list[str | None] = [None] * len(table)
    for name, index in table.items():
        if not str(index).isdigit() or int(index) >= len(table) or names[int(index)] is not None:
            raise AnnotationError(path, _json_line(path, name), f"bad index {index!r} for label {name!r}")
        names[int(index)] = name
    return names  # type: ignore[return-value]


def _json_line(path: Path, key: str) -> int | None:
    text = path.read_text(encoding="utf-8")
    pos = text.find(json.dumps(key))
    return text.count("\n", 0, pos) + 1 if pos >= 0 else None


def _json_array_items(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, item) for each element of a top-level JSON array."""
    text = require_file(path).read_text(encoding="utf-8-sig")
    decoder = json.JSONDecoder()
    ws = re.compile(r"[\s,]*")
    pos = ws.match(text, 0).end()
    if not text.startswith("[", pos):
        raise AnnotationError(path, text.count("\n", 0, pos) + 1, "expected a JSON array of entries")
    pos = ws.match(text, pos + 1).end()
    line = text.count("\n", 0, pos) + 1
    while pos < len(text) and text[pos] != "]":
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise AnnotationError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
        yield line, item
        nxt = ws.match(text, end).end()
        line += text.count("\n", pos, nxt)
        pos = nxt
    if pos >= len(text):
        raise AnnotationError(path, line, "invalid JSON: unterminated array")


def ssv2_label_name(template: str) -> str:
    """The class of an SSv2 entry: its template without brackets (``[something]`` -> ``something``)."""
    return template.replace("[", "").replace("]", "")


def parse_ssv2_json(path: str | Path, root: str | Path, classes: list[str], ext: str = ".webm") -> list[Sample]:
    """SSv2 ``train.json``/``validation.json``: ``[{"id", "label", "template", "placeholders"}]``.

    The video of an entry is ``<id>.webm``.
    """
    path = Path(path)
    seen = SeenEntries(path)
    samples = []
    for n, item in _json_array_items(path):
        if not isinstance(item, dict) or "id" not in item or "template" not in item:
            raise AnnotationError(path, n, "expected an object with 'id' and 'template'")
        vid = str(item["id"]).strip()
        if not vid:
            raise AnnotationError(path, n, "empty id")
        name = ssv2_label_name(str(item["template"]))
        if name not in classes:
            raise AnnotationError(path, n, f"unknown label {name!r}")
        seen.add(vid, n)
        samples.append(Sample(resolve_path(vid + ext, root, path, n), classes.index(name)))
    return samples
