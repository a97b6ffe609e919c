"""The runtime layer and the defects a review found: device/speed choices, model building,
unreadable-sample substitution, divergence, --debug, eval --data ., uneven DDP splits."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import torch
import torch.multiprocessing as mp
from helpers.ddp_ranks import free_port, join_as_rank
from helpers.tiny_model import make_checkpoint, register_tiny
from torch import nn

from vidact.errors import TrainingDiverged, UsageError
from vidact.models.registry import _REGISTRY, InputSpec, register_model
from vidact.runtime.build import build_model, builder_options
from vidact.runtime.device import resolve_speed, select_device
from vidact.train.samplers import EpochBatchSampler

CLASSES = ["move_left", "move_right", "move_up", "move_down"]


# ----------------------------------------------------------------------------- devices and defaults
def test_select_device_errors_are_one_line():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UsageError, match=r"^unknown device 'gpu0'"):
        select_device("gpu0")
    with pytest.raises(UsageError, match=r"^unsupported device 'meta'"):
        select_device("meta")


def _meta(arch):
    from vidact.models import create_model

    with torch.device("meta"):
        return create_model(arch, num_classes=4)


def test_auto_speed_follows_each_family_preference():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    x3d, slowfast = _meta("x3d-xs"), _meta("slowfast-r50-8x8")
    auto = dict(amp="auto", channels_last="auto")
    # CPU: never autocast; the memory format each family measured fastest (X3D channels-last, SlowFast not)
    assert resolve_speed(x3d, cpu, **auto) == ("none", True)
    assert resolve_speed(slowfast, cpu, **auto) == ("none", False)
    # CUDA: SlowFast bf16 + channels-last, X3D fp32 contiguous (benchmarks/models.py on the H200)
    assert resolve_speed(slowfast, cuda, **auto) == ("bf16", True)
    assert resolve_speed(x3d, cuda, **auto) == ("none", False)
    # families with no preference, and explicit choices
    assert resolve_speed(_meta("c3d"), cuda, **auto) == ("none", False)
    assert resolve_speed(x3d, cpu, amp="bf16", channels_last="off") == ("bf16", False)


def test_fit_records_the_resolved_speed_settings(tmp_path, one_thread):
    from helpers.shaped_clips import shaped_config, shaped_data

    from vidact.train.engine import fit

    summary = fit(shaped_config(tmp_path / "run", epochs=1, overrides=[]), shaped_data(), progress=False)
    assert (summary["amp"], summary["channels_last"]) == ("none", False)


# ----------------------------------------------------------------------------- building models
class _BrokenInside(nn.Module):
    def __init__(self, num_classes: int = 4, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        raise TypeError("a bug inside the constructor")


def test_build_model_checks_options_against_the_signature():
    if "broken3d" not in _REGISTRY:
        register_model("broken3d", input=InputSpec(3, 8, 32), family="test")(_BrokenInside)
    with pytest.raises(UsageError, match=r"^arch 'broken3d' does not accept option 'width_mult'"):
        build_model("broken3d", 4, width_mult=0.5)
    with pytest.raises(TypeError, match="a bug inside the constructor"):  # not reported as bad usage
        build_model("broken3d", 4)
    assert builder_options(_REGISTRY["c3d"].builder) == {"num_classes", "in_channels", "dropout", "width_mult"}
    assert builder_options(_REGISTRY["x3d-xs"].builder) is None  # forwards **kwargs: the class checks them
    assert build_model("x3d-xs", 4, width_mult=0.5).num_features == 2048


# ----------------------------------------------------------------------------- data-loading errors
def test_a_transform_bug_is_raised_not_replaced(synth_dir, monkeypatch):
    from vidact.data.annotations import load_dataset_dir
    from vidact.data.dataset import VideoClipDataset

    ds = VideoClipDataset(load_dataset_dir(synth_dir).split("train"), num_frames=4, crop_size=16)
    monkeypatch.setattr(VideoClipDataset, "_transform", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        ds[0]
    assert ds.skipped == 0


# ----------------------------------------------------------------------------- divergence
class _PoisonedClips(torch.utils.data.Dataset):
    """The in-memory clips of the multigrid tests, every value NaN."""

    def __init__(self, clips):
        self.clips = clips

    def set_epoch(self, epoch):
        self.clips.set_epoch(epoch)

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, key):
        item = dict(self.clips[key])
        item["video"] = torch.full_like(item["video"], float("nan"))
        return item


def test_divergence_is_a_runtime_failure_that_keeps_the_last_checkpoint(tmp_path, one_thread):
    from helpers.shaped_clips import shaped_config, shaped_data

    from vidact.train.data import TrainData
    from vidact.train.engine import fit

    run = tmp_path / "run"
    fit(shaped_config(run, epochs=1, overrides=[]), shaped_data(), progress=False)
    before = (run / "last.pt").read_bytes()
    good = shaped_data()
    poisoned = TrainData(good.classes, _PoisonedClips(good.train_set), good.val_set)
    with pytest.raises(TrainingDiverged) as info:
        fit(shaped_config(run, epochs=2, overrides=[]), poisoned, resume=True, progress=False)
    message = str(info.value)
    assert info.value.exit_code == 1
    assert "\n" not in message and "loss became nan at epoch 2, iteration 1" in message
    assert "lower lr" in message and str(run / "last.pt") in message
    assert (run / "last.pt").read_bytes() == before  # the last good checkpoint is untouched


# ----------------------------------------------------------------------------- the CLI
def test_debug_does_not_leak_into_later_calls(cli):
    with pytest.raises(UsageError):  # --debug re-raises with the traceback
        cli("--debug", "profile", "--arch", "nope")
    assert "VIDACT_DEBUG" not in os.environ
    r = cli("profile", "--arch", "nope")
    assert r.exit_code == 2 and r.stderr.startswith("error: unknown architecture 'nope'")


def test_eval_accepts_the_current_folder_as_data(cli, synth_dir, tmp_path, monkeypatch, one_thread):
    ckpt = make_checkpoint(tmp_path / "tiny.pt", CLASSES)
    monkeypatch.chdir(synth_dir)
    r = cli("eval", ckpt, "--data", ".", "--out", tmp_path, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["data"] == "."


# ----------------------------------------------------------------------------- one rank-splitting rule
@pytest.mark.parametrize("num_samples,batch,world", [(17, 3, 2), (5, 2, 4), (1, 3, 2), (64, 4, 3), (10, 3, 1)])
@pytest.mark.parametrize("drop_last", [True, False])
def test_every_rank_gets_the_same_batches_count(num_samples, batch, world, drop_last):
    ranks = [
        EpochBatchSampler(num_samples, batch, seed=3, rank=r, world_size=world, drop_last=drop_last).batches()
        for r in range(world)
    ]
    assert len({len(b) for b in ranks}) == 1 and len(ranks[0]) >= 1
    for step in zip(*ranks):
        assert len({len(b) for b in step}) == 1  # the same batch size on every rank at every step
    seen = Counter(i for batches in ranks for b in batches for i in b)
    if not drop_last:  # every clip once, plus at most world - 1 repeats of padding
        assert set(seen) == set(range(num_samples)) and sum(seen.values()) - num_samples < world


def _uneven_worker(rank: int, world: int, port: int, out: str) -> None:
    from helpers.shaped_clips import ShapedClips, shaped_config

    from vidact.runtime import distributed
    from vidact.train.data import TrainData
    from vidact.train.engine import fit

    join_as_rank(rank, world, port)
    try:
        data = TrainData([f"class{i}" for i in range(4)], ShapedClips(17), ShapedClips(5, seed=1, train=False))
        summary = fit(shaped_config(f"{out}/run", epochs=1, batch_size=3, overrides=[]), data, progress=False)
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump({"iterations": summary["iterations"]}, f)
    finally:
        distributed.cleanup()


def test_two_process_ddp_with_an_uneven_split_trains(tmp_path):
    """17 clips, batch 3 per rank, 2 ranks: 9 and 8 clips per rank used to give 3 and 2 steps (a hang or crash)."""
    register_tiny()
    mp.start_processes(_uneven_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    steps = [json.loads((tmp_path / f"rank{r}.json").read_text())["iterations"] for r in range(2)]
    assert steps == [3, 3]  # 17 padded to 18: three global batches of 6
