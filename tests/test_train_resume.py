"""--resume continues exactly: a run killed with SIGKILL and resumed ends with the uninterrupted run's weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.tiny_model import fake_config, fake_data

from vidact.runtime.checkpoint import load_checkpoint
from vidact.train.metrics_log import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
TESTS = Path(__file__).resolve().parent
EPOCHS = 4


def _start(out: Path, resume: bool) -> subprocess.Popen:
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); from helpers.tiny_model import run_fake_training; "
        f"run_fake_training({str(out)!r}, {EPOCHS}, {resume})"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]


def _loss_trace(run: Path) -> list[tuple]:
    return [
        (r["kind"], r["epoch"], r["step"], r.get("loss"), r.get("top1"))
        for r in read_metrics(run)
        if r["kind"] in ("train", "val")
    ]


def _assert_same_run(a_dir: Path, b_dir: Path) -> None:
    a, b = load_checkpoint(a_dir / "last.pt"), load_checkpoint(b_dir / "last.pt")
    assert a["epoch"] == b["epoch"] == EPOCHS and a["iteration"] == b["iteration"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa if isinstance(pa[k], torch.Tensor))
    assert _loss_trace(a_dir) == _loss_trace(b_dir)


class Crash(Exception):
    pass


def test_resume_in_process_equals_uninterrupted_run(tmp_path, monkeypatch):
    import vidact.train.engine as engine

    engine.fit(fake_config(tmp_path / "reference", epochs=EPOCHS), fake_data(), progress=False)
    save = engine.save_checkpoint

    def save_then_crash(path, **fields):
        save(path, **fields)
        if Path(path).name == "last.pt" and fields["epoch"] == 2:
            raise Crash  # dies right after the epoch-2 checkpoint, as a killed job would

    monkeypatch.setattr(engine, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        engine.fit(fake_config(tmp_path / "resumed", epochs=EPOCHS), fake_data(), progress=False)
    monkeypatch.setattr(engine, "save_checkpoint", save)
    torch.manual_seed(1234)  # whatever ran in between, resume restores the saved RNG states
    summary = engine.fit(fake_config(tmp_path / "resumed", epochs=EPOCHS), fake_data(), resume=True, progress=False)
    assert summary["resumed_from_epoch"] == 2
    _assert_same_run(tmp_path / "reference", tmp_path / "resumed")


@pytest.mark.slow  # three fresh Python processes: 45-65 s on the shared 2-core machine
def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    reference, victim_dir = tmp_path / "reference", tmp_path / "killed"
    ref = _start(reference, resume=False)
    victim = _start(victim_dir, resume=False)
    deadline = time.monotonic() + 300
    while not (victim_dir / "last.pt").exists():
        assert victim.poll() is None, victim.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(victim_dir / "last.pt")["epoch"]
    assert 1 <= killed_at < EPOCHS  # the kill came mid-training
    _finish(_start(victim_dir, resume=True))
    _finish(ref)
    _assert_same_run(reference, victim_dir)
