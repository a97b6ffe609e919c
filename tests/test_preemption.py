"""Preemption: a stop signal ends training after the current iteration with last.pt at that exact position,
and --resume continues to the uninterrupted run's weights; --checkpoint-every bounds what a SIGKILL loses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.step_hooks import at_step
from helpers.tiny_model import fake_config, fake_data

from vidact.errors import UsageError
from vidact.runtime.checkpoint import load_checkpoint
from vidact.train import engine
from vidact.train.metrics_log import read_metrics
from vidact.train.preemption import Cadence

pytestmark = pytest.mark.usefixtures("one_thread")
EPOCHS = 3  # 16 clips in batches of 4: 4 iterations per epoch, 12 in all


def assert_same_weights(a_dir: Path, b_dir: Path) -> None:
    a, b = load_checkpoint(a_dir / "last.pt"), load_checkpoint(b_dir / "last.pt")
    assert (a["epoch"], a["iteration"]) == (b["epoch"], b["iteration"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa if isinstance(pa[k], torch.Tensor))

    def untimed(metrics: dict) -> dict:
        timed = lambda k: k in engine.TIMING_KEYS or k.endswith(("seconds", "clips_per_s"))  # noqa: E731
        return {k: v for k, v in metrics.items() if not timed(k)}

    assert untimed(a["metrics"]) == untimed(b["metrics"])


def _trace(run: Path) -> list[tuple]:
    """Every step's loss, every validation and every epoch's mean loss (an interrupted epoch's too)."""
    keys = ("kind", "epoch", "step", "loss", "top1", "train_loss", "val_top1")
    return [tuple(r.get(k) for k in keys) for r in read_metrics(run) if r["kind"] != "stop"]


def signal_at_step(monkeypatch, step: int, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to this process while the ``step``-th iteration runs (undone after the test)."""
    monkeypatch.setattr(engine, "set_lr", engine.set_lr)  # monkeypatch.undo() puts the original back
    at_step(step, lambda: os.kill(os.getpid(), sig))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run (one torch thread, as every run here)."""
    out, threads = tmp_path_factory.mktemp("reference"), torch.get_num_threads()
    torch.set_num_threads(1)
    engine.fit(fake_config(out, epochs=EPOCHS), fake_data(), progress=False)
    torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])
def test_a_stop_signal_saves_the_exact_iteration_and_resume_is_identical(reference, tmp_path, monkeypatch, sig):
    run, handler = tmp_path / "stopped", signal.getsignal(sig)
    signal_at_step(monkeypatch, 6, sig)  # epoch 2, its second iteration
    summary = engine.fit(fake_config(run, epochs=EPOCHS), fake_data(), progress=False, stop_signals=True)
    monkeypatch.undo()
    stopped = summary["stopped"]
    assert stopped["signal"] == signal.Signals(sig).name
    assert (stopped["epoch"], stopped["batch_in_epoch"], stopped["iteration"]) == (1, 2, 6)  # finished the iteration
    assert stopped["message"].startswith(f"stopped by {signal.Signals(sig).name} at epoch 2, iteration 2 (step 6)")
    assert f"--out {run} --resume" in stopped["message"]
    ckpt = load_checkpoint(run / "last.pt")
    assert (ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["iteration"]) == (1, 2, 6)
    assert (run / "curves.png").is_file()
    assert read_metrics(run)[-1] == {"kind": "stop", "epoch": 1, "step": 6, "signal": signal.Signals(sig).name}
    assert signal.getsignal(sig) == handler  # the handlers are put back after the run

    torch.manual_seed(99)  # whatever ran in between, resume restores the saved RNG states
    summary = engine.fit(fake_config(run, epochs=EPOCHS), fake_data(), resume=True, progress=False)
    assert summary["iterations"] == 12 and "stopped" not in summary
    assert_same_weights(reference, run)
    assert _trace(reference) == _trace(run)


