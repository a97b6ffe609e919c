"""Annotation formats: each parsed from small files written here, each with one malformed line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidact.data.annotations import (
    detect_list_format,
    load_data,
    load_dataset_dir,
    parse_csv,
    parse_rawframe_list,
    parse_ucf101_list,
    parse_video_list,
    read_ucf101_classes,
)
from vidact.data.index import index_dataset, write_dataset_dir
from vidact.data.public_sets import parse_hmdb51_split, parse_kinetics_csv, parse_ssv2_json, read_ssv2_labels
from vidact.errors import AnnotationError, UsageError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        write(root / rel, "x")


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(AnnotationError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- generic lists


def test_video_list(tmp_path):
    f = write(tmp_path / "train.txt", "a/x.mp4 1\n\n# comment\nb/my clip.mp4 0\n")
    samples = parse_video_list(f, tmp_path)
    assert [(Path(s.path).relative_to(tmp_path).as_posix(), s.label) for s in samples] == [
        ("a/x.mp4", 1),
        ("b/my clip.mp4", 0),
    ]
    bad = write(tmp_path / "bad.txt", "a/x.mp4 1\nonlypath\n")
    assert error_of(parse_video_list, bad, tmp_path) == f"{bad}:2: expected 'path label', got 'onlypath'"


def test_video_list_class_names_and_unknown_label(tmp_path):
    f = write(tmp_path / "l.txt", "a.mp4 run\nb.mp4 jump\nc.mp4 swim\n")
    with pytest.raises(AnnotationError, match=r"l.txt:3: unknown label 'swim'$"):
        parse_video_list(f, tmp_path, classes=["jump", "run"])
    assert [s.label for s in parse_video_list(f, tmp_path, classes=["jump", "run", "swim"])] == [1, 0, 2]


def test_rawframe_list(tmp_path):
    f = write(tmp_path / "val.txt", "rgb/v1 120 3\nrgb/v2 64 0\n")
    samples = parse_rawframe_list(f, tmp_path)
    assert [(s.num_frames, s.label) for s in samples] == [(120, 3), (64, 0)]
    assert samples[0].path == str(tmp_path / "rgb/v1")
    bad = write(tmp_path / "bad.txt", "rgb/v1 120 3\nrgb/v2 many 0\n")
    assert (
        error_of(parse_rawframe_list, bad, tmp_path) == f"{bad}:2: total_frames must be a positive integer, got 'many'"
    )


def test_csv_with_num_frames_and_bad_row(tmp_path):
    f = write(tmp_path / "train.csv", "path,label,num_frames\nv/a,0,10\nv/b,1,\n")
    samples = parse_csv(f, tmp_path)
    assert [(s.label, s.num_frames) for s in samples] == [(0, 10), (1, None)]
    bad = write(tmp_path / "bad.csv", "path,label\nv/a.mp4,0\nv/b.mp4\n")
    assert error_of(parse_csv, bad, tmp_path) == f"{bad}:3: expected 'path,label', got 'v/b.mp4'"


def test_escaping_path_and_duplicate_refused(tmp_path):
    esc = write(tmp_path / "d" / "l.txt", "ok.mp4 0\n../../etc/passwd 1\n")
    assert error_of(parse_video_list, esc, tmp_path / "d") == (
        f"{esc}:2: path '../../etc/passwd' escapes the data root {tmp_path / 'd'}"
    )
    dup = write(tmp_path / "dup.txt", "a.mp4 0\nb.mp4 1\na.mp4 1\n")
    assert error_of(parse_video_list, dup, tmp_path) == f"{dup}:3: duplicate entry 'a.mp4' (first on line 1)"


def test_detect_list_format(tmp_path):
    assert detect_list_format(write(tmp_path / "a.csv", "path,label\nx,0\n")) == "csv"
    assert detect_list_format(write(tmp_path / "b.txt", "x.mp4 3\n")) == "videolist"
    assert detect_list_format(write(tmp_path / "c.txt", "x 30 3\n")) == "rawframes"
    assert detect_list_format(write(tmp_path / "trainlist01.txt", "A/x.avi 1\n")) == "ucf101"
    bad = write(tmp_path / "d.txt", "\nlonely\n")
    assert (
        error_of(detect_list_format, bad)
        == f"{bad}:2: cannot tell the list format from 'lonely' (expected 'path label')"
    )


def test_load_data_accepts_a_folder_or_one_list(tmp_path):
    write(tmp_path / "classes.txt", "jump\nrun\n")
    write(tmp_path / "train.csv", "path,label\nv/a.mp4,run\n")
    write(tmp_path / "val.csv", "path,label\nv/b.mp4,0\n")
    assert load_dataset_dir(tmp_path).classes == ["jump", "run"]
    assert [s.label for s in load_data(tmp_path).split("train")] == [1]
    one = write(tmp_path / "my_val_list.txt", "v/b.mp4 run\n")
    data = load_data(one)  # classes.txt beside the file is used
    assert data.classes == ["jump", "run"] and list(data.splits) == ["val"]
    assert data.splits["val"][0].label == 1
    lone = write(tmp_path / "sub" / "eval.txt", "x.mp4 2\n")
    assert load_data(lone).classes == ["class_0", "class_1", "class_2"]
    with pytest.raises(UsageError, match="data set folder or list file not found"):
        load_data(tmp_path / "nope")


# ---------------------------------------------------------------- UCF101


def make_ucf101(root: Path) -> Path:
    ann = root / "ucfTrainTestlist"
    write(ann / "classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n")
    write(ann / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c01.avi 2\n")
    write(ann / "testlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\n")
    touch(
        root / "UCF-101",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "Archery/v_Archery_g08_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
    )  # one test video is missing on disk
    return ann


def test_ucf101_lists(tmp_path):
    ann = make_ucf101(tmp_path)
    classes = read_ucf101_classes(ann / "classInd.txt")
    assert classes == ["ApplyEyeMakeup", "Archery"]
    train = parse_ucf101_list(ann / "trainlist01.txt", tmp_path, classes)
    test = parse_ucf101_list(ann / "testlist01.txt", tmp_path, classes)
    assert [s.label for s in train] == [0, 1] and [s.label for s in test] == [0, 1]
    bad = write(tmp_path / "trainlist02.txt", "Archery/v_Archery_g08_c01.avi 2\nArchery/v_Archery_g09_c01.avi 1\n")
    assert error_of(parse_ucf101_list, bad, tmp_path, classes) == (
        f"{bad}:2: label 1 (ApplyEyeMakeup) does not match the folder 'Archery'"
    )
    bad_test = write(tmp_path / "testlist02.txt", "Archery/v.avi\nBowling/v_Bowling_g01_c01.avi\n")
    assert error_of(parse_ucf101_list, bad_test, tmp_path, classes) == (
        f"{bad_test}:2: unknown label 'Bowling' (from the folder name)"
    )
    bad_ind = write(tmp_path / "classInd.txt", "1 A\n3 B\n")
    assert error_of(read_ucf101_classes, bad_ind) == f"{bad_ind}:2: expected class index 2, got 3"


def test_index_ucf101_writes_a_loadable_folder(tmp_path, cli):
    make_ucf101(tmp_path / "ucf")
    out = tmp_path / "lists"
    r = cli("data", "index", tmp_path / "ucf", "--format", "ucf101", "--split", "1", "-o", out, "--json")
    assert r.exit_code == 1, r.stderr  # one listed video is missing
    assert json.loads(r.stdout) == {"out": str(out), "classes": 2, "train": 2, "val": 1, "missing": 1}
    assert "v_Archery_g01_c01.avi: video not found (val)" in (out / "missing.txt").read_text()
    data = load_dataset_dir(out)
    assert data.classes == ["ApplyEyeMakeup", "Archery"]
    assert [Path(s.path).name for s in data.split("val")] == ["v_ApplyEyeMakeup_g01_c01.avi"]
    assert (out / "train.csv").read_text().splitlines()[1].startswith(str(tmp_path / "ucf" / "UCF-101"))


def test_index_paths_relative_inside_the_output_folder(tmp_path):
    make_ucf101(tmp_path)
    result = write_dataset_dir(index_dataset(tmp_path, "ucf101"), tmp_path)
    assert result["train"] == 2
    assert (tmp_path / "train.csv").read_text().splitlines()[
        1
    ] == "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi,0"
    assert load_dataset_dir(tmp_path).split("train")[1].path == str(tmp_path / "UCF-101/Archery/v_Archery_g08_c01.avi")


# ---------------------------------------------------------------- HMDB51


def test_hmdb51_split_files(tmp_path):
    splits = tmp_path / "splits"
    write(splits / "brush_hair_test_split1.txt", "a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    write(splits / "cartwheel_test_split1.txt", "d.avi 1\ne.avi 2\n")
    touch(tmp_path, "brush_hair/a.avi", "brush_hair/b.avi", "brush_hair/c.avi", "cartwheel/d.avi", "cartwheel/e.avi")
    parts = parse_hmdb51_split(splits / "brush_hair_test_split1.txt", tmp_path, 0)
    assert [Path(s.path).name for s in parts["train"]] == ["a.avi"]
    assert [Path(s.path).name for s in parts["test"]] == ["b.avi"]
    index = index_dataset(tmp_path, "hmdb51", split=1)
    assert index.classes == ["brush_hair", "cartwheel"]
    assert [(Path(s.path).name, s.label) for s in index.splits["val"]] == [("b.avi", 0), ("e.avi", 1)]
    bad = write(tmp_path / "bad" / "cartwheel_test_split2.txt", "d.avi 1\ne.avi 3\n")
    assert error_of(parse_hmdb51_split, bad, tmp_path, 1) == f"{bad}:2: split id must be 0, 1 or 2, got '3'"


# ---------------------------------------------------------------- Kinetics


KINETICS_CSV = (
    "label,youtube_id,time_start,time_end,split\n"
    "abseiling,aaa,14,24,train\n"
    '"passing American football (in game)",bbb,0,10,train\n'
    "abseiling,ccc,5,15,val\n"
    "abseiling,ddd,1,11,train\n"
)


def test_kinetics_csv_and_clip_lookup(tmp_path):
    csv_path = write(tmp_path / "annotations" / "train.csv", KINETICS_CSV)
    clips = parse_kinetics_csv(csv_path)
    assert [c.name for c in clips][:2] == ["aaa_000014_000024.mp4", "bbb_000000_000010.mp4"]
    touch(
        tmp_path,
        "train/abseiling/aaa_000014_000024.mp4",
        "train/passing American football (in game)/bbb_000000_000010.mp4",
        "ccc_000005_000015.mp4",
    )  # flat layout works too; ddd is missing
    index = index_dataset(tmp_path, "kinetics")
    assert index.classes == ["abseiling", "passing American football (in game)"]
    assert [(Path(s.path).name, s.label) for s in index.splits["train"]] == [
        ("aaa_000014_000024.mp4", 0),
        ("bbb_000000_000010.mp4", 1),
    ]
    assert [Path(s.path).name for s in index.splits["val"]] == ["ccc_000005_000015.mp4"]
    assert index.missing == [f"{csv_path}:5: clip ddd_000001_000011.mp4 not found under {tmp_path}"]
    out = tmp_path / "lists"
    write_dataset_dir(index, out)
    assert load_dataset_dir(out).split("train")[1].label == 1  # label with spaces/parentheses survives CSV


def test_kinetics_malformed_line(tmp_path):
    bad = write(
        tmp_path / "k.csv",
        "label,youtube_id,time_start,time_end,split\nabseiling,aaa,14,24,train\nabseiling,bbb,ten,20,train\n",
    )
    assert error_of(parse_kinetics_csv, bad) == f"{bad}:3: time_start must be a number, got 'ten'"


# ---------------------------------------------------------------- Something-Something v2


def test_ssv2_json(tmp_path):
    labels = write(
        tmp_path / "labels" / "something-something-v2-labels.json",
        json.dumps({"Putting something on a surface": "1", "Approaching something with your camera": "0"}),
    )
    entries = [
        {
            "id": "78687",
            "label": "putting a pen on a table",
            "template": "Putting [something] on a surface",
            "placeholders": ["a pen"],
        },
        {
            "id": "42326",
            "label": "approaching a cup",
            "template": "Approaching [something] with your camera",
            "placeholders": ["a cup"],
        },
    ]
    write(tmp_path / "labels" / "something-something-v2-train.json", json.dumps(entries, indent=1))
    val = [{"id": "1", "template": "Approaching [something] with your camera"}]
    write(tmp_path / "labels" / "something-something-v2-validation.json", json.dumps(val))
    touch(tmp_path / "20bn-something-something-v2", "78687.webm", "42326.webm", "1.webm")
    classes = read_ssv2_labels(labels)
    assert classes == ["Approaching something with your camera", "Putting something on a surface"]
    index = index_dataset(tmp_path, "ssv2")
    assert [(Path(s.path).name, s.label) for s in index.splits["train"]] == [("78687.webm", 1), ("42326.webm", 0)]
    assert [(Path(s.path).name, s.label) for s in index.splits["val"]] == [("1.webm", 0)]
    bad_entries = json.dumps(entries[:1] + [{"id": "9", "template": "Dropping [something]"}], indent=1)
    bad = write(tmp_path / "bad.json", bad_entries)
    line = [n for n, text in enumerate(bad_entries.splitlines(), 1) if text == " {"][1]  # the second entry
    assert error_of(parse_ssv2_json, bad, tmp_path, classes) == f"{bad}:{line}: unknown label 'Dropping something'"


# ---------------------------------------------------------------- folder tree and generic lists via index


def test_folder_tree(tmp_path):
    touch(
        tmp_path / "data", *[f"run/r{i}.mp4" for i in range(5)], *[f"jump/j{i}.avi" for i in range(5)], "jump/notes.txt"
    )
    index = index_dataset(tmp_path / "data", "folder", val_fraction=0.2)
    assert index.classes == ["jump", "run"]
    assert [Path(s.path).name for s in index.splits["val"]] == ["j4.avi", "r4.mp4"]
    assert len(index.splits["train"]) == 8


def test_index_generic_lists_and_cli_errors(tmp_path, cli):
    touch(tmp_path, "v/a.mp4", "v/b.mp4")
    write(tmp_path / "lists" / "train_list.txt", "v/a.mp4 run\n")
    write(tmp_path / "lists" / "val_list.txt", "v/b.mp4 jump\n")
    r = cli("data", "index", tmp_path, "--format", "videolist", "--ann", tmp_path / "lists", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.stderr
    data = load_dataset_dir(tmp_path / "out")
    assert data.classes == ["jump", "run"] and data.split("train")[0].label == 1
    bad = write(tmp_path / "lists2" / "train.txt", "v/a.mp4 0\nv/b.mp4 zero\n")
    write(tmp_path / "lists2" / "classes.txt", "jump\nrun\n")
    r = cli("data", "index", tmp_path, "--format", "videolist", "--ann", bad, "-o", tmp_path / "out2")
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {bad}:2: unknown label 'zero'"
    r = cli("data", "index", tmp_path, "--format", "nope", "-o", tmp_path / "out3")
    assert r.exit_code == 2 and "unknown --format 'nope'" in r.stderr
