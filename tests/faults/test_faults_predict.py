"""``vidact predict`` over broken and odd videos and bad checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.faultkit import BROKEN_VIDEOS, ODD_VIDEOS


@pytest.mark.parametrize("kind", sorted(BROKEN_VIDEOS))
def test_broken_video_is_named_in_one_line(cli, faults, trained_run, kind):
    _, run = trained_run
    video = faults.make(kind)
    r = cli("predict", run / "last.pt", video, "--json")
    assert r.exit_code == 1
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {video}: {BROKEN_VIDEOS[kind]}")
    assert r.stdout == ""


@pytest.mark.parametrize("kind", ODD_VIDEOS)
def test_odd_but_valid_video_is_classified(cli, faults, trained_run, kind):
    _, run = trained_run
    video = faults.make(kind)
    r = cli("predict", run / "last.pt", video, "--json", "--topk", "2", "--window", "0.2")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    probs = [t["prob"] for t in result["top"]]
    assert len(probs) == 2 and probs == sorted(probs, reverse=True)
    assert abs(sum(probs) - 1.0) < 1e-5  # two classes: the top-2 is the whole distribution
    assert result["windows"] and all(len(w["top"]) == 2 for w in result["windows"])


def test_missing_video_is_usage_error(cli, trained_run, tmp_path):
    _, run = trained_run
    r = cli("predict", run / "last.pt", tmp_path / "nope.mp4")
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [f"error: {tmp_path}/nope.mp4: video file not found"]


def test_bad_checkpoints_are_refused(cli, faults, trained_run):
    data, run = trained_run
    video = data / "videos" / "v0.mp4"
    good = torch.load(run / "last.pt", weights_only=True)
    torch.save(dict(good, arch="c3d"), faults.root / "other_arch.pt")
    pickled, marker = faults.pickled_code_checkpoint()
    cases = [
        (faults.root / "other_arch.pt", "weights do not fit the model"),
        (pickled, "refused: the file holds pickled Python objects"),
        (faults.truncated_checkpoint(run / "last.pt"), "truncated or corrupt checkpoint"),
    ]
    for ckpt, cause in cases:
        r = cli("predict", ckpt, video)
        assert r.exit_code == 2, ckpt
        [line] = r.stderr.splitlines()
        assert line.startswith(f"error: {ckpt}: {cause}")
    assert not marker.exists()
