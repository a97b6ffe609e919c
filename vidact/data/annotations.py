"""Annotation lists: one ``Sample`` per video, parsed from the formats users already have.

Formats (every malformed entry raises ``AnnotationError`` -> ``file:line: reason``):

- data set folder: ``classes.txt`` + ``train.csv``/``val.csv``/``test.csv`` (:func:`load_dataset_dir`)
- CSV ``path,label[,num_frames]`` (:func:`parse_csv`)
- MMAction2 video list ``path label`` (:func:`parse_video_list`)
- MMAction2 rawframe list ``dir total_frames label`` (:func:`parse_rawframe_list`)
- UCF101 ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt`` (:func:`parse_ucf101_list`)

The other public data sets' files (HMDB51 splits, Kinetics CSVs, SSv2 JSON), which only
``vidact data index`` reads, are parsed in :mod:`vidact.data.public_sets` with the entry
helpers here (:func:`entry_lines`, :func:`resolve_path`, :class:`SeenEntries`).

Paths are relative to a data root; a path that escapes it (``../``) is refused, and a
path listed twice in one file is an error. Labels are class indices or class names.

``--data`` (train, eval, x3d expand) takes a data set folder (:func:`load_dataset_dir`).
``--list`` (frames extract, flow extract) goes through :func:`load_data`, so it accepts
either a data set folder or a single list file in any of the generic list formats (CSV,
video list, rawframe list, UCF101 train/test list), detected by extension and content
(:func:`detect_list_format`).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vidact.errors import AnnotationError, UsageError

SPLITS = ("train", "val", "test")
LIST_FORMATS = ("csv", "videolist", "rawframes", "ucf101")


@dataclass(frozen=True)
class Sample:
    """One labelled video: a video file, a frame folder or a flow folder."""

    path: str  # absolute path
    label: int
    num_frames: int | None = None  # known for rawframe lists; None means "probe it"


@dataclass
class DatasetSplits:
    """A data set folder: class names and the samples of each split."""

    root: Path
    classes: list[str]
    splits: dict[str, list[Sample]] = field(default_factory=dict)
    horizontal_flip: bool = True  # False when classes depend on left/right (from dataset.json)

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits:
            raise UsageError(f"{self.root}: no {name} split (expected {name}.csv)")
        return self.splits[name]


# ---------------------------------------------------------------------------- reading entries


def require_file(path: Path) -> Path:
    """``path``, when it is a file (else a ``UsageError``)."""
    if not path.is_file():
        raise UsageError(f"{path}: annotation file not found")
    return path


def entry_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of every non-blank, non-comment line."""
    # surrogateescape keeps non-UTF-8 file names byte-exact, as os.fsdecode does
    text = require_file(path).read_text(encoding="utf-8-sig", errors="surrogateescape")
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield n, line


def _label(value: str, classes: list[str] | None, path: Path, line: int) -> int:
    value = value.strip()
    if value.lstrip("-").isdigit():
        label = int(value)
    elif classes is not None and value in classes:
        return classes.index(value)
    else:
        raise AnnotationError(path, line, f"unknown label {value!r}")
    if label < 0 or (classes is not None and label >= len(classes)):
        raise AnnotationError(path, line, f"label {label} out of range (0..{len(classes or []) - 1})")
    return label


def resolve_path(rel: str, root: Path, path: Path, line: int) -> str:
    """Absolute path of ``rel`` under ``root``; relative paths may not climb out of it.

    The check is lexical (``..`` parts), so a data root that holds symlinks to other
    disks still works.
    """
    if not rel:
        raise AnnotationError(path, line, "empty path")
    p = Path(rel)
    base = Path(os.path.normpath(Path(root).absolute()))
    full = Path(os.path.normpath(p if p.is_absolute() else base / p))
    if not p.is_absolute() and not full.is_relative_to(base):
        raise AnnotationError(path, line, f"path {rel!r} escapes the data root {root}")
    return str(full)


