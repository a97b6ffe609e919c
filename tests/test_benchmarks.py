"""The training benchmarks run end to end at tiny sizes (their figures come from full runs, not tests)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_multigrid_benchmark_shapes_and_schedules_at_tiny_sizes(tmp_path, capsys):
    out = load("multigrid").main(["--quick", "--out", str(tmp_path)])
    shapes = [(r["frames"], r["crop"], r["batch"]) for r in out["shapes"]]
    # each long-cycle shape of 8x24 at the base batch, then the coarsest at the paper's 8x batch
    assert shapes == [(2, 17, 8), (4, 17, 8), (4, 24, 8), (8, 24, 8), (2, 17, 64)]
    assert all(r["seconds_per_clip"] > 0 and 0.0 <= r["top1"] <= 1.0 for r in out["shapes"])
    names = [r["schedule"] for r in out["schedules"]]
    assert names == [
        "plain",
        "short (paper)",
        "long+short (paper)",
        "long+short (bounded)",
        "long+short (fixed)",
        "auto",
        "plain (equal time)",
    ]
    for r in out["schedules"]:
        assert r["iterations"] > 0 and 0.0 <= r["final_top1"] <= 1.0 and r["curve"]
    paper, fixed = out["schedules"][2], out["schedules"][4]
    assert {p["frames"] for p in paper["phases"]} <= {2, 4, 8}  # long cycle: T/4, T/2, T
    assert max(b for p in fixed["phases"] for b in p["batches"]) == 8  # the base batch at every shape
    auto = out["schedules"][5]
    assert any(line.startswith("multigrid auto: ") for line in auto["decisions"]) and auto["probe_s"] > 0
    assert (tmp_path / "multigrid.png").stat().st_size > 0 and (tmp_path / "multigrid.json").is_file()
    text = capsys.readouterr().out
    assert "| long+short (bounded) |" in text and "| auto → " in text and "| 2x17 | 64 |" in text


def test_multigrid_benchmark_batch_scaling_at_tiny_sizes(tmp_path):
    out = load("multigrid").main(["--quick", "--batch-scaling", "--out", str(tmp_path)])
    rows = out["batch_scaling"]
    assert [(r["optimizer"], r["batch"]) for r in rows] == [("adamw", 8), ("adamw", 16)]
    assert rows[1]["lr"] == pytest.approx(2**0.5 * 1e-3)  # square-root rule
    assert rows[0]["target"] == rows[1]["target"] == rows[0]["top1_at_clips"]  # batch 8's top-1 sets the target
    assert rows[0]["clips_to_target"] is not None and rows[0]["curve"]


def test_clips_to_reach_interpolates_in_log_clips():
    mg = load("multigrid")
    assert mg.clips_to_reach([(100, 0.2), (400, 0.6)], 0.4) == pytest.approx(200.0)
    assert mg.clips_to_reach([(100, 0.5)], 0.4) == 100.0
    assert mg.clips_to_reach([(100, 0.2), (400, 0.3)], 0.4) is None
    rows = [
        {"batch": 8, "curve": [(1000, 0.5)], "target": 0.5, "b_simple": None},
        {"batch": 32, "curve": [(2000, 0.5)], "target": 0.5, "b_simple": 8.0},
    ]
    mg.predict(rows)  # B_noise 8: E_min = 1000 / 2, batch 32 needs E_min x 5
    assert rows[1]["predicted_clips"] == pytest.approx(2500.0) and rows[1]["clips_to_target"] == 2000.0


def test_x3d_parity_benchmark_runs_both_models_on_the_same_batches(tmp_path):
    pytest.importorskip("pytorchvideo.models.x3d")
    results = load("x3d_parity").main(["--quick", "--json", str(tmp_path / "x3d.json")])
    assert [r["impl"] for r in results] == ["vidact", "pytorchvideo"]
    # the same X3D-XS point: PyTorchVideo lacks only the BatchNorm on res2's first shortcut (2 x 12 + 8 numbers)
    assert results[0]["params"] - results[1]["params"] == 32
    assert results[0]["iterations"] == results[1]["iterations"] == 1
    assert (tmp_path / "x3d.json").is_file()


def test_long_jobs_benchmark_at_tiny_sizes(tmp_path, capsys):
    out = load("long_jobs").main(["--quick", "--out", str(tmp_path)])
    assert [r["variant"] for r in out["agreement"]][1] == "loss + flags, one all-reduce (vidact)"
    assert all(r["us_per_step"] > 0 for r in out["agreement"])
    rows = out["memory"]["x3d-xs"]
    assert [r["setup"] for r in rows][0] == "batch 8" and len(rows) == 4
    assert all(r["peak_mb"] >= 0 and r["seconds"] > 0 for r in rows)
    assert "| loss + flags, one all-reduce (vidact) |" in capsys.readouterr().out
