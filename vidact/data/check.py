"""Scan a data set folder up front: every problem that would otherwise stop training hours in.

``check_dataset`` reads ``classes.txt`` and the split lists without stopping at the first bad
line, then opens every listed video (probe, decode the first and last frame) or frame folder.
It reports per-video statistics (frames, fps, duration, size), label coverage per class and
every problem found: malformed lines, unknown labels, missing files, paths escaping the data
root, duplicate entries, undecodable or too-short videos, classes without samples, empty lists.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import json
import os
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vidact.data.annotations import SPLITS, read_classes
from vidact.errors import UsageError, VidactError, first_line
from vidact.io.atomic import atomic_write_text

ERROR = "error"  # the sample cannot be used at all
WARNING = "warning"  # usable, but probably not what was meant


def shown(path: str | Path) -> str:
    """A path fit for printing: undecodable file-name bytes become ``\\xNN`` escapes."""
    text = str(path)
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file-name byte produces
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class Problem:
    """One finding: what kind, where (``file:line`` or a video path), and why."""

    kind: str
    where: str
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Entry:
    """A parsed list line that passed the label and path checks."""

    split: str
    where: str  # list file and line, e.g. ``train.csv:4``
    rel: str  # the path as written in the list
    path: str  # resolved absolute path
    label: int


@dataclass(frozen=True)
class VideoStats:
    """What one listed video (or frame folder) looks like."""

    path: str
    split: str
    label: int
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str


@dataclass
class CheckReport:
    """The result of :func:`check_dataset`."""

    root: str
    classes: list[str]
    splits: list[str]
    listed: dict[str, int] = field(default_factory=dict)
    videos: list[VideoStats] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def coverage(self) -> dict[str, dict[str, int]]:
        """Readable samples per class and split: ``{split: {class: count}}``."""
        table = {s: {c: 0 for c in self.classes} for s in self.splits}
        for v in self.videos:
            table[v.split][self.classes[v.label]] += 1
        return table

    def summary(self) -> dict:
        frames = [v.num_frames for v in self.videos]
        durations = [v.duration for v in self.videos]
        sizes: dict[str, int] = {}
        for v in self.videos:
            key = f"{v.width}x{v.height}"
            sizes[key] = sizes.get(key, 0) + 1
        return {
            "listed": sum(self.listed.values()),
            "readable": len(self.videos),
            "errors": sum(p.severity == ERROR for p in self.problems),
            "warnings": sum(p.severity == WARNING for p in self.problems),
            "frames": _spread(frames),
            "duration_s": _spread(durations),
            "total_duration_s": round(sum(durations), 3),
            "sizes": dict(sorted(sizes.items(), key=lambda kv: -kv[1])),
        }

    def to_dict(self) -> dict:
        return {
            "root": shown(self.root),
            "ok": not self.problems,
            "splits": self.splits,
            "classes": self.classes,
            "summary": self.summary(),
            "coverage": self.coverage(),
            "problems": [p.to_dict() for p in self.problems],
            "videos": [{**asdict(v), "path": shown(v.path)} for v in self.videos],
        }

    def to_markdown(self) -> str:
        s = self.summary()
        lines = [
            f"# Data set check: {shown(self.root)}",
            "",
            f"**{'clean' if not self.problems else 'problems found'}**: {s['readable']} of {s['listed']} "
            f"listed videos readable, {s['errors']} errors, {s['warnings']} warnings.",
            "",
            "| | min | median | max |",
            "|---|---|---|---|",
            f"| frames | {s['frames']['min']} | {s['frames']['median']} | {s['frames']['max']} |",
            f"| duration (s) | {s['duration_s']['min']} | {s['duration_s']['median']} | {s['duration_s']['max']} |",
            "",
            "Frame sizes: " + (", ".join(f"{k} ({n})" for k, n in s["sizes"].items()) or "none"),
            "",
            "## Samples per class",
            "",
            "| class | " + " | ".join(self.splits) + " |",
            "|---|" + "---|" * len(self.splits),
        ]
        cov = self.coverage()
        for c in self.classes:
            lines.append(f"| {c} | " + " | ".join(str(cov[sp][c]) for sp in self.splits) + " |")
        lines += ["", "## Problems", ""]
        if self.problems:
            lines += ["| severity | kind | where | message |", "|---|---|---|---|"]
            lines += [
                f"| {p.severity} | {p.kind} | `{p.where}` | {p.message.replace('|', '/')} |" for p in self.problems
            ]
        else:
            lines.append("None.")
        return "\n".join(lines) + "\n"


def _spread(values: list[float]) -> dict:
    if not values:
        return {"min": None, "median": None, "max": None}
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def _parse_label(text: str, classes: list[str]) -> int | str:
    """The label index, or the reason it is not one."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        label = int(text)
        if 0 <= label < len(classes):
            return label
        return f"label {label} out of range (0..{len(classes) - 1})"
    if text in classes:
        return classes.index(text)
    return f"unknown label {text!r}"


