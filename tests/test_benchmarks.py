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


def test_multigrid_benchmark_gate_and_schedules_at_tiny_sizes(tmp_path, capsys):
    out = load("multigrid").main(["--quick", "--out", str(tmp_path)])
    assert [r["shape"] for r in out["gate"]] == ["coarsest long-cycle shape", "full shape"]
    coarse, full = out["gate"]
    assert (coarse["frames"], coarse["crop"], coarse["batch"]) == (2, 17, 64)  # T/4, S/sqrt2, 8x for 8x24
    assert (full["frames"], full["crop"], full["batch"]) == (8, 24, 8)
    names = [r["schedule"] for r in out["schedules"]]
    assert names == ["none", "long", "short", "long+short", "plain (equal time)"]
    for r in out["schedules"]:
        assert r["iterations"] > 0 and 0.0 <= r["final_top1"] <= 1.0 and r["curve"]
    assert {p["frames"] for p in out["schedules"][1]["phases"]} <= {2, 4, 8}  # long cycle: T/4, T/2, T
    assert (tmp_path / "multigrid.png").stat().st_size > 0 and (tmp_path / "multigrid.json").is_file()
    assert "| long+short |" in capsys.readouterr().out


def test_multigrid_benchmark_batch_scaling_at_tiny_sizes(tmp_path):
    out = load("multigrid").main(["--quick", "--batch-scaling", "--out", str(tmp_path)])
    rows = [(r["optimizer"], r["batch"], r["clips"]) for r in out["batch_scaling"]]
    assert rows == [("sgd", 8, 32), ("sgd", 16, 32), ("adamw", 8, 32), ("adamw", 16, 32)]
    sgd16, adamw16 = out["batch_scaling"][1], out["batch_scaling"][3]
    assert sgd16["lr"] == pytest.approx(2 * 0.02)  # linear rule
    assert adamw16["lr"] == pytest.approx(2**0.5 * 1e-3)  # square-root rule


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
