"""vidact demo --quick: every stage runs, the report has every row and figure, a re-run skips all stages."""

from __future__ import annotations

import json
import re

import pytest
import torch

from vidact.demo.pipeline import QUICK, StageLog, run_demo
from vidact.demo.report import FUSED, compare_time_to_accuracy, markdown_table, time_to_accuracy

STAGES = [
    "synth",
    "frames",
    "flow",
    "synth-large",
    "frames-large",
    *(f"train-{r.name}" for r in QUICK.runs),
    "fuse",
    "profile",
]


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    n = torch.get_num_threads()
    out = tmp_path_factory.mktemp("demo") / "out"
    try:
        summary = run_demo(out, quick=True)
    finally:
        torch.set_num_threads(n)
    return out, summary


def test_quick_demo_writes_every_stage_and_the_report(quick_demo):
    out, summary = quick_demo
    assert sorted(p.stem for p in (out / "stages").glob("*.json")) == sorted(STAGES)
    names = [r["name"] for r in summary["rows"]]
    assert names == [r.name for r in QUICK.runs] + [FUSED]
    for row in summary["rows"]:
        assert 0.0 <= row["val_top1"] <= 1.0 and row["params"] > 0 and row["gflops"] > 0 and row["clips_per_s"] > 0
    md = (out / "report.md").read_text()
    assert md.count("\n| ") == len(names) + 1  # header + one line per row
    assert "| x3d-xs | rgb | 1x3x8x32x32 |" in md
    assert "| c3d-bn (large set, plain) | rgb | 1x3x8x32x32 |" in md
    assert "| c3d-bn (large set, auto multigrid: " in md  # what auto chose, e.g. long+short, fixed batches
    assert "- Multigrid (c3d-bn, 8x32, stride 2, large set): auto multigrid: " in md and "Its probe (" in md
    assert f"large set: {QUICK.classes} classes x {QUICK.large_per_class} clips" in md
    assert summary["multigrid"]["plain_seconds"] > 0
    assert f"chance = {100 / QUICK.classes:.1f}%" in md
    page = (out / "report.html").read_text()
    # curves, time-to-accuracy, confusion, RGB + flow strip, and the noise scale where it was measured (a quick
    # run is too short for a window of the plain run's steps, and its probe's estimate may come out <= 0)
    plain = json.loads((out / "stages" / "train-c3d-bn-large.json").read_text())
    auto = json.loads((out / "stages" / "train-c3d-bn-large-multigrid.json").read_text())
    measured = any(n["b_simple"] for n in plain["noise"]) or bool(auto["probe"]["noise"]["b_simple"])
    assert page.count('src="data:image/png;base64,') == 4 + measured
    assert ("figures/noise_scale.png" in md) == measured
    assert page.count("<tr>") == len(names) + 1
    flows = list((out / "flow").rglob("flow.json"))
    assert len(flows) == QUICK.classes * QUICK.per_class
    params = json.loads(flows[0].read_text())["params"]
    assert (params["nscales"], params["inner_iterations"]) == (QUICK.flow_nscales, QUICK.flow_inner)
    assert sorted(summary["stage_seconds"]) == sorted(STAGES)


def test_rerun_skips_every_finished_stage(quick_demo, cli):
    out, summary = quick_demo
    markers = {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")}
    r = cli("demo", out, "--quick", "--json")
    assert r.exit_code == 0, r.stderr
    assert len(re.findall(r"done before, skipped", r.stderr)) == len(STAGES)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")} == markers
    again = json.loads(r.stdout)
    assert [row["val_top1"] for row in again["rows"]] == [row["val_top1"] for row in summary["rows"]]


def test_rerun_redoes_only_a_missing_stage(quick_demo):
    out, summary = quick_demo
    log = StageLog(out)
    log.path("fuse").unlink()
    torch_threads = torch.get_num_threads()
    again = run_demo(out, quick=True)
    torch.set_num_threads(torch_threads)
    assert log.done("fuse") is not None
    assert again["rows"][-1]["val_top1"] == summary["rows"][-1]["val_top1"]


def test_other_settings_in_the_same_folder_are_refused(quick_demo, cli):
    out, _ = quick_demo
    r = cli("demo", out)
    assert r.exit_code == 2
    assert (
        r.stderr.strip() == f"error: {out} holds a demo run with other settings (e.g. --quick); choose another folder"
    )


def test_time_to_accuracy_accumulates_epoch_seconds():
    history = [
        {"seconds": 2.0, "val_top1": 0.25},
        {"seconds": 3.0, "val_top1": None},
        {"seconds": 1.5, "val_top1": 0.5},
    ]
    assert time_to_accuracy(history) == ([2.0, 6.5], [25.0, 50.0])
    # a multigrid point also pays its own precise-BN pass (not the earlier epochs' ones)
    history = [
        {"seconds": 2.0, "precise_bn_seconds": 0.5, "val_top1": 0.25},
        {"seconds": 3.0, "precise_bn_seconds": 0.25, "val_top1": 0.5},
    ]
    assert time_to_accuracy(history) == ([2.5, 5.25], [25.0, 50.0])


def test_time_to_the_plain_accuracy():
    plain = {"history": [{"seconds": 10.0, "val_top1": 0.5}, {"seconds": 10.0, "val_top1": 0.9}]}
    multigrid = {
        "history": [
            {"seconds": 3.0, "val_top1": 0.6},
            {"seconds": 3.0, "val_top1": 0.895},
            {"seconds": 3.0, "val_top1": 0.92},
        ]
    }
    cmp = compare_time_to_accuracy(plain, multigrid)  # within 1 point of plain's final 90%
    assert (cmp["plain_seconds"], cmp["plain_top1"], cmp["target_top1"]) == (20.0, 90.0, 89.0)
    assert (cmp["multigrid_reach_seconds"], cmp["reach_fraction"]) == (6.0, 0.3)
    slow = {"history": [{"seconds": 30.0, "val_top1": 0.8}]}
    assert compare_time_to_accuracy(plain, slow)["multigrid_reach_seconds"] is None


def test_markdown_table_known_row():
    row = {
        "arch": "c3d",
        "modality": "rgb",
        "input": "1x3x8x48x48",
        "params": 4_885_960,
        "gflops": 0.2345,
        "train_seconds": 61.4,
        "val_top1": 0.6875,
        "clips_per_s": 85.2,
    }
    assert markdown_table([row]).splitlines()[2] == "| c3d | rgb | 1x3x8x48x48 | 4.89 | 0.234 | 61 | 68.8 | 85 |"


def test_demo_help_has_an_example(cli):
    r = cli("demo", "--help")
    assert r.exit_code == 0 and "Example: vidact demo demo_out" in r.stdout