def read_split(root: Path, split: str, classes: list[str]) -> tuple[list[Entry], list[Problem]]:
    """Every usable line of ``root/<split>.csv`` and a problem for each unusable one."""
    path = root / f"{split}.csv"
    entries: list[Entry] = []
    problems: list[Problem] = []
    resolved_root = root.resolve()
    # surrogateescape keeps non-UTF-8 file names byte-exact (as os.fsdecode does)
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["path", "label"]:
            problems.append(Problem("malformed", f"{shown(path)}:1", "expected the header 'path,label'"))
            return entries, problems
        for row in reader:
            where = f"{shown(path)}:{reader.line_num}"
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                problems.append(Problem("malformed", where, f"expected 'path,label', got {shown(','.join(row))!r}"))
                continue
            rel = row[0].strip()
            label = _parse_label(row[1], classes)
            if isinstance(label, str):
                problems.append(Problem("bad-label", where, label))
                continue
            full = (Path(rel) if Path(rel).is_absolute() else root / rel).resolve()
            if not Path(rel).is_absolute() and not full.is_relative_to(resolved_root):
                problems.append(Problem("escapes-root", where, f"path {shown(rel)!r} escapes the data root {root}"))
                continue
            entries.append(Entry(split, where, rel, str(full), label))
    if not entries and not problems:
        problems.append(Problem("empty-list", shown(path), "no samples listed"))
    return entries, problems


def _duplicates(entries: list[Entry]) -> list[Problem]:
    """The same file listed twice (within a split, or in two splits: a train/test leak)."""
    first: dict[str, Entry] = {}
    problems = []
    for e in entries:
        seen = first.get(e.path)
        if seen is None:
            first[e.path] = e
        elif seen.split == e.split:
            problems.append(
                Problem("duplicate", e.where, f"{shown(e.rel)} is listed again (first at {seen.where})", WARNING)
            )
        else:
            problems.append(
                Problem(
                    "duplicate",
                    e.where,
                    f"{shown(e.rel)} is also in {seen.split} ({seen.where}): the splits overlap",
                    WARNING,
                )
            )
    return problems


def inspect_sample(path: str | Path) -> tuple[int, float, float, int, int, str]:
    """(frames, fps, duration, width, height, codec) after decoding the first and last frame.

    ``path`` is a video file or a rawframe folder; raises :class:`VidactError` when unreadable.
    """
    from vidact.errors import VideoDecodeError

    path = Path(path)
    if path.is_dir():
        from vidact.io.frames import count_frames, read_frames

        n = count_frames(path)
        if n == 0:
            raise VideoDecodeError(shown(path), "frame folder holds no img_NNNNN.jpg frames")
        first_last = read_frames(path, [0, n - 1])
        h, w = first_last.shape[1:3]
        return n, 0.0, 0.0, int(w), int(h), "jpeg"
    from vidact.io.video import decode_frames, probe

    if not path.exists():
        raise VideoDecodeError(shown(path), "no such file")
    info = probe(path, count_frames=True)
    decode_frames(path, [0, info.num_frames - 1])
    return info.num_frames, info.fps, info.duration, info.width, info.height, info.codec