def test_without_stop_signals_a_signal_keeps_its_default_action(tmp_path, monkeypatch):
    signal_at_step(monkeypatch, 2, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        engine.fit(fake_config(tmp_path / "run", epochs=1), fake_data(), progress=False)


def test_checkpoint_every_parses_iterations_and_durations():
    assert Cadence.parse("") == Cadence() and Cadence.parse("10") == Cadence(iterations=10)
    assert Cadence.parse("90s").seconds == 90 and Cadence.parse("30m").seconds == 1800
    assert Cadence.parse("1.5h").seconds == 5400
    for bad in ("0", "-3", "10x", "m", "0s"):
        with pytest.raises(UsageError, match="checkpoint_every"):
            Cadence.parse(bad)
    assert Cadence(iterations=10).due(20, 0.0) and not Cadence(iterations=10).due(21, 1e9)
    assert Cadence(seconds=60).due(7, 61.0) and not Cadence(seconds=60).due(7, 59.0)
    assert not Cadence().due(10, 1e9)


def test_checkpoint_every_writes_last_pt_mid_epoch(tmp_path, monkeypatch):
    saved = []
    save = engine.save_checkpoint

    def record(path, **fields):
        saved.append((Path(path).name, fields["epoch"], fields["batch_in_epoch"], fields["iteration"]))
        save(path, **fields)

    monkeypatch.setattr(engine, "save_checkpoint", record)
    engine.fit(fake_config(tmp_path / "run", epochs=2, checkpoint_every="3"), fake_data(), progress=False)
    last = [s[1:] for s in saved if s[0] == "last.pt"]
    # every 3rd step (3: epoch 0 it 3; 6: epoch 1 it 2) and each epoch's end
    assert last == [(0, 3, 3), (1, 0, 4), (1, 2, 6), (2, 0, 8)]


TESTS = Path(__file__).resolve().parent


def _vidact_train(args: list[str], seconds_per_step: float = 0.0) -> subprocess.Popen:
    """``vidact train ARGS`` in a new process (and session) that knows ``tiny3d``; each step can be slowed down."""
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); from helpers.tiny_model import register_tiny; "
        f"from helpers.step_hooks import slow_steps; register_tiny(); slow_steps({seconds_per_step}); "
        f"from vidact.cli.main import main; main({[str(a) for a in args]!r})"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def _wait_for_steps(run: Path, proc: subprocess.Popen, steps: int) -> None:
    deadline = time.monotonic() + 120
    while len([r for r in read_metrics(run) if r["kind"] == "train"]) < steps:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)


def _train_args(synth_dir: Path, run: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--arch",
        "tiny3d",
        "--data",
        synth_dir,
        "--out",
        run,
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--set",
        "log_every=1",
        "--deterministic",
        *extra,
    ]


def test_vidact_train_sent_sigterm_exits_75_with_one_line(synth_dir, tmp_path):
    """SIGTERM to the job's whole process group, as a scheduler sends it (loader workers included)."""
    run, workers = tmp_path / "run", 2
    proc = _vidact_train(_train_args(synth_dir, run, "--workers", str(workers)), seconds_per_step=0.2)
    _wait_for_steps(run, proc, 2)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]
    loading, *lines = err.strip().splitlines()
    assert loading.startswith("data loading: 2 loader workers (as given)")
    ckpt = load_checkpoint(run / "last.pt")
    position = f"epoch {ckpt['epoch'] + 1}, iteration {ckpt['batch_in_epoch']} (step {ckpt['iteration']})"
    assert lines == [
        f"stopped by SIGTERM at {position}: saved {run / 'last.pt'}; "
        f"continue with the same command and --resume (vidact train --out {run} --resume)"
    ]
    assert ckpt["batch_in_epoch"] > 0  # mid-epoch: 12 training clips, 6 iterations
    steps = [r["step"] for r in read_metrics(run) if r["kind"] == "train"]
    assert steps == list(range(1, ckpt["iteration"] + 1))  # every finished iteration logged, none after the save
    assert (run / "curves.png").is_file() and not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    # the same command with --resume goes on from there to the end
    proc = _vidact_train([*_train_args(synth_dir, run, "--workers", str(workers)), "--resume", "--json"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out)
    assert summary["iterations"] == 6 and summary["resumed_from_epoch"] == ckpt["epoch"]


def test_a_second_signal_exits_at_once(synth_dir, tmp_path):
    run = tmp_path / "run"
    proc = _vidact_train(_train_args(synth_dir, run), seconds_per_step=2.0)
    _wait_for_steps(run, proc, 1)
    os.kill(proc.pid, signal.SIGTERM)  # stop after this iteration (2 s long)...
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGTERM)  # ...no: now
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    assert not (run / "last.pt").exists()  # nothing was saved, nothing half-written
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_sigkill_with_checkpoint_every_10_loses_at_most_10_iterations(tmp_path):
    """SIGKILL at a random iteration of 40: the rerun starts at most 10 iterations back and ends identical."""
    import random

    changes = {"batch_size": 2, "checkpoint_every": "10"}  # 8 iterations per epoch, 5 epochs
    engine.fit(fake_config(tmp_path / "reference", epochs=5, **changes), fake_data(), progress=False)
    kill_at = random.Random(time.time_ns()).randint(11, 32)
    run = tmp_path / "killed"

    def start(resume: bool, seconds_per_step: float) -> subprocess.Popen:
        code = (
            f"import sys; sys.path.insert(0, {str(TESTS)!r}); from helpers.tiny_model import run_fake_training; "
            f"run_fake_training({str(run)!r}, 5, {resume}, {seconds_per_step}, **{changes!r})"
        )
        return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)

    victim = start(False, 0.05)
    _wait_for_steps(run, victim, kill_at)
    victim.kill()
    victim.wait()
    done = max(r["step"] for r in read_metrics(run) if r["kind"] == "train")
    saved = load_checkpoint(run / "last.pt")["iteration"]
    assert done < 40 and 0 <= done - saved < 10, (kill_at, done, saved)  # at most 10 finished iterations lost
    rerun = start(True, 0.0)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()[-2000:]
    assert_same_weights(tmp_path / "reference", run)
    assert _trace(tmp_path / "reference") == _trace(run), f"killed after step {done}, resumed from {saved}"


