"""How training shares the cores (loader workers, decoder and torch threads), where its steps' time goes
(waiting for data vs computing, the one-line warning), and when it validates and recomputes BN statistics."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest
import torch
from helpers.tiny_model import FakeMotionClips, fake_config, fake_data

from vidact.data.loader import LoaderPlan, build_loader, plan_loading
from vidact.io import video
from vidact.train.metrics_log import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- the plan
def test_plan_shares_the_cores_between_processes_workers_and_threads():
    assert plan_loading(cores=2, torch_threads=2) == LoaderPlan(
        cores=2, processes=1, workers=2, decoder_threads=1, torch_threads=2
    )
    # torchrun: 4 processes on 16 cores get 4 each; workers x decoder threads fit the share
    four = plan_loading(cores=16, processes=4, torch_threads=0)
    assert (four.workers, four.decoder_threads) == (4, 1)
    assert four.torch_threads == min(torch.get_num_threads(), 4)
    many = plan_loading(cores=32, torch_threads=32)
    assert (many.workers, many.decoder_threads, many.torch_threads) == (8, 4, 32)  # at most 8 workers
    given = plan_loading(cores=8, workers=2, torch_threads=8)
    assert (given.workers, given.decoder_threads, given.workers_given) == (2, 4, True)
    inline = plan_loading(cores=8, workers=0, torch_threads=8)
    assert (inline.workers, inline.decoder_threads) == (0, 8)  # the process decodes itself
    assert inline.line().startswith("data loading: in the training process (0 loader workers, as given), 8 decoder")
    assert plan_loading(cores=1, processes=4, torch_threads=0).torch_threads == 1  # never below one
    assert (
        "data loading: 2 loader workers (one per usable core), 1 decoder thread each; 2 torch threads (2 usable cores)"
        == plan_loading(cores=2, torch_threads=2).line()
    )
    with pytest.raises(ValueError, match="workers must be >= 0"):
        plan_loading(workers=-2)


class DecoderThreads(torch.utils.data.Dataset):
    """Items that say how many decoder threads the process reading them was given."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index):
        return {"video": torch.zeros(1, 1, 1, 1), "label": video.decoder_threads(), "index": index, "view": 0}


def test_loader_workers_decode_with_their_share_of_threads():
    before = video.decoder_threads()
    video.set_decoder_threads(2)
    try:
        loader = build_loader(DecoderThreads(), 2, train=False, workers=2, decoder_threads=3)
        assert [int(v) for batch in loader for v in batch["label"]] == [3, 3, 3, 3]
        assert video.decoder_threads() == 2  # the parent keeps its own setting
    finally:
        video.set_decoder_threads(before)


class Warns(torch.utils.data.Dataset):
    """Items that log a warning in the process reading them, the same message for every other item."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index):
        logging.getLogger("vidact.tests").warning("odd item" if index % 2 else "even item")
        return {"video": torch.zeros(1, 1, 1, 1), "label": 0, "index": index, "view": 0}


def test_worker_warnings_are_logged_by_the_parent_once_each(caplog):
    with caplog.at_level(logging.WARNING, logger="vidact"):
        for _ in build_loader(Warns(), 2, train=False, workers=2):
            pass
    assert sorted(r.getMessage() for r in caplog.records if r.name == "vidact.tests") == ["even item", "odd item"]


def test_decoder_threads_are_applied_to_opened_streams(bikes_mp4):
    before = video.decoder_threads()
    try:
        video.set_decoder_threads(1)
        one = video.decode_frames(bikes_mp4, [0, 5, 40])
        video.set_decoder_threads(0)
        auto = video.decode_frames(bikes_mp4, [0, 5, 40])
    finally:
        video.set_decoder_threads(before)
    assert (one == auto).all()  # threads change the speed, never the pixels
    with pytest.raises(ValueError, match="decoder threads must be >= 0"):
        video.set_decoder_threads(-1)


def test_training_records_and_says_its_loading_plan(tmp_path):
    from vidact.train.engine import fit

    lines = []
    summary = fit(fake_config(tmp_path, epochs=1, workers=1), fake_data(), progress=False, notify=lines.append)
    assert summary["loading"]["workers"] == 1 and summary["loading"]["workers_given"]
    assert [line for line in lines if line.startswith("data loading: 1 loader worker (as given)")] == lines[-1:]
    assert (tmp_path / "config.toml").read_text().startswith("# data loading: 1 loader worker (as given)")


def test_a_run_ends_its_loader_workers_when_it_returns(tmp_path):
    """Training, validation, precise-BN and probe loaders keep persistent workers; a process that trains
    several runs (a benchmark, the demo) must not keep every earlier run's workers alive."""
    import multiprocessing

    from helpers.shaped_clips import shaped_config, shaped_data

    from vidact.train.engine import fit

    before = {p.pid for p in multiprocessing.active_children()}
    cfg = shaped_config(tmp_path, batch_size=2, overrides=["multigrid=auto", "workers=1", "precise_bn_batches=1"])
    summary = fit(cfg, shaped_data(), progress=False)
    assert summary["probe"] is not None  # the probe made loaders of its own
    assert {p.pid for p in multiprocessing.active_children()} == before
    loader = build_loader(FakeMotionClips(), 2, train=False, workers=2)
    next(iter(loader))
    assert len(multiprocessing.active_children()) == len(before) + 2
    loader.close()
    loader.close()  # idempotent
    assert {p.pid for p in multiprocessing.active_children()} == before


