"""``vidact eval`` over bad checkpoints, bad test videos and unwritable outputs."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from helpers.faultkit import BROKEN_VIDEOS, assert_no_partial_output


@pytest.fixture
def bad_checkpoints(faults, trained_run):
    """name -> (checkpoint path, the cause the one error line must give)."""
    _, run = trained_run
    good = torch.load(run / "last.pt", weights_only=True)
    other = dict(good, arch="c3d")  # tiny3d weights under another architecture's name
    torch.save(other, faults.root / "other_arch.pt")
    torch.save(good["model"], faults.root / "plain_state_dict.pt")
    pickled, _ = faults.pickled_code_checkpoint()
    return {
        "other_arch": (faults.root / "other_arch.pt", "weights do not fit the model (missing key"),
        "pickled_code": (pickled, "refused: the file holds pickled Python objects"),
        "truncated": (faults.truncated_checkpoint(run / "last.pt"), "truncated or corrupt checkpoint"),
        "plain_state_dict": (faults.root / "plain_state_dict.pt", "not a vidact checkpoint"),
        "missing": (faults.root / "nope.pt", "checkpoint not found"),
    }


@pytest.mark.parametrize("name", ["other_arch", "pickled_code", "truncated", "plain_state_dict", "missing"])
def test_bad_checkpoint_is_one_line_usage_error(cli, trained_run, bad_checkpoints, faults, tmp_path, name):
    data, _ = trained_run
    ckpt, cause = bad_checkpoints[name]
    r = cli("eval", ckpt, "--data", data, "--out", tmp_path / "eval")
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {ckpt}: {cause}")
    assert not (faults.root / "PICKLED_CODE_RAN").exists()
    assert not any((tmp_path / "eval").iterdir())  # no confusion.png from a failed run


@pytest.mark.parametrize("kind", sorted(BROKEN_VIDEOS) + ["missing"])
def test_unreadable_test_video_is_left_out_of_the_metrics(cli, faults, trained_run, tmp_path, kind):
    clean, run = trained_run
    data = shutil.copytree(clean, tmp_path / "data")
    bad = data / "videos" / "not_there.mp4" if kind == "missing" else faults.make(kind, data / "videos")
    with open(data / "val.csv", "a") as f:
        f.write(f"videos/{bad.name},1\n")
    r = cli("eval", run / "last.pt", "--data", data, "--clips", "2", "--out", tmp_path / "eval", "--json")
    assert r.exit_code == 1
    cause = "no such file" if kind == "missing" else BROKEN_VIDEOS[kind]
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"warning: unreadable sample {bad}: {cause}")
    assert lines[1].startswith("warning: 1 unreadable videos left out of the metrics")
    report = json.loads(r.stdout)
    assert report["videos"] == 2 and report["unreadable_videos"] == 1
    # the same metrics as on the clean list: the stand-in views of another video were dropped
    clean_report = json.loads(
        cli("eval", run / "last.pt", "--data", clean, "--clips", "2", "--out", tmp_path / "clean", "--json").stdout
    )
    for key in ("clip_top1", "video_top1", "confusion"):
        assert report[key] == clean_report[key]
    assert_no_partial_output(tmp_path)


@pytest.mark.parametrize("option", ["--out", "--save-scores"])
def test_unwritable_output_fails_before_evaluating(cli, faults, trained_run, option):
    data, run = trained_run
    target = faults.unwritable_dir()
    r = cli(
        "eval", run / "last.pt", "--data", data, option, target / "scores.npz" if option == "--save-scores" else target
    )
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {target}: ")  # a folder under a regular file, or a read-only one
    assert_no_partial_output(faults.root)


@pytest.mark.parametrize(
    "make, message",
    [
        ("dataset_escaping_path", "train.csv:6: path '../elsewhere/outside.mp4' escapes the data root"),
        ("dataset_duplicate", "train.csv:6: duplicate entry 'videos/c0.mp4' (first on line 2)"),
        ("dataset_unknown_label", "train.csv:6: unknown label 'zebra'"),
    ],
)
def test_bad_list_is_refused(cli, faults, trained_run, tmp_path, make, message):
    _, run = trained_run
    root = getattr(faults, make)()
    r = cli("eval", run / "last.pt", "--data", root, "--out", tmp_path / "eval")
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {root}/{message}")


def test_empty_split_is_usage_error(cli, faults, trained_run, tmp_path):
    _, run = trained_run
    root = faults.dataset_empty_list()
    r = cli("eval", run / "last.pt", "--data", root, "--out", tmp_path / "eval")
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [f"error: {root}/val.csv: no samples listed"]
    assert os.listdir(tmp_path / "eval") == []
