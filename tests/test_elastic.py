"""torchrun's elastic restarts: a rank that dies brings the group back from the last checkpoint, no human involved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers.ddp_ranks import free_port, join_as_rank
from helpers.tiny_model import register_tiny

from vidact.runtime import distributed
from vidact.runtime.checkpoint import load_checkpoint
from vidact.train.state import should_resume

TESTS = Path(__file__).resolve().parent
ARGS = ("--arch", "tiny3d", "--epochs", "3", "--batch-size", "2", "--deterministic", "--checkpoint-every", "4")


def test_only_a_restarted_group_resumes_on_its_own(tmp_path, monkeypatch):
    (tmp_path / "last.pt").write_bytes(b"")
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    assert distributed.launch_env().restart_count == 0
    assert not should_resume(False, tmp_path) and should_resume(True, tmp_path)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert distributed.launch_env().restart_count == 1
    assert should_resume(False, tmp_path)
    assert not should_resume(False, tmp_path / "empty")  # died before any checkpoint: a fresh start


def _reference_rank(rank: int, world: int, port: int, data: str, out: str) -> None:
    """One rank of the uninterrupted run: what ``vidact train ARGS`` does under torchrun."""
    from vidact.train.config import load_config
    from vidact.train.engine import train

    join_as_rank(rank, world, port)
    try:
        register_tiny()
        cfg = load_config(
            arch="tiny3d",
            data=data,
            out=out,
            epochs=3,
            batch_size=2,
            deterministic=True,
            checkpoint_every="4",
            recipe="auto",
        )
        train(cfg)
    finally:
        distributed.cleanup()


@pytest.mark.slow  # a torchrun launch that restarts, and a forked reference: 30-60 s on the shared 2-core machine
def test_torchrun_max_restarts_brings_a_dead_rank_back_from_the_checkpoint(synth_dir, tmp_path):
    run = tmp_path / "elastic"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "1",
        "--rdzv-endpoint",
        f"127.0.0.1:{free_port()}",
        str(TESTS / "helpers" / "elastic_rank.py"),
        "1",
        "8",  # rank 1 dies (SIGKILL) during its 8th step: epoch 3's second; last.pt is from step 6
        "train",
        *ARGS,
        "--data",
        str(synth_dir),
        "--out",
        str(run),
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["restart"] == 1 and summary["iterations"] == 9 and summary["resumed_from_epoch"] == 2
    assert f"resumed from {run / 'last.pt'} at the start of epoch 3 (step 6)" in r.stderr

    reference = tmp_path / "reference"
    mp.start_processes(
        _reference_rank, args=(2, free_port(), str(synth_dir), str(reference)), nprocs=2, join=True, start_method="fork"
    )
    a, b = load_checkpoint(reference / "last.pt"), load_checkpoint(run / "last.pt")
    assert a["iteration"] == b["iteration"] == 9
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