def _ddp_rank(rank: int, world: int, port: int, out: str, resume: bool, stop_rank: int, stop_step: int) -> None:
    """One gloo rank of a fake training run; rank ``stop_rank`` alone receives SIGTERM during step ``stop_step``."""
    from helpers.ddp_ranks import join_as_rank

    from vidact.runtime import distributed

    join_as_rank(rank, world, port)
    try:
        if rank == stop_rank:
            at_step(stop_step, lambda: os.kill(os.getpid(), signal.SIGTERM))
        cfg = fake_config(out, epochs=EPOCHS, batch_size=2)  # 2 clips per rank: 4 iterations per epoch
        summary = engine.fit(cfg, fake_data(), resume=resume, progress=False, stop_signals=True)
        Path(out, f"rank{rank}.json").write_text(
            json.dumps(summary.get("stopped") or {"iterations": summary["iterations"]})
        )
    finally:
        distributed.cleanup()


def _ddp(out: Path, resume: bool = False, stop_rank: int = -1, stop_step: int = 0) -> list[dict]:
    import torch.multiprocessing as mp
    from helpers.ddp_ranks import free_port

    args = (2, free_port(), str(out), resume, stop_rank, stop_step)
    mp.start_processes(_ddp_rank, args=args, nprocs=2, join=True, start_method="fork")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_under_ddp_every_rank_stops_at_the_same_iteration_and_resume_is_identical(tmp_path):
    assert _ddp(tmp_path / "reference") == [{"iterations": 12}] * 2
    run = tmp_path / "stopped"
    stopped = _ddp(run, stop_rank=1, stop_step=7)  # only rank 1 is signalled, during epoch 2's third step
    assert [(s["epoch"], s["batch_in_epoch"], s["iteration"]) for s in stopped] == [(1, 3, 7)] * 2
    assert stopped[1]["signal"] == "SIGTERM" and stopped[0]["signal"] == "a signal to another rank"
    ckpt = load_checkpoint(run / "last.pt")  # written by rank 0
    assert (ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["iteration"]) == (1, 3, 7)
    assert _ddp(run, resume=True) == [{"iterations": 12}] * 2
    assert_same_weights(tmp_path / "reference", run)
    assert _trace(tmp_path / "reference") == _trace(run)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_multigrid_stopped_mid_epoch_resumes_identically(tmp_path, monkeypatch, accumulate):
    """Per-batch clip shapes and LR, sub-batch BN (and accumulated micro-batches): a stop inside an epoch."""
    from helpers.shaped_clips import shaped_config, shaped_data

    def config(out):
        return shaped_config(out, overrides=["multigrid=long+short", "log_every=1", f"accumulate={accumulate}"])

    reference = engine.fit(config(tmp_path / "reference"), shaped_data(), progress=False)
    run = tmp_path / "stopped"
    signal_at_step(monkeypatch, reference["iterations"] // 2, signal.SIGTERM)
    stopped = engine.fit(config(run), shaped_data(), progress=False, stop_signals=True)["stopped"]
    monkeypatch.undo()
    assert stopped["batch_in_epoch"] > 0 and stopped["iteration"] == reference["iterations"] // 2
    engine.fit(config(run), shaped_data(), resume=True, progress=False)
    assert_same_weights(tmp_path / "reference", run)
    assert _trace(tmp_path / "reference") == _trace(run)