def _scan(entry: Entry) -> tuple[Entry, VideoStats | None, Problem | None]:
    if not Path(entry.path).exists():
        return entry, None, Problem("missing", entry.where, f"{shown(entry.rel)}: no such file")
    try:
        n, fps, duration, w, h, codec = inspect_sample(entry.path)
    except VidactError as exc:
        return entry, None, Problem("undecodable", entry.where, shown(str(exc)))
    except Exception as exc:  # any decoder failure means the same thing here
        reason = f"{shown(entry.rel)}: {first_line(exc, with_type=True)}"
        return entry, None, Problem("undecodable", entry.where, reason)
    stats = VideoStats(entry.path, entry.split, entry.label, n, round(fps, 3), round(duration, 3), w, h, codec)
    expected = duration * fps
    if expected and abs(expected - n) > max(2.0, 0.1 * expected):
        return (
            entry,
            stats,
            Problem(
                "frame-count",
                entry.where,
                f"{shown(entry.rel)}: {n} frames, but {duration:.2f} s at {fps:.2f} fps "
                f"promise {expected:.0f} (truncated?)",
                WARNING,
            ),
        )
    if n < 2:
        return entry, stats, Problem("too-short", entry.where, f"{shown(entry.rel)}: only {n} frame", WARNING)
    return entry, stats, None


def check_dataset(
    root: str | Path,
    split: str = "all",
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Check the data set folder ``root`` (``classes.txt`` + ``train.csv``/``val.csv``/``test.csv``).

    ``split`` is ``all`` or one split name; ``progress(done, total)`` is called before the
    scan and after each video. ``workers`` threads open videos in parallel.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: data folder not found")
    if split != "all" and split not in SPLITS:
        raise UsageError(f"--split must be all, {', '.join(SPLITS)}; got {split!r}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    classes = read_classes(root / "classes.txt")
    wanted = [s for s in SPLITS if (root / f"{s}.csv").is_file()] if split == "all" else [split]
    if not wanted:
        raise UsageError(f"{root}: no train.csv / val.csv / test.csv found")
    if split != "all" and not (root / f"{split}.csv").is_file():
        raise UsageError(f"{root}: no {split} split (expected {split}.csv)")
    report = CheckReport(str(root), classes, wanted)
    entries: list[Entry] = []
    for s in wanted:
        found, problems = read_split(root, s, classes)
        report.listed[s] = len(found) + sum(p.kind != "empty-list" for p in problems)
        entries += found
        report.problems += problems
    report.problems += _duplicates(entries)
    unique = list({e.path: e for e in reversed(entries)}.values())[::-1]  # first listing wins
    if progress is not None:
        progress(0, len(unique))
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (_entry, stats, problem) in enumerate(pool.map(_scan, unique), 1):
            if stats is not None:
                report.videos.append(stats)
            if problem is not None:
                report.problems.append(problem)
            if progress is not None:
                progress(done, len(unique))
    for s, per_class in report.coverage().items():
        if report.listed.get(s):
            for name, count in per_class.items():
                if count == 0:
                    report.problems.append(
                        Problem(
                            "no-samples", str(root / f"{s}.csv"), f"class {name!r} has no readable samples", WARNING
                        )
                    )
    return report


def write_report(report: CheckReport, dest: str | Path) -> Path:
    """Write the report as JSON (``.json``) or Markdown (``.md``), atomically."""
    dest = Path(dest)
    if dest.suffix == ".json":
        text = json.dumps(report.to_dict(), indent=2) + "\n"
    elif dest.suffix == ".md":
        text = report.to_markdown()
    else:
        raise UsageError(f"{dest}: report must end in .json or .md")
    try:
        atomic_write_text(dest, text)
    except OSError as exc:
        raise VidactError(f"{dest}: cannot write the report: {exc.strerror or exc}", exit_code=2) from None
    return dest