class SeenEntries:
    """Refuses a path listed twice in one file."""

    def __init__(self, path: Path):
        self.path = path
        self.first: dict[str, int] = {}

    def add(self, key: str, line: int) -> None:
        if key in self.first:
            raise AnnotationError(self.path, line, f"duplicate entry {key!r} (first on line {self.first[key]})")
        self.first[key] = line


def _positive_int(value: str, what: str, path: Path, line: int) -> int:
    if not value.isdigit() or int(value) < 1:
        raise AnnotationError(path, line, f"{what} must be a positive integer, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------- classes


def read_classes(path: str | Path) -> list[str]:
    """``classes.txt``: one class name per line; the line number (from 0) is the label."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: classes file not found")
    names = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if name in names:
            raise AnnotationError(path, n, f"duplicate class name {name!r}")
        names.append(name)
    if not names:
        raise AnnotationError(path, None, "no class names")
    return names


def read_ucf101_classes(path: str | Path) -> list[str]:
    """UCF101 ``classInd.txt``: lines ``1 ApplyEyeMakeup``, indices 1..N in order."""
    path = Path(path)
    names: list[str] = []
    for n, line in entry_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise AnnotationError(path, n, f"expected 'index name', got {line!r}")
        if int(parts[0]) != len(names) + 1:
            raise AnnotationError(path, n, f"expected class index {len(names) + 1}, got {parts[0]}")
        if parts[1] in names:
            raise AnnotationError(path, n, f"duplicate class name {parts[1]!r}")
        names.append(parts[1])
    if not names:
        raise AnnotationError(path, None, "no class names")
    return names


# ---------------------------------------------------------------------------- generic lists


def parse_csv(path: str | Path, root: str | Path | None = None, classes: list[str] | None = None) -> list[Sample]:
    """CSV with header ``path,label`` (optional third column ``num_frames``); paths relative to ``root``."""
    path = require_file(Path(path))
    root = Path(root) if root is not None else path.parent
    seen = SeenEntries(path)
    samples = []
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, None) or []]
        if header[:2] != ["path", "label"]:
            raise AnnotationError(path, 1, "expected the header 'path,label'")
        has_frames = header[2:3] == ["num_frames"]
        for row in reader:
            line = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise AnnotationError(path, line, f"expected 'path,label', got {','.join(row)!r}")
            rel = row[0].strip()
            seen.add(rel, line)
            frames = None
            if has_frames and len(row) > 2 and row[2].strip():
                frames = _positive_int(row[2].strip(), "num_frames", path, line)
            samples.append(Sample(resolve_path(rel, root, path, line), _label(row[1], classes, path, line), frames))
    return samples


def parse_video_list(
    path: str | Path, root: str | Path | None = None, classes: list[str] | None = None
) -> list[Sample]:
    """MMAction2 video list: ``path label`` per line (the path may contain spaces)."""
    return _parse_columns(path, root, classes, ("path", "label"))


def parse_rawframe_list(
    path: str | Path, root: str | Path | None = None, classes: list[str] | None = None
) -> list[Sample]:
    """MMAction2 rawframe list: ``frame_dir total_frames label`` per line."""
    return _parse_columns(path, root, classes, ("frame_dir", "total_frames", "label"))


def _parse_columns(
    path: str | Path, root: str | Path | None, classes: list[str] | None, columns: tuple[str, ...]
) -> list[Sample]:
    """A list of ``path [frames] label`` lines, split from the right so the path may contain spaces."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    seen = SeenEntries(path)
    samples = []
    for n, line in entry_lines(path):
        parts = line.rsplit(None, len(columns) - 1)
        if len(parts) != len(columns):
            raise AnnotationError(path, n, f"expected '{' '.join(columns)}', got {line!r}")
        rel, label = parts[0], parts[-1]
        frames = _positive_int(parts[1], columns[1], path, n) if len(columns) == 3 else None
        seen.add(rel, n)
        samples.append(Sample(resolve_path(rel, root, path, n), _label(label, classes, path, n), frames))
    return samples


def _match_class(name: str, classes: list[str]) -> int | None:
    if name in classes:
        return classes.index(name)
    lowered = [c.lower() for c in classes]
    return lowered.index(name.lower()) if name.lower() in lowered else None


def parse_ucf101_list(path: str | Path, root: str | Path, classes: list[str]) -> list[Sample]:
    """UCF101 ``trainlist0N.txt`` (``Class/v_x.avi 1``, 1-based) or ``testlist0N.txt`` (``Class/v_x.avi``).

    Without a label the class comes from the folder name; with one, it must agree with it.
    """
    path = Path(path)
    seen = SeenEntries(path)
    samples = []
    for n, line in entry_lines(path):
        parts = line.split()
        if len(parts) not in (1, 2):
            raise AnnotationError(path, n, f"expected 'Class/video.avi [label]', got {line!r}")
        rel = parts[0]
        folder = Path(rel).parent.name
        by_folder = _match_class(folder, classes) if folder else None
        if len(parts) == 2:
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                raise AnnotationError(path, n, f"label {parts[1]!r} out of range (1..{len(classes)})")
            label = int(parts[1]) - 1
            if by_folder is not None and by_folder != label:
                raise AnnotationError(
                    path, n, f"label {parts[1]} ({classes[label]}) does not match the folder {folder!r}"
                )
        elif by_folder is None:
            raise AnnotationError(path, n, f"unknown label {folder!r} (from the folder name)")
        else:
            label = by_folder
        seen.add(rel, n)
        samples.append(Sample(resolve_path(rel, root, path, n), label))
    return samples


# ---------------------------------------------------------------------------- loading with detection


def split_from_name(path: str | Path) -> str | None:
    """``train``/``val``/``test`` from a list file name (``trainlist01.txt`` -> train), or None."""
    name = Path(path).name.lower()
    for split, words in (("train", ("train",)), ("val", ("val",)), ("test", ("test",))):
        if any(w in name for w in words):
            return split
    return None


def detect_list_format(path: str | Path) -> str:
    """``csv``, ``videolist``, ``rawframes`` or ``ucf101``, from the file name and first entry."""
    path = require_file(Path(path))
    if re.fullmatch(r"(train|test)list\d+\.txt", path.name):
        return "ucf101"
    first = next(entry_lines(path), None)
    if first is None:
        raise AnnotationError(path, None, "empty annotation list")
    n, line = first
    if path.suffix.lower() == ".csv" or line.replace(" ", "").startswith("path,label"):
        return "csv"
    parts = line.rsplit(None, 2)
    if len(parts) == 3 and parts[1].isdigit():
        return "rawframes"
    if len(parts) >= 2:
        return "videolist"
    raise AnnotationError(path, n, f"cannot tell the list format from {line!r} (expected 'path label')")


def parse_list(
    path: str | Path, fmt: str | None = None, root: str | Path | None = None, classes: list[str] | None = None
) -> list[Sample]:
    """Any generic list format (``fmt`` or detected); paths relative to ``root`` (default: the file's folder)."""
    path = Path(path)
    fmt = fmt or detect_list_format(path)
    if fmt == "csv":
        return parse_csv(path, root, classes)
    if fmt == "videolist":
        return parse_video_list(path, root, classes)
    if fmt == "rawframes":
        return parse_rawframe_list(path, root, classes)
    if fmt == "ucf101":
        if classes is None:
            classes = read_ucf101_classes(path.parent / "classInd.txt")
        return parse_ucf101_list(path, root if root is not None else path.parent, classes)
    raise UsageError(f"unknown list format {fmt!r} (expected one of {', '.join(LIST_FORMATS)})")


def _label_token(fmt: str, line: str) -> str:
    if fmt == "csv":
        row = next(csv.reader([line]))
        return row[1] if len(row) > 1 else ""
    return line.rsplit(None, 1)[-1] if fmt in ("videolist", "rawframes") else ""


def infer_classes(files: list[str | Path], fmt: str | None = None) -> list[str]:
    """Class names from the labels of list files: sorted names, or ``class_0 .. class_K`` for indices."""
    tokens = set()
    for f in map(Path, files):
        kind = fmt or detect_list_format(f)
        lines = list(entry_lines(f))[1 if kind == "csv" else 0 :]
        tokens |= {_label_token(kind, line).strip() for _, line in lines}
    tokens.discard("")
    if tokens and all(t.isdigit() for t in tokens):
        return [f"class_{i}" for i in range(max(int(t) for t in tokens) + 1)]
    return sorted(t for t in tokens if not t.isdigit())


def _classes_for(path: Path, classes: list[str] | str | Path | None) -> list[str] | None:
    if isinstance(classes, (str, Path)):
        return read_classes(classes)
    if classes is not None:
        return list(classes)
    for name in ("classes.txt", "classInd.txt"):
        if (path.parent / name).is_file():
            return (
                read_classes(path.parent / name) if name == "classes.txt" else read_ucf101_classes(path.parent / name)
            )
    return None


def load_data(
    path: str | Path, classes: list[str] | str | Path | None = None, root: str | Path | None = None
) -> DatasetSplits:
    """What ``--list`` takes: a data set folder, or one list file in any generic list format.

    A single list file becomes the split its name says (train/val/test; any other name:
    val). Class names come from ``classes`` (a list or a ``classes.txt``), else from a
    ``classes.txt``/``classInd.txt`` beside the file, else from the labels themselves
    (:func:`infer_classes`).
    """
    path = Path(path)
    if path.is_dir():
        return load_dataset_dir(path)
    if not path.exists():
        raise UsageError(f"{path}: data set folder or list file not found")
    fmt = detect_list_format(path)
    names = _classes_for(path, classes)
    if names is None and fmt != "ucf101":
        names = infer_classes([path], fmt)
    samples = parse_list(path, fmt, root=root, classes=names)
    if not samples:
        raise AnnotationError(path, None, "no samples")
    return DatasetSplits(path, names, {split_from_name(path) or "val": samples})


def load_dataset_dir(root: str | Path) -> DatasetSplits:
    """A data set folder: ``classes.txt`` plus ``train.csv``/``val.csv``/``test.csv``."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: data folder not found")
    classes = read_classes(root / "classes.txt")
    splits = {s: parse_csv(root / f"{s}.csv", root, classes) for s in SPLITS if (root / f"{s}.csv").is_file()}
    if not splits:
        raise UsageError(f"{root}: no train.csv / val.csv / test.csv found")
    return DatasetSplits(root, classes, splits, **read_dataset_options(root))


DATASET_OPTIONS = "dataset.json"


def read_dataset_options(root: str | Path) -> dict:
    """Optional ``dataset.json`` in a data set folder, e.g. ``{"horizontal_flip": false}``."""
    path = Path(root) / DATASET_OPTIONS
    if not path.is_file():
        return {}
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    if not isinstance(options, dict) or not isinstance(options.get("horizontal_flip", True), bool):
        raise AnnotationError(path, None, 'expected an object like {"horizontal_flip": false}')
    return {"horizontal_flip": options.get("horizontal_flip", True)}


def write_dataset_options(root: str | Path, horizontal_flip: bool) -> None:
    """Write ``dataset.json`` when flips must be off; otherwise remove a stale one (the default is on)."""
    from vidact.io.atomic import atomic_write_text

    path = Path(root) / DATASET_OPTIONS
    if horizontal_flip:
        path.unlink(missing_ok=True)
    else:
        atomic_write_text(path, json.dumps({"horizontal_flip": False}) + "\n")
