"""``vidact train`` over bad data, bad checkpoints and unwritable runs; SIGKILL then ``--resume``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import TRAIN_ARGS, report_lines
from helpers.faultkit import BROKEN_VIDEOS, ODD_VIDEOS, assert_no_partial_output, kill_when, run_json, run_quiet

TESTS = str(Path(__file__).resolve().parents[1])


def _add_rows(root: Path, split: str, rows) -> None:
    with open(root / f"{split}.csv", "ab") as f:
        f.write(b"".join(os.fsencode(p) + f",{y}\n".encode() for p, y in rows))


@pytest.mark.parametrize("kind", sorted(BROKEN_VIDEOS))
def test_broken_training_video_is_named_and_the_rest_trains(cli, faults, tiny_arch, tmp_path, kind):
    root = faults.dataset()
    bad = faults.make(kind, root / "videos")
    _add_rows(root, "train", [(f"videos/{bad.name}", 0)])
    run = tmp_path / "run"
    r = cli("train", "--data", root, "--out", run, *TRAIN_ARGS, "--json")
    assert r.exit_code == 1  # partial failure: one input failed, the rest trained
    lines = report_lines(r.stderr)
    assert lines[0].startswith(f"warning: unreadable sample {bad}: {BROKEN_VIDEOS[kind]}")
    assert lines[0].endswith("(replaced by another sample)")
    assert lines[1].startswith("warning: ") and f"vidact data check {root}" in lines[1]
    summary = json.loads(r.stdout)
    assert summary["unreadable_samples"] >= 1 and summary["train_clips"] == 5
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    assert_no_partial_output(run)


def test_missing_training_video_is_named(cli, faults, tiny_arch, tmp_path):
    root = faults.dataset_missing_file()
    r = cli("train", "--data", root, "--out", tmp_path / "run", *TRAIN_ARGS)
    assert r.exit_code == 1
    assert report_lines(r.stderr)[0] == (
        f"warning: unreadable sample {root}/videos/not_there.mp4: no such file or folder (replaced by another sample)"
    )
    assert (tmp_path / "run" / "last.pt").is_file()


def test_odd_but_valid_videos_train_cleanly(cli, faults, tiny_arch, tmp_path):
    root = faults.dataset()
    videos = [faults.make(kind, root / "videos") for kind in ODD_VIDEOS]
    _add_rows(root, "train", [(f"videos/{v.name}", i % 2) for i, v in enumerate(videos)])
    r = cli("train", "--data", root, "--out", tmp_path / "run", *TRAIN_ARGS, "--json")
    assert r.exit_code == 0, r.stderr
    assert report_lines(r.stderr) == []  # nothing was unreadable
    assert json.loads(r.stdout)["train_clips"] == 4 + len(ODD_VIDEOS)


@pytest.mark.parametrize(
    "make, message",
    [
        ("dataset_escaping_path", "train.csv:6: path '../elsewhere/outside.mp4' escapes the data root"),
        ("dataset_duplicate", "train.csv:6: duplicate entry 'videos/c0.mp4' (first on line 2)"),
        ("dataset_unknown_label", "train.csv:6: unknown label 'zebra'"),
    ],
)
def test_bad_list_stops_before_training(cli, faults, tiny_arch, tmp_path, make, message):
    root = getattr(faults, make)()
    r = cli("train", "--data", root, "--out", tmp_path / "run", *TRAIN_ARGS)
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {root}/{message}")
    assert not (tmp_path / "run").exists()


def test_empty_train_list_is_usage_error(cli, faults, tiny_arch, tmp_path):
    root = faults.dataset("empty_train", train=[])
    r = cli("train", "--data", root, "--out", tmp_path / "run", *TRAIN_ARGS)
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [f"error: {root}/train.csv: no samples listed"]
    assert not (tmp_path / "run").exists()


def test_empty_val_list_trains_without_validation(cli, faults, tiny_arch, tmp_path):
    root = faults.dataset_empty_list()
    r = cli("train", "--data", root, "--out", tmp_path / "run", *TRAIN_ARGS, "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["best_val_top1"] is None and summary["best"] is None
    assert (tmp_path / "run" / "last.pt").is_file()


def test_unwritable_run_folder_is_usage_error(cli, faults, tiny_arch):
    root = faults.dataset()
    run = faults.unwritable_dir()
    r = cli("train", "--data", root, "--out", run, *TRAIN_ARGS)
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {run}: ") and ("cannot create the run folder" in line or "ermission" in line)
    assert_no_partial_output(faults.root)


def _resume_into(cli, run: Path, data: Path, *extra):
    return cli("train", "--data", data, "--out", run, "--resume", *extra)


def test_resume_from_another_architecture_is_refused(cli, trained_run, tmp_path):
    data, run = trained_run
    before = (run / "last.pt").read_bytes()
    r = _resume_into(cli, run, data, "--arch", "c3d")
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [f"error: {run}/last.pt: checkpoint is for arch 'tiny3d', not 'c3d'"]
    assert (run / "last.pt").read_bytes() == before  # nothing overwritten


def test_resume_from_truncated_checkpoint_is_refused(cli, faults, trained_run, tmp_path):
    data, run = trained_run
    broken = tmp_path / "run"
    broken.mkdir()
    (broken / "last.pt").write_bytes(faults.truncated_checkpoint(run / "last.pt").read_bytes())
    r = _resume_into(cli, broken, data)
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {broken}/last.pt: truncated or corrupt checkpoint")
    assert sorted(os.listdir(broken)) == ["last.pt"]


def test_resume_from_pickled_code_is_refused_without_running_it(cli, faults, trained_run, tmp_path):
    data, _ = trained_run
    ckpt, marker = faults.pickled_code_checkpoint()
    run = tmp_path / "run"
    run.mkdir()
    os.replace(ckpt, run / "last.pt")
    r = _resume_into(cli, run, data)
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {run}/last.pt: refused: the file holds pickled Python objects")
    assert not marker.exists()  # the embedded code never ran
    torch.load(run / "last.pt", weights_only=False)  # ...though it would have, with an unsafe load
    assert marker.read_text() == "ran"


def _train_cmd(*args) -> list[str]:
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); from helpers.tiny_model import register_tiny; "
        "register_tiny(); from vidact.cli.main import main; main(sys.argv[1:])"
    )
    return [sys.executable, "-c", code, TESTS, "train", *map(str, args)]


def test_sigkill_then_resume_is_weight_identical(faults, tmp_path):
    data = faults.dataset()
    args = [*TRAIN_ARGS, "--epochs", "2", "--data", data]
    ref, run = tmp_path / "ref", tmp_path / "run"
    reference = run_quiet(_train_cmd(*args, "--out", ref))
    kill_when(_train_cmd(*args, "--out", run), lambda: (run / "last.pt").exists(), timeout=120)
    assert reference.wait(120) == 0
    first = torch.load(run / "last.pt", weights_only=True)
    assert first["epoch"] == 1  # killed after the first epoch's checkpoint, before the end
    assert run_json(_train_cmd(*args, "--out", run, "--resume", "--json"))["resumed_from_epoch"] == first["epoch"]
    a, b = torch.load(ref / "last.pt", weights_only=True), torch.load(run / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["iteration"] == b["iteration"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert_no_partial_output(run)
