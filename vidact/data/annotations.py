"""Annotation lists: one ``Sample`` per video, parsed from the formats users already have."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from vidact.errors import AnnotationError, UsageError

SPLITS = ("train", "val", "test")


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

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits:
            raise UsageError(f"{self.root}: no {name} split (expected {name}.csv)")
        return self.splits[name]


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


def _resolve(rel: str, root: Path, path: Path, line: int) -> str:
    p = Path(rel)
    full = p if p.is_absolute() else (root / p)
    full = full.resolve()
    if not p.is_absolute() and not full.is_relative_to(root.resolve()):
        raise AnnotationError(path, line, f"path {rel!r} escapes the data root {root}")
    return str(full)


def parse_csv(path: str | Path, root: str | Path | None = None, classes: list[str] | None = None) -> list[Sample]:
    """CSV with header ``path,label`` (label: index or class name); paths relative to ``root``."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    if not path.is_file():
        raise UsageError(f"{path}: annotation file not found")
    samples = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["path", "label"]:
            raise AnnotationError(path, 1, "expected the header 'path,label'")
        for row in reader:
            line = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise AnnotationError(path, line, f"expected 'path,label', got {','.join(row)!r}")
            samples.append(Sample(_resolve(row[0].strip(), root, path, line), _label(row[1], classes, path, line)))
    return samples


def load_dataset_dir(root: str | Path) -> DatasetSplits:
    """A data set folder: ``classes.txt`` plus ``train.csv``/``val.csv``/``test.csv``."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: data folder not found")
    classes = read_classes(root / "classes.txt")
    splits = {s: parse_csv(root / f"{s}.csv", root, classes) for s in SPLITS if (root / f"{s}.csv").is_file()}
    if not splits:
        raise UsageError(f"{root}: no train.csv / val.csv / test.csv found")
    return DatasetSplits(root, classes, splits)