# ----------------------------------------------------------------------------- waiting for data
class SlowClips(FakeMotionClips):
    """Clips that take 50 ms each to "read", as a slow disk or decoder would."""

    def __getitem__(self, index):
        time.sleep(0.05)
        return super().__getitem__(index)


def _data_wait_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "waited for data" in r.getMessage()]


def test_a_slow_data_set_is_recorded_and_warned_about_once(tmp_path, caplog):
    from vidact.train.data import TrainData
    from vidact.train.engine import fit

    data = fake_data()
    slow = TrainData(data.classes, SlowClips(16, 4), data.val_set)
    with caplog.at_level(logging.WARNING, logger="vidact"):
        summary = fit(fake_config(tmp_path, epochs=2, batch_size=2), slow, progress=False)
    warnings = _data_wait_warnings(caplog)
    assert len(warnings) == 1  # one line for the run, not one per epoch
    assert (
        "with 0 loader workers: more --workers, or frames extracted once with `vidact frames extract`" in (warnings[0])
    )
    assert summary["time"]["data_wait_fraction"] > 0.5
    epochs = [r for r in read_metrics(tmp_path) if r["kind"] == "epoch"]
    assert len(epochs) == 2 and all(r["data_wait_fraction"] > 0.5 for r in epochs)
    # 8 batches of 2 clips at 16x16 per epoch, each waited for at least 2 x 50 ms
    assert all(r["shapes"]["8x16"]["clips"] == 16 and r["data_wait_s"] >= 0.8 for r in epochs)
    assert summary["time"]["data_wait_s"] == pytest.approx(sum(r["data_wait_s"] for r in epochs))


def test_a_fast_data_set_is_not_warned_about(tmp_path, caplog):
    from vidact.train.engine import fit

    with caplog.at_level(logging.WARNING, logger="vidact"):
        summary = fit(fake_config(tmp_path, epochs=2), fake_data(), progress=False)
    assert _data_wait_warnings(caplog) == []
    assert 0 <= summary["time"]["data_wait_fraction"] < 1 / 3
    assert summary["time"]["compute_s"] > 0 and summary["time"]["val_seconds"] > 0


# ----------------------------------------------------------------------------- cadence
def _run(base_epochs: int, num_epochs: int, val_every: int = 1):
    cfg = SimpleNamespace(epochs=base_epochs, val_every=val_every)
    return SimpleNamespace(cfg=cfg, num_epochs=num_epochs, data=SimpleNamespace(val_set=[0]))


@pytest.mark.parametrize(
    "base, total, every, expected",
    [
        (6, 6, 1, [0, 1, 2, 3, 4, 5]),  # plain: every epoch
        (6, 9, 1, [1, 2, 4, 5, 7, 8]),  # multigrid's 9 passes stand for 6 epochs: 6 validations
        (6, 9, 2, [2, 5, 8]),
        (6, 9, 4, [5, 8]),  # every 4th base epoch, and the end
        (2, 3, 1, [1, 2]),
    ],
)
def test_validation_follows_the_base_epochs(base, total, every, expected):
    from vidact.train.engine import is_validation_epoch

    run = _run(base, total, every)
    assert [e for e in range(total) if is_validation_epoch(run, e)] == expected


def test_precise_bn_never_uses_more_clips_than_an_epoch_holds(tmp_path):
    from vidact.train.engine import fit

    summary = fit(fake_config(tmp_path, epochs=1, precise_bn_batches=200), fake_data(), progress=False)
    assert summary["history"][-1]["precise_bn_batches"] == 4  # 16 clips in batches of 4


BUSY_WORKER_EXIT = """
import sys, time, torch
from vidact.data.loader import build_loader

class Busy(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        if index >= 2:
            time.sleep(600)  # a worker caught in a long read when the run ends
        return {"video": torch.zeros(1), "label": 0, "index": index, "view": 0}

loader = build_loader(Busy(), 2, train=False, workers=2)
next(iter(loader))
print("exiting", flush=True)
"""


def test_a_run_ends_even_when_its_loader_workers_are_busy(tmp_path):
    """Loader workers ignore stop signals; at exit the process still ends them (no wait for their reads)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", BUSY_WORKER_EXIT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "exiting"
