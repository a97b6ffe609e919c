"""Turn a public data set's own layout into a vidact data set folder (``vidact data index``).

Each ``index_*`` function reads one layout under ``ROOT`` (annotation files from ``ann``
or their usual places) and returns an :class:`Index`: class names, samples per split and
the listed videos that are not on disk. :func:`write_dataset_dir` writes ``classes.txt``
and ``train.csv``/``val.csv``/``test.csv`` that :func:`vidact.data.annotations.load_dataset_dir`
reads back.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from vidact.data.annotations import (
    SPLITS,
    Sample,
    infer_classes,
    parse_list,
    parse_ucf101_list,
    read_classes,
    read_ucf101_classes,
    split_from_name,
    write_dataset_options,
)
from vidact.data.public_sets import (
    HMDB51_SPLIT_FILE,
    KINETICS_HEADER,
    parse_hmdb51_split,
    parse_kinetics_csv,
    parse_ssv2_json,
    read_ssv2_labels,
)
from vidact.data.videos import find_videos
from vidact.errors import UsageError
from vidact.io.atomic import atomic_write_text

FORMATS = ("ucf101", "hmdb51", "kinetics", "ssv2", "folder", "csv", "videolist", "rawframes")
MISSING_FILE = "missing.txt"


@dataclass
class Index:
    """A data set read from its own layout: classes, samples per split, missing videos."""

    classes: list[str]
    splits: dict[str, list[Sample]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # "where: reason", one per listed video not on disk
    horizontal_flip: bool = True  # False: written to dataset.json so training does not mirror clips

    def to_dict(self) -> dict:
        return {
            "classes": len(self.classes),
            **{split: len(samples) for split, samples in self.splits.items()},
            "missing": len(self.missing),
        }


def _ann_dir(root: Path, ann: Path | None, wanted: str, places: tuple[str, ...]) -> Path:
    """The folder holding the annotation file ``wanted`` (a name or glob): ``ann`` or a usual place."""
    if ann is not None:
        if not ann.exists():
            raise UsageError(f"{ann}: annotation file or folder not found")
        return ann if ann.is_dir() else ann.parent
    for place in places:
        folder = root / place
        if folder.is_dir() and any(folder.glob(wanted)):
            return folder
    raise UsageError(f"{root}: no {wanted} found (looked in {', '.join(str(root / p) for p in places)}); pass --ann")


def _video_root(root: Path, *names: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return root


def _drop_missing(index: Index, is_dir: bool = False) -> Index:
    """Move listed paths that do not exist on disk from the splits to ``index.missing``."""
    exists = os.path.isdir if is_dir else os.path.isfile
    for split, samples in index.splits.items():
        kept = []
        for s in samples:
            if exists(s.path):
                kept.append(s)
            else:
                index.missing.append(f"{s.path}: {'frame folder' if is_dir else 'video'} not found ({split})")
        index.splits[split] = kept
    return index


def _check_split(split: int) -> int:
    if not 1 <= split <= 3:
        raise UsageError(f"--split must be 1, 2 or 3, got {split}")
    return split


def index_ucf101(root: Path, ann: Path | None = None, split: int = 1) -> Index:
    """UCF101: ``classInd.txt``, ``trainlist0N.txt`` -> train, ``testlist0N.txt`` -> val; videos in ROOT[/UCF-101]."""
    _check_split(split)
    folder = _ann_dir(root, ann, "classInd.txt", (".", "ucfTrainTestlist", "annotations"))
    classes = read_ucf101_classes(folder / "classInd.txt")
    videos = _video_root(root, "UCF-101")
    index = Index(
        classes,
        {
            "train": parse_ucf101_list(folder / f"trainlist{split:02d}.txt", videos, classes),
            "val": parse_ucf101_list(folder / f"testlist{split:02d}.txt", videos, classes),
        },
    )
    return _drop_missing(index)


def index_hmdb51(root: Path, ann: Path | None = None, split: int = 1) -> Index:
    """HMDB51: ``<class>_test_split<N>.txt`` (1 train, 2 test -> val); classes sorted; videos in ROOT/<class>/."""
    _check_split(split)
    pattern = f"*_test_split{split}.txt"
    folder = _ann_dir(root, ann, pattern, (".", "testTrainMulti_7030_splits", "splits", "annotations"))
    files = sorted(p for p in folder.glob(pattern) if HMDB51_SPLIT_FILE.match(p.name))
    if not files:
        raise UsageError(f"{folder}: no {pattern} split files")
    classes = [HMDB51_SPLIT_FILE.match(p.name)["cls"] for p in files]
    videos = _video_root(root, "hmdb51_org", "hmdb51", "videos")
    index = Index(classes, {"train": [], "val": []})
    for label, path in enumerate(files):
        parts = parse_hmdb51_split(path, videos, label)
        index.splits["train"] += parts["train"]
        index.splits["val"] += parts["test"]
    return _drop_missing(index)


def _videos_by_stem(root: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for p in find_videos(root):
        found.setdefault(p.stem, []).append(p)
    return found


def _pick_clip(candidates: list[Path], split: str, label: str) -> Path | None:
    """Among files with the clip's name, prefer ``<split>/<label>/``, then ``<label>/``, then any."""
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    labels = {label, label.replace(" ", "_")}
    for p in candidates:
        if p.parent.name in labels and split in p.parent.parent.name:
            return p
    for p in candidates:
        if p.parent.name in labels:
            return p
    return candidates[0]


