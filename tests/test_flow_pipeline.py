"""Batched extraction (pairs of many videos per solver call, device quantisation, threaded writing) on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidact.flow.extract import extract_flow
from vidact.flow.options import FlowOptions
from vidact.flow.pipeline import BatchedExtraction, HostCopy, quantize_on_device
from vidact.flow.tvl1 import TVL1Params
from vidact.io import flowio
from vidact.io.jobs import VideoJob
from vidact.io.video import write_video

FAST = TVL1Params(nscales=2, warps=2, outer_iterations=2)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def videos(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "videos"
    root.mkdir()
    for i, (frames, size) in enumerate([(5, 32), (4, 32), (6, 24), (3, 32)]):
        base = np.repeat(np.repeat(rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8), 4, 0), 4, 1)
        write_video(root / f"v{i}.mp4", np.stack([np.roll(base, k, 1)[:size, :size] for k in range(frames)]))
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    write_video(root / "one_frame.mp4", np.zeros((1, 16, 16, 3), np.uint8))
    return root


@pytest.mark.parametrize("fmt", ["jpg", "npz"])
def test_batched_extraction_writes_what_the_per_video_path_writes(videos, tmp_path, fmt):
    options = FlowOptions(params=FAST, compile=False, fmt=fmt, batch=3)  # batches of 3 pairs span videos
    plain = extract_flow(videos, tmp_path / "plain", options=options, workers=1, batched=False)
    batched = extract_flow(videos, tmp_path / "batched", options=options, workers=1, batched=True)
    assert (batched["done"], batched["failed"]) == (plain["done"], plain["failed"]) == (4, 2)
    assert sorted(f["reason"] for f in batched["failures"]) == sorted(f["reason"] for f in plain["failures"])
    assert _tree(tmp_path / "batched") == _tree(tmp_path / "plain")  # byte for byte, failures.txt included


def test_batches_mix_videos_and_sizes_separately():
    """4 + 3 + 5 pairs at 32x32 and 4 at 24x24 in batches of 5: every batch full but the last of each size."""
    frames = {
        "a": np.zeros((5, 32, 32, 3), np.uint8),
        "b": np.zeros((4, 32, 32, 3), np.uint8),
        "c": np.zeros((5, 24, 24, 3), np.uint8),
        "d": np.zeros((6, 32, 32, 3), np.uint8),
    }
    calls, written = [], {}

    def solve(f0, f1):
        calls.append((len(f0), f0.shape[1:3]))
        return torch.from_numpy(np.stack([np.full((2, *f0.shape[1:3]), float(k)) for k in range(len(f0))])).float()

    def write(staging, flows, src, n_frames):
        written[src.name] = (flows.copy(), n_frames)

    jobs = [VideoJob(Path(k), k) for k in frames]
    runner = BatchedExtraction(solve, 5, write, "npz", 20.0, writers=2)
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        report = runner.run(jobs, lambda job: frames[job.rel], Path(out), "failures.txt")
    assert sorted(report.done) == ["a", "b", "c", "d"]
    assert sorted(calls) == [(2, (32, 32)), (4, (24, 24)), (5, (32, 32)), (5, (32, 32))]
    assert calls[:2] == [(5, (32, 32))] * 2 and runner.batches == 4  # full batches as soon as they fill
    # a: rows 0-3 of batch 1; b: 4 of batch 1 + 0-1 of batch 2; d: 2-4 of batch 2 + 0-1 of batch 3
    assert written["a"][0][:, 0, 0, 0].tolist() == [0, 1, 2, 3] and written["a"][1] == 5
    assert written["b"][0][:, 0, 0, 0].tolist() == [4, 0, 1]
    assert written["d"][0][:, 0, 0, 0].tolist() == [2, 3, 4, 0, 1]
    assert written["c"][0].dtype == np.float16 and written["c"][0].shape == (4, 2, 24, 24)


def test_device_quantisation_equals_the_host_one():
    f = torch.tensor(
        [-25.0, -20.0, -0.0784314, -0.0784313, 0.0, 0.0784313, 0.0784314, 19.99, 20.0, 31.0, 0.07843137254, 1e-7, -1e-7]
    ).view(1, 1, 1, -1)
    f = torch.cat([f, torch.randn(1, 1, 1, 4000) * 12], dim=-1)
    for bound in (20.0, 15.0, 32.0):
        np.testing.assert_array_equal(quantize_on_device(f, bound).numpy(), flowio.quantize(f.numpy(), bound))


def test_host_copy_on_cpu_is_the_tensor():
    t = torch.arange(6, dtype=torch.uint8)
    copy = HostCopy(t)
    assert copy.event is None and copy.numpy().tolist() == list(range(6))


def test_a_full_disk_stops_batched_extraction(tmp_path):
    """The first video that does not fit stops the run (one DiskFullError); finished folders stay complete."""
    import threading
    import time

    from vidact.errors import DiskFullError

    frames = {k: np.zeros((3, 16, 16, 3), np.uint8) for k in "abcdefgh"}
    read, b_failed = [], threading.Event()

    def solve(f0, f1):
        return torch.zeros(len(f0), 2, *f0.shape[1:3])

    def write(staging, flows, src, n_frames):
        if src.name == "b":
            b_failed.set()
            raise DiskFullError(staging / "flow_x_00001.jpg", "No space left on device")
        (staging / "flow.npz").write_bytes(b"x")

    def frames_of(job):
        if job.rel == "e":  # decoding takes a while: the writer thread has met the full disk by now
            assert b_failed.wait(10)
            for _ in range(1000):  # and recorded it
                if runner._disk_full is not None:
                    break
                time.sleep(0.01)
        read.append(job.rel)
        return frames[job.rel]

    runner = BatchedExtraction(solve, 2, write, "npz", 20.0, writers=1)
    with pytest.raises(DiskFullError, match="disk full"):
        runner.run([VideoJob(Path(k), k) for k in frames], frames_of, tmp_path, "failures.txt")
    assert (tmp_path / "a" / "flow.npz").is_file() and not (tmp_path / "b").exists()
    assert read == ["a", "b", "c", "d", "e"]  # the videos after the full disk were never read
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]
