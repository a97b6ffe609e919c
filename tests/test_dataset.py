"""VideoClipDataset and build_loader: videos, frame folders, flow, views, ClipSpec, bad samples."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from vidact.data import transforms
from vidact.data.annotations import Sample, load_dataset_dir
from vidact.data.dataset import ClipSpec, VideoClipDataset, detect_source, flow_folder_for
from vidact.data.loader import build_loader
from vidact.data.synthetic import render_clip
from vidact.errors import VidactError, VideoDecodeError
from vidact.io.flowio import write_flow_npz
from vidact.io.frames import read_frames, write_frames
from vidact.io.video import decode_frames, write_video

FLOW_X, FLOW_Y = 2.0, -1.0


@pytest.fixture(scope="module")
def splits(synth_dir):
    return load_dataset_dir(synth_dir)


@pytest.fixture(scope="module")
def frame_samples(splits, tmp_path_factory) -> list[Sample]:
    """The val videos written out as MMAction2 frame folders."""
    root = tmp_path_factory.mktemp("rawframes")
    out = []
    for s in splits.split("val"):
        folder = root / Path(s.path).stem
        write_frames(folder, decode_frames(s.path, range(16)), quality=100)
        out.append(Sample(str(folder), s.label))
    return out


@pytest.fixture(scope="module")
def flow_root(splits, synth_dir, tmp_path_factory) -> Path:
    """A flow.npz per val video, mirroring the data set layout: constant flow (2, -1) px."""
    root = tmp_path_factory.mktemp("flow")
    for s in splits.split("val"):
        rel = Path(s.path).relative_to(synth_dir).with_suffix("")
        flows = np.zeros((15, 2, 32, 32), np.float16)
        flows[:, 0], flows[:, 1] = FLOW_X, FLOW_Y
        write_flow_npz(root / rel, flows)
    return root


@pytest.fixture(scope="module")
def wide_video(tmp_path_factory) -> Path:
    """A 32x48 (landscape) clip, for three-crop positions."""
    path = tmp_path_factory.mktemp("wide") / "wide.mp4"
    write_video(path, np.ascontiguousarray(render_clip("move_left", 12, 48, seed=1)[:, 8:40]))
    return path


def test_train_items_from_videos(splits):
    ds = VideoClipDataset(splits.split("train"), num_frames=8, stride=2, crop_size=24)
    assert len(ds) == 12
    for i in (0, 5, 11):
        item = ds[i]
        assert item["video"].shape == (3, 8, 24, 24) and item["video"].dtype == torch.float32
        assert item["label"] == splits.split("train")[i].label and item["index"] == i and item["view"] == 0
    assert ds.skipped == 0


def test_label_mapping_follows_classes(splits):
    ds = VideoClipDataset(splits.split("val"), num_frames=4, crop_size=16, train=False)
    for i in range(len(ds)):
        item = ds[i]
        folder = Path(ds.samples[item["index"]].path).parent.name
        assert splits.classes[item["label"]] == folder


def test_frame_folders_match_videos(splits, frame_samples):
    kw = dict(num_frames=8, stride=2, crop_size=32, train=False, num_clips=2)
    from_video = VideoClipDataset(splits.split("val"), **kw)
    from_frames = VideoClipDataset(frame_samples, **kw)
    assert len(from_video) == len(from_frames) == 8
    for i in range(len(from_video)):
        a, b = from_video[i], from_frames[i]
        assert a["video"].shape == b["video"].shape == (3, 8, 32, 32)
        assert (a["label"], a["index"], a["view"]) == (b["label"], b["index"], b["view"])
        # JPEG (4:2:0 chroma) of the same decoded frames: ~3.5 grey levels of error
        assert (a["video"] - b["video"]).abs().mean() < 0.1
    # exact: 16 frames, span 15, so clip k holds frames k, k+2, ..., k+14
    for k in range(2):
        raw = torch.from_numpy(read_frames(frame_samples[1].path, range(k, 16, 2))).permute(3, 0, 1, 2)
        assert torch.allclose(from_frames[2 + k]["video"], transforms.normalize(raw), atol=1e-5)


def test_detect_source(splits, frame_samples, flow_root, tmp_path):
    assert detect_source(splits.split("val")[0].path) == "video"
    assert detect_source(frame_samples[0].path) == "frames"
    assert detect_source(next(flow_root.rglob("flow.npz")).parent) == "flow"
    with pytest.raises(VideoDecodeError, match="folder holds neither frames"):
        detect_source(tmp_path)
    with pytest.raises(VideoDecodeError, match="no such file or folder"):
        detect_source(tmp_path / "missing.mp4")


def test_test_views_are_clips_times_crops(wide_video):
    ds = VideoClipDataset(
        [Sample(str(wide_video), 1)], num_frames=4, stride=2, crop_size=32, train=False, num_clips=2, num_crops=3
    )
    assert len(ds) == 6
    assert [ds.view_of(i) for i in range(6)] == [(0, k, c) for k in range(2) for c in range(3)]
    raw = torch.from_numpy(decode_frames(wide_video, range(12))).permute(3, 0, 1, 2)
    clip_starts = [0, 5]  # 12 frames, span 7: uniform clips start at 0 and 5
    crop_lefts = [0, 8, 16]  # the short side is already 32: left, centre and right of 48 columns
    for i in range(6):
        item = ds[i]
        _, k, c = ds.view_of(i)
        assert item["view"] == i and item["index"] == 0 and item["label"] == 1
        clip = raw[:, clip_starts[k] : clip_starts[k] + 7 : 2, :, crop_lefts[c] : crop_lefts[c] + 32]
        expected = transforms.normalize(clip)
        assert torch.allclose(item["video"], expected, atol=1e-6)


def test_clipspec_key_overrides_shape(splits):
    ds = VideoClipDataset(splits.split("train"), num_frames=8, stride=2, crop_size=24)
    assert ds[(3, ClipSpec(num_frames=4, crop_size=16, stride=1))]["video"].shape == (3, 4, 16, 16)
    assert ds[(3, ClipSpec(num_frames=16, crop_size=28, stride=4))]["video"].shape == (3, 16, 28, 28)
    test = VideoClipDataset(splits.split("val"), crop_size=24, train=False, num_crops=3)
    assert test[(2, ClipSpec(2, 12, 1))]["video"].shape == (3, 2, 12, 12)


def test_seeded_and_epoch_dependent(splits):
    a = VideoClipDataset(splits.split("train"), num_frames=4, crop_size=16, seed=3)
    b = VideoClipDataset(splits.split("train"), num_frames=4, crop_size=16, seed=3)
    assert torch.equal(a[4]["video"], b[4]["video"])
    first = a[4]["video"]
    a.set_epoch(1)
    assert not torch.equal(a[4]["video"], first)


def test_samplers_all_produce_clips(splits):
    for sampler in ("random", "uniform", "tsn", "dense"):
        for train in (True, False):
            ds = VideoClipDataset(
                splits.split("val"), num_frames=5, crop_size=16, train=train, sampler=sampler, num_clips=2
            )
            assert ds[1]["video"].shape == (3, 5, 16, 16)


def test_corrupt_sample_is_replaced_and_counted(splits, tmp_path, caplog):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    samples = [Sample(str(bad), 3)] + splits.split("val")
    ds = VideoClipDataset(samples, num_frames=4, crop_size=16, train=False)
    with caplog.at_level(logging.WARNING, logger="vidact.data.dataset"):
        item = ds[0]
        ds[0]
    assert item["index"] != 0 and item["label"] == samples[item["index"]].label
    assert item["video"].shape == (3, 4, 16, 16)
    assert ds.skipped == 2  # every failed read counts
    warnings = [r.getMessage() for r in caplog.records if "garbage.mp4" in r.getMessage()]
    assert len(warnings) == 1 and "unreadable sample" in warnings[0]  # logged once
    assert torch.equal(ds[0]["video"], item["video"])  # the stand-in is chosen deterministically


def test_all_unreadable_raises_naming_files(tmp_path):
    paths = [tmp_path / f"bad{i}.mp4" for i in range(2)]
    for p in paths:
        p.write_bytes(b"")
    ds = VideoClipDataset([Sample(str(p), 0) for p in paths], max_retries=3, train=False)
    with pytest.raises(VidactError, match=r"3 unreadable samples in a row: .*bad\d\.mp4 \(empty file \(0 bytes\)\)"):
        ds[0]
    assert ds.skipped == 3


def test_skip_counter_is_shared_with_loader_workers(splits, tmp_path):
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(Path(splits.split("val")[0].path).read_bytes()[:200])
    samples = splits.split("val") + [Sample(str(bad), 0)]
    ds = VideoClipDataset(samples, num_frames=4, crop_size=16, train=False)
    loader = build_loader(ds, 5, train=False, workers=2)
    batches = list(loader)
    assert [b["video"].shape for b in batches] == [(5, 3, 4, 16, 16)]
    assert ds.skipped == 1


def test_flow_modality_from_npz(splits, synth_dir, flow_root):
    samples = [Sample(str(flow_folder_for(s.path, flow_root)), s.label) for s in splits.split("val")]
    test = VideoClipDataset(samples, modality="flow", num_frames=6, crop_size=32, train=False)
    x = test[0]["video"]
    assert x.shape == (2, 6, 32, 32)
    assert torch.allclose(x[0], torch.full_like(x[0], FLOW_X / transforms.FLOW_SCALE))
    assert torch.allclose(x[1], torch.full_like(x[1], FLOW_Y / transforms.FLOW_SCALE))
    # training: crops of a scaled-up field keep |x| (scaled) and flips negate x only
    train = VideoClipDataset(samples, modality="flow", num_frames=6, crop_size=24, scale_range=(24, 24))
    signs = set()
    for i in range(len(samples)):
        for epoch in range(4):
            train.set_epoch(epoch)
            x = train[i]["video"]
            assert x.shape == (2, 6, 24, 24)
            assert torch.allclose(x[1], torch.full_like(x[1], FLOW_Y * 24 / 32 / transforms.FLOW_SCALE), atol=1e-5)
            signs.add(round(float(x[0].mean()) / (FLOW_X * 24 / 32 / transforms.FLOW_SCALE)))
    assert signs == {-1, 1}
    no_flip = VideoClipDataset(samples, modality="flow", num_frames=6, crop_size=24, scale_range=(24, 24), hflip=False)
    for epoch in range(4):
        no_flip.set_epoch(epoch)
        assert all(float(no_flip[i]["video"][0].mean()) > 0 for i in range(len(samples)))


def test_flow_folder_for_mirrors_layout(splits, synth_dir, flow_root):
    path = splits.split("val")[0].path
    expected = flow_root / Path(path).relative_to(synth_dir).with_suffix("")
    assert flow_folder_for(path, flow_root) == expected
    assert flow_folder_for(path, flow_root, data_root=synth_dir) == expected


def test_rgb_plus_flow_returns_both_aligned(splits, flow_root):
    ds = VideoClipDataset(
        splits.split("val"), modality="rgb+flow", flow_root=flow_root, num_frames=4, stride=4, crop_size=24
    )
    item = ds[2]
    rgb, flow = item["video"]
    assert rgb.shape == (3, 4, 24, 24) and flow.shape == (2, 4, 24, 24)
    batch = next(iter(build_loader(ds, 2, train=True, workers=0)))
    assert [v.shape for v in batch["video"]] == [(2, 3, 4, 24, 24), (2, 2, 4, 24, 24)]
    missing = VideoClipDataset(
        splits.split("train")[:1] + splits.split("val"),
        modality="rgb+flow",
        flow_root=flow_root,
        num_frames=4,
        crop_size=24,
        train=False,
    )
    assert missing[0]["index"] != 0 and missing.skipped == 1  # train video has no flow folder


def test_rawframes_folder_with_frames_and_flow_side_by_side(splits, tmp_path):
    folder = tmp_path / "mixed"
    write_frames(folder, decode_frames(splits.split("val")[0].path, range(16)))
    flows = np.zeros((15, 2, 32, 32), np.float16)
    flows[:, 0] = FLOW_X
    write_flow_npz(folder, flows)
    sample = [Sample(str(folder), 2)]
    assert detect_source(folder) == "frames"
    rgb, flow = VideoClipDataset(sample, modality="rgb+flow", num_frames=4, crop_size=32, train=False)[0]["video"]
    assert rgb.shape == (3, 4, 32, 32) and flow.shape == (2, 4, 32, 32)
    assert torch.allclose(flow[0], torch.full_like(flow[0], FLOW_X / transforms.FLOW_SCALE))
    only_flow = VideoClipDataset(sample, modality="flow", num_frames=4, crop_size=32, train=False)
    assert only_flow[0]["video"].shape == (2, 4, 32, 32) and only_flow.skipped == 0


def test_loader_batches_and_determinism(splits):
    ds = VideoClipDataset(splits.split("train"), num_frames=4, crop_size=16)
    loader = build_loader(ds, 5, train=True, workers=0, seed=1)
    batches = list(loader)
    assert len(batches) == 2  # 12 items, drop_last in training
    b = batches[0]
    assert b["video"].shape == (5, 3, 4, 16, 16)
    assert b["label"].dtype == torch.int64 and b["index"].shape == (5,) and b["view"].tolist() == [0] * 5
    again = list(build_loader(ds, 5, train=True, workers=0, seed=1))
    assert torch.equal(again[0]["index"], b["index"]) and torch.equal(again[0]["video"], b["video"])
    test = build_loader(ds, 5, train=False, workers=0)
    assert [len(x["label"]) for x in test] == [5, 5, 2]
    assert torch.cat([x["index"] for x in test]).tolist() == list(range(12))


def test_loader_takes_a_batch_sampler_of_clipspec_keys(splits):
    ds = VideoClipDataset(splits.split("train"), num_frames=8, crop_size=24)
    shapes = [ClipSpec(2, 12, 4), ClipSpec(8, 24, 1)]
    batch_sampler = [[(i, shapes[b % 2]) for i in range(b * 4, b * 4 + 4)] for b in range(3)]
    loader = build_loader(ds, 4, train=True, workers=2, batch_sampler=batch_sampler)
    got = [tuple(x["video"].shape) for x in loader]
    assert got == [(4, 3, 2, 12, 12), (4, 3, 8, 24, 24), (4, 3, 2, 12, 12)]


def test_bad_arguments():
    s = [Sample("/nowhere.mp4", 0)]
    with pytest.raises(ValueError, match="modality must be one of rgb, flow, rgb\\+flow; got 'depth'"):
        VideoClipDataset(s, modality="depth")
    with pytest.raises(ValueError, match="sampler must be one of"):
        VideoClipDataset(s, sampler="nope")
