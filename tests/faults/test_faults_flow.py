"""``vidact flow extract`` over every bad input, and SIGKILL mid-run then resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers.faultkit import (
    BROKEN_VIDEOS,
    ODD_VIDEOS,
    assert_no_partial_output,
    kill_when,
    run_json,
    run_quiet,
    tree_bytes,
    vidact_cmd,
)

from vidact.io.flowio import count_flow, read_flow, read_manifest

FLOW_ARGS = ("--no-compile", "--batch", "16")  # the default torch backend, eager: no compile time
CHEAP_ARGS = ("--backend", "opencv")  # where the solver does not matter, only the job handling
# Odd videos flow cannot be computed for: the cause each must name.
NO_FLOW = {
    "one_frame": "flow needs at least 2 frames, got 1",
    "tiny_1x1": "frames must be at least 3x3 pixels, got (1, 1)",
    "tiny_2x2": "frames must be at least 3x3 pixels, got (2, 2)",
}


@pytest.fixture(scope="module")
def every_fault(tmp_path_factory):
    """One flow extraction over a folder holding every broken and odd video plus a good one."""
    from helpers.faultkit import Faults

    root = tmp_path_factory.mktemp("flow_faults")
    faults = Faults(root)
    src = root / "src"
    made = {kind: faults.make(kind, src) for kind in [*BROKEN_VIDEOS, *ODD_VIDEOS]}
    made["good"] = faults.good_clip("good.mp4", src)
    out = root / "out"
    return made, out, src


def test_every_bad_input_named_once_and_the_rest_extracted(every_fault, cli):
    made, out, src = every_fault
    r = cli("flow", "extract", src, out, *FLOW_ARGS, "--json")
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    expected_failures = {**BROKEN_VIDEOS, **NO_FLOW}
    assert len(lines) == len(expected_failures)  # one line per failed input, nothing else
    for kind, cause in expected_failures.items():
        [line] = [ln for ln in lines if ln.startswith(f"error: {made[kind]}: ")]
        assert cause in line, line
        assert not (out / made[kind].stem).exists()
    summary = json.loads(r.stdout)
    extracted = ["good", *[k for k in ODD_VIDEOS if k not in NO_FLOW]]
    assert summary["done"] == len(extracted) and summary["failed"] == len(expected_failures)
    for kind in extracted:
        folder = Path(os.fsdecode(os.fsencode(out) + b"/" + os.fsencode(made[kind].stem)))
        manifest = read_manifest(folder)
        assert count_flow(folder) == manifest["num_frames"] - 1
        flow = read_flow(folder, [0])
        assert flow.shape[:2] == (1, 2) and np.isfinite(flow).all()
    wide = read_manifest(out / "wide_4097")
    assert (wide["width"], wide["height"]) == (4097, 8)
    # the good clip's square slides right by 1 pixel a frame: the mean x-flow inside it is positive
    good = read_flow(out / "good")
    inside = [good[k, 0, 12:18, k + 3 : k + 7].mean() for k in range(len(good))]
    assert np.mean(inside) > 0.5 and abs(good[:, 1, 12:18].mean()) < 0.2
    failures = (out / "failures.txt").read_text().splitlines()
    assert len(failures) == len(expected_failures)
    assert_no_partial_output(out)


def test_unwritable_output_is_usage_error(cli, faults, tmp_path):
    faults.good_clip("a.mp4", tmp_path / "src")
    out = faults.unwritable_dir()
    r = cli("flow", "extract", tmp_path / "src", out, *CHEAP_ARGS)
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {out}: ")
    assert_no_partial_output(faults.root)


@pytest.mark.parametrize(
    "make, message",
    [
        ("dataset_escaping_path", "train.csv:6: path '../elsewhere/outside.mp4' escapes the data root"),
        ("dataset_unknown_label", "train.csv:6: unknown label 'zebra'"),
    ],
)
def test_bad_list_is_refused_before_any_work(cli, faults, tmp_path, make, message):
    root = getattr(faults, make)()
    r = cli("flow", "extract", root, tmp_path / "out", "--list", root, *CHEAP_ARGS)
    assert r.exit_code == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {root}/{message}")
    assert not (tmp_path / "out").exists()


def test_list_with_missing_file_extracts_the_rest(cli, faults, tmp_path):
    root = faults.dataset_missing_file()
    (root / "val.csv").write_text("path,label\n")
    out = tmp_path / "out"
    r = cli("flow", "extract", root, out, "--list", root / "train.csv", *CHEAP_ARGS)
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [f"error: {root}/videos/not_there.mp4: no such file"]
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["c0", "c1", "c2", "c3"]


def test_sigkill_then_rerun_is_byte_identical(faults, tmp_path):
    src = tmp_path / "src"
    for i in range(6):
        faults.good_clip(f"clip{i}.mp4", src, frames=8, size=32, seed=i)
    ref, out = tmp_path / "ref", tmp_path / "out"
    reference = run_quiet(vidact_cmd("flow", "extract", src, ref, *FLOW_ARGS))

    def some_done() -> bool:
        return out.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in out.iterdir())

    kill_when(vidact_cmd("flow", "extract", src, out, *FLOW_ARGS), some_done, timeout=120)
    assert reference.wait(120) == 0
    done = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert 1 <= len(done) < 6  # killed mid-run
    for folder in done:  # what is visible is complete, byte for byte
        assert tree_bytes(folder) == tree_bytes(ref / folder.name)
    assert run_json(vidact_cmd("flow", "extract", src, out, *FLOW_ARGS, "--json"))["skipped"] == len(done)
    assert tree_bytes(out) == tree_bytes(ref)
    assert len(tree_bytes(ref)) == 6 * (7 * 2 + 1)  # 7 flow pairs + flow.json per clip
    assert_no_partial_output(out)
