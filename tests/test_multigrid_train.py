"""Multigrid through the training engine: stretched schedule, per-batch shapes and LR, DDP (gloo) and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from helpers.ddp_ranks import free_port, join_as_rank
from helpers.shaped_clips import ShapedClips, shaped_config, shaped_data
from helpers.tiny_model import register_tiny

from vidact.runtime import distributed
from vidact.runtime.checkpoint import load_checkpoint
from vidact.train.metrics_log import read_metrics
from vidact.train.subbatch_bn import SubBatchNorm3d


def test_fit_follows_the_multigrid_schedule(tmp_path, one_thread):
    from vidact.train.engine import fit
    from vidact.train.samplers import multigrid_training

    cfg = shaped_config(tmp_path / "run")
    summary = fit(cfg, shaped_data(), progress=False)
    plan = multigrid_training(cfg, 64)
    assert summary["epochs"] == 3 == plan.schedule.total_epochs  # 2 epochs x 1.5
    batches = [p for e in range(3) for p in plan.sampler.plan(e)]
    assert summary["iterations"] == len(batches)
    steps = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    # every iteration ran at the LR of the clips seen so far (not of the iteration count)
    assert [r["lr"] for r in steps] == pytest.approx([plan.schedule.lr(p.epoch) for p in batches])
    assert len({(p.frames, p.crop_size) for p in batches}) >= 4
    assert all(np.isfinite(r["loss"]) for r in steps)
    # checkpoints hold plain BatchNorm keys: eval/predict build the model without sub-batch BN
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    model = _tiny_model()
    model.load_state_dict(ckpt["model"])
    assert ckpt["epoch"] == 3


def _tiny_model():
    from vidact.models import create_model

    return create_model(register_tiny(), num_classes=4, dropout=0.0)


class Crash(Exception):
    pass


def _dying_in_epoch(train_one_epoch, crash_epoch: int):
    """``train_one_epoch`` that raises :class:`Crash` when asked for ``crash_epoch``, as a killed job stops."""

    def wrapped(run, epoch, *args, **kwargs):
        if epoch == crash_epoch:
            raise Crash
        return train_one_epoch(run, epoch, *args, **kwargs)

    return wrapped


def test_engine_swaps_in_sub_batch_bn(tmp_path, one_thread, monkeypatch):
    import vidact.train.engine as engine

    seen = []
    original = engine.prepare_model
    monkeypatch.setattr(
        engine, "prepare_model", lambda model, *a, **k: (seen.append(model), original(model, *a, **k))[1]
    )
    engine.fit(shaped_config(tmp_path / "run", epochs=1), shaped_data(), progress=False)
    assert any(isinstance(m, SubBatchNorm3d) for m in seen[0].modules())


@pytest.mark.parametrize("setting, expected", [("-1", 20), ("0", 0), ("3", 3)])
def test_precise_bn_runs_before_validation(tmp_path, one_thread, monkeypatch, setting, expected):
    import vidact.train.engine as engine

    calls = []
    original = engine.update_bn_stats
    monkeypatch.setattr(engine, "update_bn_stats", lambda *a, **k: (calls.append(a[2]), original(*a, **k))[1])
    cfg = shaped_config(tmp_path / "run", epochs=2, overrides=["multigrid=long", f"precise_bn_batches={setting}"])
    summary = engine.fit(cfg, shaped_data(), progress=False)
    assert summary["epochs"] == 3  # 2 base epochs, stretched: validated (after precise BN) per base epoch
    assert calls == ([expected] * 2 if expected else [])
    epochs = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "epoch"]
    assert [("precise_bn_seconds" in r) for r in epochs] == [False, bool(expected), bool(expected)]
    if expected:  # the saved statistics are those of full-shape batches: eval reproduces the logged top-1
        ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
        model = _tiny_model()
        model.load_state_dict(ckpt["model"])
        model.eval()
        val = ShapedClips(8, seed=1, train=False)
        with torch.no_grad():
            pred = torch.stack([model(val[i]["video"][None])[0] for i in range(len(val))]).argmax(1)
        assert (pred == torch.tensor(val.labels)).float().mean().item() == pytest.approx(epochs[-1]["val_top1"])


def test_multigrid_resume_ends_with_the_same_weights_and_statistics(tmp_path, one_thread, monkeypatch):
    """Killed after an epoch and resumed: every tensor, precise-BN running statistics included, is identical."""
    import vidact.train.engine as engine

    engine.fit(shaped_config(tmp_path / "reference"), shaped_data(), progress=False)
    original = engine.train_one_epoch
    monkeypatch.setattr(engine, "train_one_epoch", _dying_in_epoch(original, 2))
    with pytest.raises(Crash):
        engine.fit(shaped_config(tmp_path / "resumed"), shaped_data(), progress=False)
    monkeypatch.setattr(engine, "train_one_epoch", original)
    torch.manual_seed(1234)  # resume restores the saved RNG states
    engine.fit(shaped_config(tmp_path / "resumed"), shaped_data(), resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "reference" / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_dry_run_prints_the_schedule(cli):
    result = cli(
        "train",
        "--arch",
        "c3d",
        "--epochs",
        "20",
        "--multigrid",
        "long+short",
        "--dry-run",
        "--lr",
        "0.1",
        "--set",
        "schedule=step",
        "--set",
        "lr_steps=[8,16]",
    )
    assert result.exit_code == 0, result.stderr
    assert "multigrid long+short: 30 epochs" in result.stdout
    assert "0.00–6.32" in result.stdout and "128/64/64" in result.stdout and "fine-tune" in result.stdout
    result = cli("train", "--arch", "x3d-xs", "--epochs", "10", "--multigrid", "long", "--dry-run", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["total_epochs"] == 15 and doc["phases"][0]["frames"] == 1 and doc["phases"][0]["batch_sizes"] == [64]
    result = cli("train", "--multigrid", "fast", "--dry-run")
    assert result.exit_code == 2 and "multigrid='fast' is not one of" in result.stderr


# ------------------------------------------------------------------------------------ DDP
def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    """One torchrun-like rank: a full run, then a run that dies after an epoch, then its resume."""
    import vidact.train.engine as engine

    out = Path(out)
    join_as_rank(rank, world, port)
    try:
        reference = engine.fit(shaped_config(out / "reference"), shaped_data(), progress=False)
        original = engine.train_one_epoch
        engine.train_one_epoch = _dying_in_epoch(original, 2)  # every rank stops after the epoch-1 checkpoint
        try:
            engine.fit(shaped_config(out / "resumed"), shaped_data(), progress=False)
        except Crash:
            pass
        engine.train_one_epoch = original
        distributed.barrier()
        torch.manual_seed(1234)  # resume restores the saved RNG states
        resumed = engine.fit(shaped_config(out / "resumed"), shaped_data(), resume=True, progress=False)
        keys = ("epochs", "iterations", "resumed_from_epoch", "final_train_loss")
        (out / f"rank{rank}.json").write_text(
            json.dumps({"reference": {k: reference[k] for k in keys}, "resumed": {k: resumed[k] for k in keys}})
        )
    finally:
        distributed.cleanup()


@pytest.mark.slow  # three trainings in two forked ranks: 15-60 s on the shared 2-core machine
def test_two_process_ddp_multigrid_trains_and_resumes(tmp_path):
    register_tiny()  # the forked ranks inherit the registry
    mp.start_processes(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in ranks:
        assert r["reference"]["epochs"] == 3 and r["resumed"]["resumed_from_epoch"] == 2
        assert r["reference"]["iterations"] == r["resumed"]["iterations"]
    # the loss is reduced over ranks, so both ranks report the same value
    assert ranks[0]["reference"]["final_train_loss"] == ranks[1]["reference"]["final_train_loss"]
    # only rank 0 writes the run folder; the resumed run ends with the uninterrupted run's weights
    a, b = load_checkpoint(tmp_path / "reference" / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    steps = [r for r in read_metrics(tmp_path / "reference") if r["kind"] == "train"]
    assert len(steps) == a["iteration"]  # one log line per iteration: rank 0 only
