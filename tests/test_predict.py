"""vidact predict: top-k classes for a video file, whole and per time window."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.tiny_model import make_checkpoint

from vidact.predict.video import predict_video

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ["move_left", "move_right", "move_up", "move_down"]


@pytest.fixture
def ckpt(tmp_path):
    return make_checkpoint(tmp_path / "tiny.pt", CLASSES)


@pytest.fixture
def video(synth_dir):
    return synth_dir / "videos" / "move_up" / "move_up_0003.mp4"


def test_predict_whole_video_matches_the_model(ckpt, video):
    from vidact.data import sampling, transforms
    from vidact.io.video import decode_frames
    from vidact.runtime.build import model_from_checkpoint
    from vidact.runtime.checkpoint import load_checkpoint

    result = predict_video(ckpt, video, topk=4, clips=2, device="cpu")
    probs = [t["prob"] for t in result["top"]]
    assert sorted(t["class"] for t in result["top"]) == sorted(CLASSES)
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert result["frames"] == 16 and result["aggregation"] == "softmax-mean"

    # Same answer computed by hand: two uniform clips, scaled and centre-cropped, softmax, mean.
    model, inp = model_from_checkpoint(load_checkpoint(ckpt), ckpt, torch.device("cpu"))
    clips = []
    for idx in sampling.uniform_clips(16, inp.frames, inp.stride, 2):
        x = torch.from_numpy(decode_frames(str(video), idx)).permute(3, 0, 1, 2)
        clips.append(
            transforms.normalize(
                transforms.crop_at(transforms.short_side_scale(x, inp.size), inp.size, 0.5, 0.5),
                transforms.RGB_MEAN,
                transforms.RGB_STD,
            )
        )
    with torch.no_grad():
        expected = torch.softmax(model(torch.stack(clips)), 1).mean(0).numpy()
    got = np.array([next(t["prob"] for t in result["top"] if t["label"] == k) for k in range(4)])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_predicted_clip_is_the_datasets_test_view(video):
    from vidact.data import sampling, views
    from vidact.data.annotations import Sample
    from vidact.data.dataset import VideoClipDataset
    from vidact.predict.video import _clip_tensor

    ds = VideoClipDataset([Sample(str(video), 0)], num_frames=4, stride=2, crop_size=24, train=False, num_clips=3)
    for k, idx in enumerate(sampling.uniform_clips(16, 4, 2, 3)):
        assert torch.equal(_clip_tensor(str(video), idx, views.eval_view(24)), ds[k]["video"])


def test_predict_cli_windows(cli, ckpt, video):
    r = cli("predict", ckpt, video, "--topk", "2", "--window", "0.2", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    # 16 frames at 25 fps, windows of 5 frames: [0, 5), [5, 10), [10, 15), then the last 5 frames [11, 16)
    assert len(out["top"]) == 2 and len(out["windows"]) == 4
    assert [w["frames"] for w in out["windows"]] == [[0, 4], [5, 9], [10, 14], [11, 15]]
    assert [w["start"] for w in out["windows"]] == pytest.approx([0.0, 0.2, 0.4, 0.44])
    assert all(len(w["top"]) == 2 and w["top"][0]["prob"] >= w["top"][1]["prob"] for w in out["windows"])
    r = cli("predict", ckpt, video, "--topk", "1")
    assert r.exit_code == 0 and r.stdout.startswith(f"{video}: ")


def test_predict_errors(cli, ckpt, video, tmp_path):
    r = cli("predict", ckpt, tmp_path / "none.mp4")
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {tmp_path / 'none.mp4'}: video file not found"
    r = cli("predict", tmp_path / "none.pt", video)
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {tmp_path / 'none.pt'}: checkpoint not found"
    r = cli("predict", ckpt, video, "--window", "0")
    assert r.exit_code == 2 and "--window must be a positive number of seconds" in r.stderr


def test_windows_of_a_file_come_from_one_decoding_pass(ckpt, video, monkeypatch):
    import av

    import vidact.predict.video as predict_module

    opened, seeks = [], []
    real_open, real_decode = av.open, predict_module.decode_frames
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    monkeypatch.setattr(predict_module, "decode_frames", lambda *a, **k: seeks.append(a[1]) or real_decode(*a, **k))
    predict_video(ckpt, video, clips=2, device="cpu")
    whole = len(opened)  # probing and the two whole-video clips
    seeks.clear()
    result = predict_video(ckpt, video, window=0.04, clips=2, device="cpu")  # 16 one-frame windows
    assert len(result["windows"]) == 16 and len(seeks) == 2  # decode_frames: the two whole-video clips only
    assert len(opened) == 2 * whole + 1  # the windows: one more container, read front to back
