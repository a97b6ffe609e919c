"""vidact train: config, LR schedule, the training loop, checkpoints, the command and its errors."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.tiny_model import TINY, fake_config, fake_data, register_tiny

from vidact.errors import UsageError
from vidact.train.config import TrainConfig, apply_overrides, load_config, read_config_file, to_toml
from vidact.train.lr import LRSchedule

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- config
def test_set_overrides_are_typed():
    cfg = apply_overrides(TrainConfig(), ["lr=0.5", "epochs=3", "channels_last=true", "lr_steps=10,20", "amp=bf16"])
    assert (cfg.lr, cfg.epochs, cfg.channels_last, cfg.lr_steps, cfg.amp) == (0.5, 3, "on", [10, 20], "bf16")


def test_unknown_key_names_close_matches():
    with pytest.raises(UsageError, match=r"^--set: unknown config key 'learning_rat'.*") as err:
        apply_overrides(TrainConfig(), ["learning_rat=0.1"])
    with pytest.raises(UsageError, match="did you mean weight_decay"):
        apply_overrides(TrainConfig(), ["weight_decy=0"])
    assert "\n" not in str(err.value)


def test_bad_values_are_errors():
    with pytest.raises(UsageError, match="epochs expects an integer, got 'ten'"):
        apply_overrides(TrainConfig(), ["epochs=ten"])
    with pytest.raises(UsageError, match="optimizer='adam' is not one of sgd, adamw"):
        load_config(optimizer="adam")
    assert load_config(overrides=["multigrid=long+short"]).multigrid == "long+short"
    with pytest.raises(UsageError, match="multigrid='fast' is not one of"):
        load_config(overrides=["multigrid=fast"])
    with pytest.raises(UsageError, match="multigrid_lr_scaling='cube' is not one of auto, linear, sqrt, none"):
        load_config(overrides=["multigrid_lr_scaling=cube"])
    with pytest.raises(
        UsageError, match="precise_bn_batches must be -1 .auto., 0 .off. or a number of batches, got -3"
    ):
        load_config(overrides=["precise_bn_batches=-3"])


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([], 0),
        (["multigrid=long"], 20),
        (["multigrid=long", "precise_bn_batches=0"], 0),
        (["precise_bn_batches=5"], 5),
    ],
)
def test_precise_bn_is_on_for_multigrid_only_by_default(overrides, expected):
    assert load_config(overrides=overrides).resolved_precise_bn() == expected


def test_toml_round_trip_and_precedence(tmp_path):
    cfg = load_config(arch="c3d", lr=0.25, overrides=["lr_steps=[3, 6]", "label_smoothing=0.1"])
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(cfg))
    assert TrainConfig.from_dict(read_config_file(path)) == cfg
    # file < explicit option < --set
    again = load_config(path, ["epochs=7"], lr=0.5)
    assert (again.lr, again.epochs, again.lr_steps, again.label_smoothing) == (0.5, 7, [3, 6], 0.1)


def test_toml_unknown_key(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('arch = "c3d"\nbatchsize = 4\n')
    with pytest.raises(UsageError, match=r"cfg.toml: unknown config key 'batchsize'; did you mean batch_size, size\?"):
        load_config(path)


# ----------------------------------------------------------------------------- LR
def test_warmup_then_cosine():
    s = LRSchedule(base_lr=1.0, epochs=10, kind="cosine", warmup_epochs=2, warmup_start_factor=0.1)
    end_of_warmup = 0.5 * (1 + math.cos(math.pi * 0.2))
    assert s(0) == pytest.approx(0.1)
    assert s(1) == pytest.approx(0.1 + (end_of_warmup - 0.1) / 2)
    assert s(2) == pytest.approx(end_of_warmup)
    assert s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(0.0)


def test_step_schedule():
    s = LRSchedule(base_lr=0.1, epochs=30, kind="step", steps=(10, 20), gamma=0.1)
    assert [s(0), s(9.99), s(10), s(25)] == pytest.approx([0.1, 0.1, 0.01, 0.001])


# ----------------------------------------------------------------------------- the loop
def test_short_run_lowers_the_loss(tmp_path):
    from vidact.train.engine import fit

    summary = fit(fake_config(tmp_path / "run", epochs=4), fake_data(), progress=False)
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < 0.85 * losses[0], losses
    assert summary["best_val_top1"] > 0.25  # chance is 0.25
    for name in ("last.pt", "best.pt", "metrics.jsonl", "curves.png", "config.toml"):
        assert (tmp_path / "run" / name).is_file(), name


@pytest.mark.parametrize(
    "changes",
    [
        dict(optimizer="sgd", lr=0.1, nesterov=True, schedule="step", lr_steps=[1]),
        dict(amp="bf16", clip_grad=1.0, label_smoothing=0.1, channels_last=True),
    ],
)
def test_options_train(tmp_path, changes):
    from vidact.train.engine import fit

    summary = fit(fake_config(tmp_path, epochs=2, **changes), fake_data(), progress=False)
    assert all(math.isfinite(h["train_loss"]) for h in summary["history"])


def test_checkpoint_contents(tmp_path):
    from vidact.runtime.checkpoint import load_checkpoint
    from vidact.train.engine import fit

    fit(fake_config(tmp_path, epochs=1), fake_data(), progress=False)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["arch"] == TINY and ckpt["classes"] == [f"class{i}" for i in range(4)]
    assert ckpt["epoch"] == 1 and ckpt["iteration"] == 4 and ckpt["batch_in_epoch"] == 0
    assert ckpt["config"]["lr"] == 0.03 and ckpt["input"]["size"] == 16
    assert set(ckpt["rng"]) == {"torch", "numpy", "python", "cuda"}
    assert ckpt["optimizer"]["state"]  # momentum buffers
    assert torch.load(tmp_path / "last.pt", weights_only=True)["format"] == "vidact-checkpoint"


def test_rng_state_round_trip():
    import random

    import numpy as np

    from vidact.runtime.checkpoint import capture_rng_state, restore_rng_state

    state = capture_rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


# ----------------------------------------------------------------------------- the command
def test_cli_trains_on_videos(cli, synth_dir, tmp_path):
    register_tiny()
    run = tmp_path / "run"
    options = "--epochs 1 --batch-size 4 --frames 4 --size 16 --set log_every=1 --json".split()
    r = cli("train", "--arch", TINY, "--data", synth_dir, "--out", run, *options)
    assert r.exit_code == 0, r.stderr
    import json

    summary = json.loads(r.stdout)
    assert summary["iterations"] == 3 and summary["train_clips"] == 12
    assert 0.0 <= summary["best_val_top1"] <= 1.0
    assert (run / "best.pt").is_file() and (run / "curves.png").is_file()
    assert 'arch = "tiny3d"' in (run / "config.toml").read_text()


def test_cli_bad_config_key(cli, synth_dir, tmp_path):
    r = cli("train", "--arch", "c3d", "--data", synth_dir, "--out", tmp_path, "--set", "lr_stepz=3")
    assert r.exit_code == 2
    assert r.stderr.strip() == "error: --set: unknown config key 'lr_stepz'; did you mean lr_steps?"


def test_cli_missing_data(cli, tmp_path):
    register_tiny()
    r = cli("train", "--arch", TINY, "--data", tmp_path / "nope", "--out", tmp_path / "run")
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {tmp_path / 'nope'}: data folder not found"
    r = cli("train", "--arch", TINY, "--out", tmp_path / "run")
    assert r.exit_code == 2 and "no data: pass --data" in r.stderr


def test_cli_resume_with_another_arch(cli, tmp_path):
    from vidact.train.engine import fit

    fit(fake_config(tmp_path, epochs=1), fake_data(), progress=False)
    from vidact.models.registry import _REGISTRY, register_model

    if "tiny3d-b" not in _REGISTRY:
        from helpers.tiny_model import TINY_INPUT, Tiny3d

        register_model("tiny3d-b", input=TINY_INPUT, family="test")(Tiny3d)
    with pytest.raises(Exception) as err:
        fit(fake_config(tmp_path, arch="tiny3d-b", epochs=2), fake_data(), resume=True, progress=False)
    assert str(err.value) == f"{tmp_path / 'last.pt'}: checkpoint is for arch 'tiny3d', not 'tiny3d-b'"
    assert err.value.exit_code == 2


def test_tiny_model_shapes():
    from vidact.models import create_model

    model = create_model(register_tiny(), num_classes=5, in_channels=2)
    assert model(torch.randn(2, 2, 8, 32, 32)).shape == (2, 5)


def test_the_cli_checks_a_config_once(cli, synth_dir, tmp_path, monkeypatch):
    calls = []
    original = TrainConfig._check
    monkeypatch.setattr(TrainConfig, "_check", lambda self: (calls.append(1), original(self))[1])
    register_tiny()
    r = cli("train", "--arch", TINY, "--data", synth_dir, "--out", tmp_path / "run", "--epochs", "1")
    assert r.exit_code == 0, r.stderr
    assert len(calls) == 1
    cfg = load_config(epochs=2)
    cfg.epochs = 0  # a changed config is checked again
    with pytest.raises(UsageError, match="epochs must be at least 1"):
        cfg.validate()


def test_every_batch_sampler_is_what_the_loop_asks_for():
    from vidact.train.samplers import (
        EpochBatchSampler,
        IterationBudgetSampler,
        TrainingBatches,
        multigrid_training,
    )

    plain = EpochBatchSampler(10, 3, rank=0, world_size=1)
    budget = IterationBudgetSampler(10, 3, iterations=7, rank=0, world_size=1)
    multigrid = multigrid_training(load_config(overrides=["multigrid=long"], epochs=2, batch_size=2), 64).sampler
    for sampler in (plain, budget, multigrid):
        assert isinstance(sampler, TrainingBatches)
    assert (plain.total_batches(4), budget.total_batches(2)) == (12, 14)
    lengths = []
    for epoch in range(3):  # the run's count is what the epochs yield, though they differ in length
        multigrid.set_epoch(epoch, 0)
        lengths.append(len(multigrid))
    assert multigrid.total_batches(3) == sum(lengths) and len(set(lengths)) > 1