def index_kinetics(root: Path, ann: Path | None = None) -> Index:
    """Kinetics CSVs; clips ``<id>_<start:06d>_<end:06d>.mp4`` in ``<split>/<label>/`` or anywhere under ROOT.

    Classes are the labels sorted by name; rows without a label (the test CSV) are skipped;
    listed clips not found on disk are reported in ``missing``.
    """
    if ann is not None and ann.is_file():
        files = [ann]
    else:
        folder = _ann_dir(root, ann, "*.csv", (".", "annotations", "kinetics400", "kinetics700"))
        files = sorted(p for p in folder.glob("*.csv") if _is_kinetics_csv(p))
        if not files:
            raise UsageError(f"{folder}: no Kinetics CSV (header label,youtube_id,time_start,time_end,split)")
    rows = [clip for f in files for clip in parse_kinetics_csv(f)]
    classes = sorted({c.label for c in rows if c.label})
    if not classes:
        raise UsageError(f"{files[0]}: no labelled rows")
    on_disk = _videos_by_stem(root)
    index = Index(classes, {})
    for clip in rows:
        if not clip.label:
            continue
        path = _pick_clip(on_disk.get(Path(clip.name).stem, []), clip.split, clip.label)
        if path is None:
            index.missing.append(f"{clip.where}: clip {clip.name} not found under {root}")
            continue
        index.splits.setdefault(clip.split, []).append(Sample(str(path.absolute()), classes.index(clip.label)))
    return index


def _is_kinetics_csv(path: Path) -> bool:
    with open(path, encoding="utf-8-sig") as f:
        first = f.readline().strip().replace(" ", "")
    return first in (",".join(KINETICS_HEADER), ",".join(KINETICS_HEADER[1:]))


def index_ssv2(root: Path, ann: Path | None = None) -> Index:
    """Something-Something v2: labels JSON + train/validation JSON; videos ``<id>.webm`` in ROOT[/20bn-...]."""
    folder = _ann_dir(root, ann, "*labels.json", (".", "labels", "annotations"))
    labels = next(
        (folder / n for n in ("something-something-v2-labels.json", "labels.json") if (folder / n).is_file()), None
    )
    if labels is None:
        raise UsageError(f"{folder}: no something-something-v2-labels.json")
    classes = read_ssv2_labels(labels)
    videos = _video_root(root, "20bn-something-something-v2", "videos")
    index = Index(classes, {})
    for split, names in (
        ("train", ("something-something-v2-train.json", "train.json")),
        ("val", ("something-something-v2-validation.json", "validation.json")),
    ):
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is None:
            raise UsageError(f"{folder}: no {names[0]} (or {names[1]})")
        index.splits[split] = parse_ssv2_json(path, videos, classes)
    return _drop_missing(index)


def _class_tree(root: Path) -> dict[str, list[Path]]:
    tree = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        videos = find_videos(d)
        if videos:
            tree[d.name] = videos
    return tree


def index_folder(root: Path, val_fraction: float = 0.2) -> Index:
    """Folder per class: ``ROOT/<class>/<video>`` (or ``ROOT/train/<class>/`` + ``ROOT/val/<class>/``).

    Without split folders the last ``val_fraction`` of each class (sorted by name) is val.
    """
    if not root.is_dir():
        raise UsageError(f"{root}: data root not found")
    if not 0 <= val_fraction < 1:
        raise UsageError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if "train" in split_dirs and len(split_dirs) > 1:
        trees = {s: _class_tree(d) for s, d in split_dirs.items()}
        classes = sorted(set().union(*trees.values()))
        splits = {
            s: [Sample(str(p.absolute()), classes.index(c)) for c, ps in t.items() for p in ps]
            for s, t in trees.items()
        }
        return Index(classes, splits)
    tree = _class_tree(root)
    if not tree:
        raise UsageError(f"{root}: no class folders with videos (expected ROOT/<class>/<video>)")
    classes = sorted(tree)
    index = Index(classes, {"train": [], "val": []})
    for label, name in enumerate(classes):
        videos = tree[name]
        n_val = int(round(len(videos) * val_fraction)) if len(videos) > 1 else 0
        for i, p in enumerate(videos):
            index.splits["val" if i >= len(videos) - n_val else "train"].append(Sample(str(p.absolute()), label))
    return index


