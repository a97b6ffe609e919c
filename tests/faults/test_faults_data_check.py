"""``vidact data check`` over every bad input: each problem named with its file (and line)."""

from __future__ import annotations

import json
import os

import pytest
from helpers.faultkit import BROKEN_VIDEOS, assert_no_partial_output

from vidact.data.check import check_dataset


def _kinds(report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in report.problems:
        out.setdefault(p.kind, []).append(str(p))
    return out


def test_clean_synthetic_set_exits_0(cli, synth_dir):
    r = cli("data", "check", synth_dir, "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["summary"]["listed"] == doc["summary"]["readable"] == 16
    assert doc["summary"]["frames"] == {"min": 16, "median": 16, "max": 16}
    assert doc["summary"]["sizes"] == {"32x32": 16}
    assert doc["coverage"]["train"] == {"move_left": 3, "move_right": 3, "move_up": 3, "move_down": 3}
    assert doc["coverage"]["val"] == {"move_left": 1, "move_right": 1, "move_up": 1, "move_down": 1}


def test_missing_file_names_list_line(cli, faults):
    root = faults.dataset_missing_file()
    r = cli("data", "check", root)
    assert r.exit_code == 1
    assert f"error: {root}/train.csv:6: videos/not_there.mp4: no such file" in r.stdout.splitlines()
    assert "6 of 7 listed videos readable" in r.stdout  # the good clips are still checked


def test_escaping_path_is_refused_not_opened(faults):
    root = faults.dataset_escaping_path()
    report = check_dataset(root)
    assert _kinds(report) == {
        "escapes-root": [f"{root}/train.csv:6: path '../elsewhere/outside.mp4' escapes the data root {root}"]
    }
    assert all("outside" not in v.path for v in report.videos)


def test_duplicates_within_and_across_splits(faults):
    root = faults.dataset_duplicate()
    with open(root / "val.csv", "a") as f:
        f.write("videos/c1.mp4,1\n")  # a train clip in val: the splits leak
    report = check_dataset(root)
    assert _kinds(report) == {
        "duplicate": [
            f"{root}/train.csv:6: videos/c0.mp4 is listed again (first at {root}/train.csv:2)",
            f"{root}/val.csv:4: videos/c1.mp4 is also in train ({root}/train.csv:3): the splits overlap",
        ]
    }
    assert all(p.severity == "warning" for p in report.problems)
    assert len(report.videos) == 6  # each file is opened once


def test_unknown_label_and_out_of_range(faults):
    root = faults.dataset(train=[("videos/c0.mp4", "zebra"), ("videos/c1.mp4", 7), ("videos/c2.mp4", "b")], val=[])
    (root / "val.csv").unlink()
    report = check_dataset(root)
    assert _kinds(report)["bad-label"] == [
        f"{root}/train.csv:2: unknown label 'zebra'",
        f"{root}/train.csv:3: label 7 out of range (0..1)",
    ]
    assert [(v.label, os.path.basename(v.path)) for v in report.videos] == [(1, "c2.mp4")]
    assert _kinds(report)["no-samples"] == [f"{root}/train.csv: class 'a' has no readable samples"]


def test_empty_list(cli, faults):
    root = faults.dataset_empty_list()
    r = cli("data", "check", root, "--json")
    assert r.exit_code == 1
    problems = json.loads(r.stdout)["problems"]
    assert {
        "kind": "empty-list",
        "where": f"{root}/val.csv",
        "message": "no samples listed",
        "severity": "error",
    } in problems


@pytest.mark.parametrize("kind", sorted(BROKEN_VIDEOS))
def test_broken_video_is_named_and_others_still_checked(faults, kind):
    root = faults.dataset(f"with_{kind}", val=[])
    bad = faults.make(kind, root / "videos")
    rows = [(f"videos/c{i}.mp4", i % 2) for i in range(4)] + [(f"videos/{bad.name}", 0)]
    (root / "train.csv").write_text("path,label\n" + "".join(f"{p},{y}\n" for p, y in rows))
    report = check_dataset(root, split="train")
    assert len(report.videos) == 4
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert (problem.kind, problem.where) == ("undecodable", f"{root}/train.csv:6")
    assert problem.message.startswith(f"{bad}: {BROKEN_VIDEOS[kind]}")


def test_odd_but_valid_videos_are_readable(faults):
    root = faults.dataset("odd", val=[])
    videos = root / "videos"
    odd = [
        faults.one_frame(folder=videos),
        faults.variable_frame_rate(folder=videos),
        faults.tiny_1x1(folder=videos),
        faults.tiny_2x2(folder=videos),
        faults.wide_4097(folder=videos),
        faults.non_utf8_name(folder=videos),
    ]
    rows = [(f"videos/{p.name}", i % 2) for i, p in enumerate(odd)]
    (root / "train.csv").write_bytes(b"path,label\n" + b"".join(os.fsencode(p) + f",{y}\n".encode() for p, y in rows))
    report = check_dataset(root, split="train", workers=2)
    assert len(report.videos) == 6
    sizes = {os.path.basename(v.path): (v.width, v.height, v.num_frames) for v in report.videos}
    assert sizes["tiny_1x1.mkv"] == (1, 1, 4)
    assert sizes["wide_4097.mkv"] == (4097, 8, 4)
    assert sizes["variable_frame_rate.mp4"][2] == 16
    assert sizes[os.fsdecode(b"clip_\xff.mp4")] == (32, 32, 16)
    assert [str(p) for p in report.problems] == [f"{root}/train.csv:2: videos/one_frame.mp4: only 1 frame"]
    assert report.problems[0].severity == "warning"
    paths = [v["path"] for v in report.to_dict()["videos"]]
    assert f"{root}/videos/clip_\\xff.mp4" in paths  # printable: the raw byte shown as an escape
    json.dumps(report.to_dict()).encode("utf-8")  # no lone surrogates left


def test_report_files_json_and_markdown(cli, faults, tmp_path):
    root = faults.dataset_missing_file()
    r = cli("data", "check", root, "-o", tmp_path / "r.json")
    assert r.exit_code == 1
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["summary"]["errors"] == 1 and doc["problems"][0]["kind"] == "missing"
    r = cli("data", "check", root, "-o", tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert "**problems found**: 6 of 7 listed videos readable, 1 errors, 0 warnings." in md
    assert "| a | 2 | 1 |" in md and "| b | 2 | 1 |" in md
    assert sorted(os.listdir(tmp_path)) == ["faults", "r.json", "r.md"]


def test_report_into_unwritable_folder_is_usage_error(cli, faults):
    root = faults.dataset("ok")
    dest = faults.unwritable_dir() / "report.json"
    r = cli("data", "check", root, "-o", dest)
    assert r.exit_code == 2
    assert r.stderr.strip().startswith(f"error: {dest}: cannot write the report:")
    assert len(r.stderr.strip().splitlines()) == 1
    assert_no_partial_output(faults.root)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--split", "bogus"], "--split must be all, train, val, test; got 'bogus'"),
        (["--split", "test"], "no test split (expected test.csv)"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["-o", "report.txt"], "report.txt: report must end in .json or .md"),
    ],
)
def test_bad_options_exit_2(cli, faults, args, message):
    root = faults.dataset("ok")
    r = cli("data", "check", root, *args)
    assert r.exit_code == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_missing_folder_exit_2(cli, tmp_path):
    r = cli("data", "check", tmp_path / "nowhere")
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {tmp_path}/nowhere: data folder not found"


def test_one_split_and_workers_agree(faults):
    root = faults.dataset_missing_file()
    one = check_dataset(root, split="train", workers=1)
    two = check_dataset(root, split="train", workers=2)
    assert one.to_dict() == two.to_dict()
    assert one.splits == ["train"] and one.listed == {"train": 5}
