"""``vidact flow extract`` / ``flow show``: layout, manifest, resume, failures, shards, formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidact.flow.extract import extract_flow
from vidact.flow.inputs import collect_flow_jobs
from vidact.flow.options import FlowOptions
from vidact.flow.scale_out import combine_shards
from vidact.flow.tvl1 import TVL1Params
from vidact.io.flowio import count_flow, read_flow, read_manifest
from vidact.io.frames import write_frames
from vidact.io.shard import take_shard
from vidact.io.video import write_video
from vidact.runtime.distributed import LaunchEnv, launch_env

FAST = TVL1Params(nscales=2, warps=2, outer_iterations=2)


def _moving_clip(frames=5, size=32, dx=1, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = (rng.uniform(0, 255, size=(size + 4 * frames, size + 4 * frames, 3))).astype(np.uint8)
    base = np.repeat(np.repeat(base[::4, ::4], 4, 0), 4, 1)  # blocky texture survives H.264
    return np.stack([base[8 : 8 + size, 8 + k * dx : 8 + k * dx + size] for k in range(frames)])


@pytest.fixture
def videos(tmp_path) -> Path:
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    write_video(root / "a" / "clip1.mp4", _moving_clip(seed=1))
    write_video(root / "clip2.mp4", _moving_clip(seed=2, dx=-1))
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    return root


def test_extract_layout_manifest_failures_and_resume(videos, tmp_path):
    out = tmp_path / "flow"
    options = FlowOptions(params=FAST, compile=False, batch=3)
    result = extract_flow(videos, out, options=options)
    assert (result["done"], result["skipped"], result["failed"]) == (2, 0, 1)
    failures = (out / "failures.txt").read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith("broken\t") and "broken.mp4" in failures[0]
    clip = out / "a" / "clip1"
    names = sorted(p.name for p in clip.iterdir())
    assert names[:2] == ["flow.json", "flow_x_00001.jpg"] and "flow_y_00004.jpg" in names
    assert "flow_x_00005.jpg" not in names and "flow_x_00000.jpg" not in names  # 5 frames -> 4 pairs, 1-based
    manifest = read_manifest(clip)
    assert manifest["algorithm"] == "tv-l1" and manifest["backend"] == "torch"
    assert manifest["index_base"] == 1 and manifest["prefix"] == "flow_" and manifest["bound"] == 20.0
    assert manifest["num_frames"] == 5 and manifest["num_flows"] == 4
    assert manifest["params"]["warps"] == 2 and manifest["params"]["lambda"] == 0.15
    assert manifest["vidact_version"]
    flows = read_flow(clip, [0, 3])
    assert flows.shape == (2, 2, 32, 32)
    assert count_flow(out / "clip2") == 4
    # The first clip moves its content left by 1 px per frame: flow x ~ -1 in the middle.
    mid = read_flow(clip, [1])[0, 0, 8:24, 8:24]
    assert np.median(mid) == pytest.approx(-1.0, abs=0.35)

    stamp = (clip / "flow.json").stat().st_mtime_ns
    again = extract_flow(videos, out, options=options)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 2, 1)
    assert (clip / "flow.json").stat().st_mtime_ns == stamp
    assert not any(p.name.endswith(".partial") for p in out.rglob("*"))


def test_batched_and_single_pair_extraction_agree(videos, tmp_path):
    one = extract_flow(videos / "clip2.mp4", tmp_path / "b1", options=FlowOptions(params=FAST, compile=False, batch=1))
    many = extract_flow(videos / "clip2.mp4", tmp_path / "b8", options=FlowOptions(params=FAST, compile=False, batch=8))
    assert one["done"] == many["done"] == 1
    np.testing.assert_array_equal(read_flow(tmp_path / "b1" / "clip2"), read_flow(tmp_path / "b8" / "clip2"))


def test_frame_folders_and_npz_format(tmp_path):
    src = tmp_path / "frames"
    write_frames(src / "v1", iter(_moving_clip(frames=4)))
    write_frames(src / "v2", iter(_moving_clip(frames=3, seed=3)))
    jobs = collect_flow_jobs(src)
    assert [j.rel for j in jobs] == ["v1", "v2"]
    result = extract_flow(src, tmp_path / "out", options=FlowOptions(backend="opencv", fmt="npz", params=FAST))
    assert result["done"] == 2
    folder = tmp_path / "out" / "v1"
    assert (folder / "flow.npz").is_file() and not list(folder.glob("*.jpg"))
    assert read_manifest(folder)["format"] == "npz" and count_flow(folder) == 3
    with np.load(folder / "flow.npz") as data:
        assert data["flow"].dtype == np.float16 and data["flow"].shape == (3, 2, 32, 32)


def test_gpu_and_torchrun_slices_cover_the_shard_exactly(monkeypatch):
    jobs = list(range(23))
    for shard in [(0, 1), (1, 3)]:
        for world in (1, 2, 4):
            parts = [take_shard(jobs, combine_shards(shard, r, world)) for r in range(world)]
            nested = [take_shard(take_shard(jobs, shard), (r, world)) for r in range(world)]
            assert parts == nested
            flat = sorted(x for p in parts for x in p)
            assert flat == take_shard(jobs, shard) and len(set(flat)) == len(flat)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launch_env().launched and launch_env().world_size == 1
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "6")
    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert launch_env() == LaunchEnv(rank=6, world_size=4, local_rank=2, local_world_size=4) and launch_env().launched
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two nodes of two processes
    assert launch_env().local_world_size == 2
    monkeypatch.setenv("WORLD_SIZE", "")  # set but empty, as some launchers leave it
    assert launch_env().world_size == 1


def test_cli_extract_show_and_usage_errors(cli, videos, tmp_path):
    out = tmp_path / "cli"
    r = cli("flow", "extract", videos, out, "--backend", "opencv", "--json")
    assert r.exit_code == 1  # partial failure: the broken video
    summary = json.loads(r.stdout)
    assert summary["done"] == 2 and summary["failed"] == 1
    assert "broken.mp4" in r.stderr and (out / "failures.txt").is_file()

    png = tmp_path / "show.png"
    r = cli("flow", "show", out / "clip2", "-o", png, "--json")
    assert r.exit_code == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json.loads(r.stdout)["pairs"] == 4
    import cv2

    assert cv2.imread(str(png)).shape == (32, 4 * 32 + 3 * 4, 3)  # 4 fields in one row, 4 px gaps

    mp4 = tmp_path / "show.mp4"
    r = cli("flow", "show", videos / "clip2.mp4", "-o", mp4, "--backend", "opencv", "--max-pairs", "3")
    assert r.exit_code == 0, r.stderr
    from vidact.io.video import probe

    info = probe(mp4)
    assert (info.num_frames, info.width, info.height) == (3, 32, 32)

    r = cli("flow", "extract", videos, out, "--backend", "magic")
    assert r.exit_code == 2 and "--backend must be one of torch, opencv" in r.stderr
    r = cli("flow", "show", out / "clip2", "-o", tmp_path / "x.gif")
    assert r.exit_code == 2 and "must end in .png" in r.stderr
    import torch

    if not torch.cuda.is_available():
        r = cli("flow", "extract", videos, tmp_path / "gpu", "--device", "cuda")
        assert r.exit_code == 2 and r.stderr.strip() == "error: --device cuda: no CUDA GPU is visible to torch"
    r = cli("flow", "extract", "--help")
    assert "Example:" in r.stdout
