"""Frame folders and ``vidact frames extract``: layout, round trips, failures, resume, shards, fps."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vidact.data.annotations import load_dataset_dir
from vidact.data.extract_frames import resample
from vidact.data.synthetic import render_clip
from vidact.errors import VideoDecodeError
from vidact.io.frames import count_frames, frame_name, read_frames, write_frames
from vidact.io.jobs import VideoJob, run_video_jobs
from vidact.io.shard import take_shard
from vidact.io.video import decode_frames, write_video


def gradient_frames(n: int, h: int = 24, w: int = 40) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([x * 6 + 10 * t, y * 8, np.full_like(x, 40 * t)], -1) for t in range(n)]).astype(np.uint8)


def make_clip(path: Path, frames: int = 16, seed: int = 0, faststart: bool = False) -> Path:
    """A 32x32, 25 fps H.264 clip (``faststart`` puts the index first, as web videos do)."""
    import av

    clip = render_clip("move_right", frames, 32, seed)
    if not faststart:
        write_video(path, clip, fps=25)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for arr in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        container.mux(stream.encode())
    return path


def make_audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


# ---------------------------------------------------------------- io.frames


def test_frame_names_are_one_based():
    assert frame_name(0) == "img_00001.jpg"
    assert frame_name(41) == "img_00042.jpg"
    assert frame_name(0, prefix="x_", ext=".png") == "x_00001.png"
    with pytest.raises(ValueError):
        frame_name(-1)


def test_write_read_round_trip(tmp_path):
    frames = gradient_frames(3)
    assert write_frames(tmp_path / "v", iter(frames), quality=95) == 3
    (tmp_path / "v" / "notes.txt").write_text("not a frame")
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [
        "img_00001.jpg",
        "img_00002.jpg",
        "img_00003.jpg",
        "notes.txt",
    ]
    assert count_frames(tmp_path / "v") == 3
    got = read_frames(tmp_path / "v", [2, 0, 2])
    assert got.shape == (3, 24, 40, 3) and got.dtype == np.uint8
    assert np.abs(got[1].astype(int) - frames[0]).mean() < 2  # RGB order kept, JPEG loss small
    assert np.array_equal(got[0], got[2])


def test_read_frames_names_the_bad_file(tmp_path):
    folder = tmp_path / "v"
    write_frames(folder, gradient_frames(3))
    with pytest.raises(VideoDecodeError) as info:
        read_frames(folder, [0, 3])
    assert str(info.value) == f"{folder / 'img_00004.jpg'}: missing frame file"
    (folder / "img_00002.jpg").write_bytes((folder / "img_00002.jpg").read_bytes()[:100])
    with pytest.raises(VideoDecodeError) as info:
        read_frames(folder, [1])
    assert str(info.value) == f"{folder / 'img_00002.jpg'}: corrupt JPEG (truncated, no end marker)"
    (folder / "img_00003.jpg").write_bytes(b"garbage" * 10 + b"\xff\xd9")
    with pytest.raises(VideoDecodeError) as info:
        read_frames(folder, [2])
    assert str(info.value) == f"{folder / 'img_00003.jpg'}: corrupt image (cannot decode)"
    with pytest.raises(VideoDecodeError, match="frame folder not found"):
        count_frames(tmp_path / "nope")


def test_resample_picks_the_nearest_source_frame():
    assert list(resample(range(16), 25, 12.5)) == list(range(0, 16, 2))
    assert list(resample(range(10), 30, 10)) == [0, 3, 6, 9]
    assert list(resample(range(3), 10, 20)) == [0, 0, 1, 1, 2, 2]
    assert list(resample(range(1), 25, 5)) == [0]


# ---------------------------------------------------------------- frames extract


def test_synth_extract_round_trip(synth_dir, tmp_path, cli):
    out = tmp_path / "frames"
    r = cli("frames", "extract", synth_dir, out, "--list", synth_dir, "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert (result["done"], result["skipped"], result["failed"]) == (16, 0, 0)
    videos, frames = load_dataset_dir(synth_dir), load_dataset_dir(out)
    assert frames.classes == videos.classes
    for split in ("train", "val"):
        assert len(frames.split(split)) == len(videos.split(split))
        for v, f in zip(videos.split(split), frames.split(split)):
            assert Path(f.path) == out / Path(v.path).relative_to(synth_dir).with_suffix("")
            assert (f.label, f.num_frames) == (v.label, 16)
    sample = frames.split("val")[0]
    got = read_frames(sample.path, range(16))
    assert got.shape == (16, 32, 32, 3)
    ref = decode_frames(videos.split("val")[0].path, range(16))
    assert np.abs(got.astype(int) - ref).mean() < 6  # JPEG q95 of sharp-edged 32x32 frames


def test_bad_videos_are_reported_and_good_ones_finish(tmp_path, cli):
    src = tmp_path / "src"
    make_clip(src / "good.mp4")
    make_clip(src / "sub" / "one_frame.mp4", frames=1)
    data = make_clip(tmp_path / "whole.mp4").read_bytes()
    (src / "truncated.mp4").write_bytes(data[: len(data) // 2])
    cut = make_clip(tmp_path / "web.mp4", frames=50, faststart=True).read_bytes()
    (src / "cut_web.mp4").write_bytes(cut[: len(cut) * 6 // 10])
    (src / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (src / "empty.mp4").write_bytes(b"")
    make_audio_only(src / "audio.mp4")
    out = tmp_path / "out"
    r = cli("frames", "extract", src, out, "--workers", "2", "--json")
    assert r.exit_code == 1
    result = json.loads(r.stdout)
    assert (result["done"], result["failed"]) == (2, 5)
    reasons = dict(line.split("\t") for line in (out / "failures.txt").read_text().splitlines())
    assert sorted(reasons) == ["audio", "cut_web", "empty", "garbage", "truncated"]
    assert reasons["empty"] == f"{src / 'empty.mp4'}: empty file (0 bytes)"
    assert reasons["audio"] == f"{src / 'audio.mp4'}: no video stream"
    assert reasons["garbage"].startswith(f"{src / 'garbage.mp4'}: cannot open")
    assert reasons["truncated"].startswith(f"{src / 'truncated.mp4'}: cannot open")
    assert reasons["cut_web"].startswith(f"{src / 'cut_web.mp4'}: truncated: decoded ")
    assert count_frames(out / "good") == 16 and count_frames(out / "sub" / "one_frame") == 1
    assert sorted(p.name for p in out.iterdir()) == ["failures.txt", "good", "sub"]  # no half folders
    r = cli("frames", "extract", src, out)
    assert r.exit_code == 1 and f"failures listed in {out / 'failures.txt'}" in r.stdout


def test_rerun_skips_finished_and_redoes_interrupted(tmp_path, cli):
    src = tmp_path / "src"
    make_clip(src / "a.mp4")
    make_clip(src / "b.mp4", seed=1)
    out = tmp_path / "out"
    assert cli("frames", "extract", src, out).exit_code == 0
    (out / "a" / "marker").write_text("kept")
    shutil.rmtree(out / "b")  # as if the run was killed while writing b
    (out / ".b.partial").mkdir()
    write_frames(out / ".b.partial", gradient_frames(2))
    r = cli("frames", "extract", src, out, "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert (result["done"], result["skipped"], result["failed"]) == (1, 1, 0)
    assert (out / "a" / "marker").read_text() == "kept"
    assert not (out / ".b.partial").exists()
    assert count_frames(out / "b") == 16
    assert read_frames(out / "b", [0]).shape == (1, 32, 32, 3)


def test_shards_are_disjoint_and_cover_the_list(synth_dir, tmp_path, cli):
    items = list(range(10))
    slices = [take_shard(items, (i, 3)) for i in range(3)]
    assert sorted(sum(slices, [])) == items and all(set(a).isdisjoint(b) for a in slices for b in slices if a is not b)
    src = tmp_path / "src"
    for p in sorted((synth_dir / "videos").rglob("*.mp4"))[:5]:
        dest = src / p.relative_to(synth_dir / "videos")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    (src / "zz_garbage.mp4").write_bytes(b"\x00garbage" * 100)
    out = tmp_path / "out"

    def folders() -> set[str]:
        return {str(p.relative_to(out)) for p in out.glob("*/*") if p.is_dir()}

    per_shard, results = [], []
    for i in range(2):
        before = folders() if out.exists() else set()
        r = cli("frames", "extract", src, out, "--shard", f"{i}/2", "--json")
        results.append(json.loads(r.stdout))
        per_shard.append(folders() - before)
    assert [res["done"] + res["failed"] for res in results] == [3, 3]  # 6 inputs, sliced 3 + 3
    assert per_shard[0].isdisjoint(per_shard[1])
    assert per_shard[0] | per_shard[1] == {str(p.relative_to(src).with_suffix("")) for p in src.glob("*/*.mp4")}
    assert sorted(p.name for p in out.glob("failures*")) == ["failures.shard-1-of-2.txt"]
    r = cli("frames", "extract", src, out, "--json")  # unsharded: everything is already done
    assert json.loads(r.stdout)["skipped"] == 5
    assert cli("frames", "extract", src, out, "--shard", "2/2").exit_code == 2


def test_fps_halves_a_25fps_clip(tmp_path, cli):
    clip = make_clip(tmp_path / "clip.mp4")
    r = cli("frames", "extract", clip, tmp_path / "out", "--fps", "12.5")
    assert r.exit_code == 0, r.stderr
    assert count_frames(tmp_path / "out" / "clip") == 8
    got = read_frames(tmp_path / "out" / "clip", range(8))
    ref = decode_frames(clip, list(range(0, 16, 2)))
    assert np.abs(got.astype(int) - ref).mean() < 6  # JPEG q95 of sharp-edged 32x32 frames


def test_workers_default_to_the_usable_cores(tmp_path, cli):
    from vidact.io.cpu import usable_cores

    src = tmp_path / "src"
    for i in range(3):
        make_clip(src / f"clip{i}.mp4", seed=i)
    r = cli("frames", "extract", src, tmp_path / "out", "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    workers = min(usable_cores(), 3)  # one per core, no more than there are videos
    assert (result["done"], result["workers"]) == (3, workers)
    assert result["decoder_threads"] == max(1, usable_cores() // workers)
    one = json.loads(cli("frames", "extract", src / "clip0.mp4", tmp_path / "one", "--json").stdout)
    assert (one["workers"], one["decoder_threads"]) == (1, usable_cores())  # one video: every core decodes it
    assert (tmp_path / "out" / "clip0" / "img_00001.jpg").read_bytes() == (
        tmp_path / "one" / "clip0" / "img_00001.jpg"
    ).read_bytes()  # threads change the speed, never the output


def test_real_clip_short_side(bikes_mp4, tmp_path, cli):
    r = cli("frames", "extract", bikes_mp4, tmp_path / "out", "--short-side", "128", "--quality", "90", "--json")
    assert r.exit_code == 0, r.stderr
    folder = tmp_path / "out" / "bikes"
    assert count_frames(folder) == 250  # 10 s at 25 fps
    assert read_frames(folder, [0, 249]).shape == (2, 128, 302, 3)  # 640x272 -> even sizes


def test_usage_errors(tmp_path, cli):
    assert "Example:" in cli("frames", "extract", "--help").stdout
    r = cli("frames", "extract", tmp_path / "missing", tmp_path / "out")
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {tmp_path / 'missing'}: no such video file or folder"
    clip = make_clip(tmp_path / "c.mp4", frames=2)
    assert cli("frames", "extract", clip, tmp_path / "out", "--quality", "0").exit_code == 2
    assert cli("frames", "extract", clip, tmp_path / "out", "--shard", "x").exit_code == 2


def _crash_on_bad(src: Path, staging: Path) -> None:
    if src.stem == "bad":
        os._exit(3)  # a decoder segfault looks like this to the pool
    (staging / "done.txt").write_text(src.name)


def test_a_crashing_worker_fails_only_its_video(tmp_path):
    jobs = [VideoJob(tmp_path / f"{name}.mp4", name) for name in ("a", "bad", "c", "d")]
    report = run_video_jobs(jobs, tmp_path / "out", _crash_on_bad, workers=2)
    assert sorted(report.done) == ["a", "c", "d"]
    assert report.failed == [("bad", f"{tmp_path / 'bad.mp4'}: worker process crashed while processing this video")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "c", "d", "failures.txt"]
