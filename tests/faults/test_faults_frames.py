"""``vidact frames extract`` over every bad input, and SIGKILL mid-run then resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.faultkit import (
    BROKEN_VIDEOS,
    assert_no_partial_output,
    kill_when,
    run_json,
    run_quiet,
    tree_bytes,
    vidact_cmd,
)

from vidact.io.frames import read_frames


def _frame_count(folder: Path) -> int:
    return len([p for p in folder.iterdir() if p.name.startswith("img_")])


@pytest.mark.parametrize("kind", sorted(BROKEN_VIDEOS))
def test_broken_video_fails_alone(cli, faults, tmp_path, kind):
    src = tmp_path / "src"
    faults.good_clip("a.mp4", src)
    faults.good_clip("b.mp4", src, seed=1)
    bad = faults.make(kind, src)
    out = tmp_path / "out"
    r = cli("frames", "extract", src, out)
    assert r.exit_code == 1
    [line] = r.stderr.splitlines()  # exactly one line, naming the file, then the cause
    assert line.startswith(f"error: {bad}: {BROKEN_VIDEOS[kind]}")
    assert _frame_count(out / "a") == 16 and _frame_count(out / "b") == 16  # the good ones are done
    assert not (out / bad.stem).exists()  # no empty or half folder for the bad one
    assert (out / "failures.txt").read_text().startswith(f"{bad.stem}\t{bad}: {BROKEN_VIDEOS[kind]}")
    assert_no_partial_output(out)
    again = cli("frames", "extract", src, out, "--json")  # a re-run retries only the failure
    assert again.exit_code == 1 and json.loads(again.stdout)["skipped"] == 2


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("one_frame", (1, 32, 32)),
        ("variable_frame_rate", (16, 32, 32)),
        ("tiny_1x1", (4, 1, 1)),
        ("tiny_2x2", (4, 2, 2)),
        ("wide_4097", (4, 8, 4097)),
        ("non_utf8_name", (16, 32, 32)),
    ],
)
def test_odd_but_valid_video_is_extracted(cli, faults, tmp_path, kind, expected):
    src = tmp_path / "src"
    video = faults.make(kind, src)
    out = tmp_path / "out"
    r = cli("frames", "extract", src, out)
    assert r.exit_code == 0, r.stderr
    folder = Path(os.fsdecode(os.fsencode(out) + b"/" + os.fsencode(video.stem)))
    n, h, w = expected
    assert _frame_count(folder) == n
    last = read_frames(folder, [n - 1])
    assert last.shape == (1, h, w, 3)
    assert_no_partial_output(out)


def test_list_with_missing_file_extracts_the_rest(cli, faults, tmp_path):
    root = faults.dataset_missing_file()
    out = tmp_path / "out"
    r = cli("frames", "extract", root, out, "--list", root)
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [f"error: {root}/videos/not_there.mp4: no such file"]
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["c0", "c1", "c2", "c3", "v0", "v1"]
    assert (out / "train.csv").read_text().count("\n") == 1 + 4  # header + the 4 good train clips
    assert_no_partial_output(out)


@pytest.mark.parametrize(
    "make, message",
    [
        ("dataset_escaping_path", "train.csv:6: path '../elsewhere/outside.mp4' escapes the data root"),
        ("dataset_duplicate", "train.csv:6: duplicate entry 'videos/c0.mp4' (first on line 2)"),
        ("dataset_unknown_label", "train.csv:6: unknown label 'zebra'"),
    ],
)
def test_bad_list_is_refused_before_any_work(cli, faults, tmp_path, make, message):
    root = getattr(faults, make)()
    out = tmp_path / "out"
    r = cli("frames", "extract", root, out, "--list", root)
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {root}/{message}")
    assert not out.exists()  # refused up front: nothing written


def test_empty_split_list_extracts_the_others(cli, faults, tmp_path):
    root = faults.dataset_empty_list()
    out = tmp_path / "out"
    r = cli("frames", "extract", root, out, "--list", root, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["done"] == 4  # the 4 train clips; val.csv lists none


def test_unwritable_output_is_usage_error(cli, faults, tmp_path):
    faults.good_clip("a.mp4", tmp_path / "src")
    out = faults.unwritable_dir()
    r = cli("frames", "extract", tmp_path / "src", out)
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {out}: ") and ("cannot create the output folder" in line or "not writable" in line)
    assert_no_partial_output(faults.root)


def test_sigkill_then_rerun_is_byte_identical(faults, tmp_path):
    src = tmp_path / "src"
    for i in range(8):
        faults.good_clip(f"clip{i}.mp4", src, frames=40, size=64, seed=i)
    ref, out = tmp_path / "ref", tmp_path / "out"
    reference_run = run_quiet(vidact_cmd("frames", "extract", src, ref))

    def some_done() -> bool:
        return out.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in out.iterdir())

    kill_when(vidact_cmd("frames", "extract", src, out), some_done)
    assert reference_run.wait(120) == 0
    reference = tree_bytes(ref)
    assert len(reference) == 8 * 40
    done = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert 1 <= len(done) < 8  # killed mid-run
    for folder in done:  # what is visible is complete, byte for byte
        assert tree_bytes(folder) == tree_bytes(ref / folder.name)
    assert run_json(vidact_cmd("frames", "extract", src, out, "--json"))["skipped"] == len(done)
    assert tree_bytes(out) == reference
    assert_no_partial_output(out)