def index_lists(root: Path, fmt: str, ann: Path | None) -> Index:
    """Generic lists (csv / videolist / rawframes): ``--ann`` is a list file or a folder of them.

    Each file's split comes from its name (``train``/``val``/``test``; a lone file without one is
    train). Classes come from a ``classes.txt`` in ROOT or beside the lists, else from the labels.
    """
    if ann is None:
        raise UsageError(f"--format {fmt} needs --ann LIST_FILE (or a folder of train/val lists)")
    if not ann.exists():
        raise UsageError(f"{ann}: annotation file or folder not found")
    if ann.is_dir():
        files = sorted(
            p
            for p in ann.iterdir()
            if p.is_file() and p.suffix.lower() in (".csv", ".txt", ".lst") and split_from_name(p) is not None
        )
        if not files:
            raise UsageError(f"{ann}: no list files named like train/val/test")
    else:
        files = [ann]
    classes_txt = next((p for p in (root / "classes.txt", files[0].parent / "classes.txt") if p.is_file()), None)
    classes = read_classes(classes_txt) if classes_txt else infer_classes(files, fmt)
    index = Index(classes, {})
    for f in files:
        split = split_from_name(f) or "train"
        if split in index.splits:
            raise UsageError(f"{f}: a second {split} list; pass one list per split")
        index.splits[split] = parse_list(f, fmt, root=root, classes=classes)
    return _drop_missing(index, is_dir=(fmt == "rawframes"))


def index_dataset(
    root: str | Path, fmt: str, split: int = 1, ann: str | Path | None = None, val_fraction: float = 0.2
) -> Index:
    """Read the data set under ``root`` in layout ``fmt`` (one of :data:`FORMATS`)."""
    root = Path(root)
    ann = Path(ann) if ann is not None else None
    if not root.is_dir():
        raise UsageError(f"{root}: data root not found")
    if fmt == "ucf101":
        index = index_ucf101(root, ann, split)
    elif fmt == "hmdb51":
        index = index_hmdb51(root, ann, split)
    elif fmt == "kinetics":
        index = index_kinetics(root, ann)
    elif fmt == "ssv2":
        index = index_ssv2(root, ann)
    elif fmt == "folder":
        index = index_folder(root, val_fraction)
    elif fmt in ("csv", "videolist", "rawframes"):
        index = index_lists(root, fmt, ann)
    else:
        raise UsageError(f"unknown --format {fmt!r} (expected one of {', '.join(FORMATS)})")
    _check_disjoint(index)
    if not any(index.splits.values()):
        raise UsageError(f"{root}: none of the listed videos were found ({len(index.missing)} missing)")
    return index


def _check_disjoint(index: Index) -> None:
    owner: dict[str, str] = {}
    for split, samples in index.splits.items():
        for s in samples:
            if owner.setdefault(s.path, split) != split:
                raise UsageError(f"{s.path} is listed in both the {owner[s.path]} and the {split} split")


def _rel_or_abs(path: str, out: Path) -> str:
    p = Path(path)
    base = Path(os.path.normpath(out.absolute()))
    return p.relative_to(base).as_posix() if p.is_relative_to(base) else str(p)


def write_dataset_dir(index: Index, out: str | Path) -> dict:
    """Write ``classes.txt``, one ``<split>.csv`` per split and ``missing.txt`` (when any) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "classes.txt", "".join(c + "\n" for c in index.classes))
    for split in SPLITS:
        samples = index.splits.get(split)
        if not samples:
            (out / f"{split}.csv").unlink(missing_ok=True)
            continue
        with_frames = any(s.num_frames is not None for s in samples)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["path", "label", "num_frames"] if with_frames else ["path", "label"])
        for s in samples:
            row = [_rel_or_abs(s.path, out), s.label]
            writer.writerow(row + [s.num_frames or ""] if with_frames else row)
        atomic_write_text(out / f"{split}.csv", buf.getvalue())
    if index.missing:
        atomic_write_text(out / MISSING_FILE, "".join(m + "\n" for m in index.missing))
    else:
        (out / MISSING_FILE).unlink(missing_ok=True)
    write_dataset_options(out, index.horizontal_flip)
    return {"out": str(out), **index.to_dict()}
