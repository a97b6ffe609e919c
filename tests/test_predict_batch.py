"""vidact predict CKPT SRC -o preds.csv|jsonl --features feats.npz: batch rows equal per-file predictions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from helpers.tiny_model import make_checkpoint

from vidact.predict.batch import collect_videos

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ["move_left", "move_right", "move_up", "move_down"]


@pytest.fixture
def ckpt(tmp_path):
    return make_checkpoint(tmp_path / "tiny.pt", CLASSES)


@pytest.fixture
def x3d_ckpt(tmp_path):
    """An untrained x3d-xs checkpoint (it has pre-logit features) at a tiny clip."""
    from vidact.models import create_model
    from vidact.runtime.checkpoint import save_checkpoint
    from vidact.train.config import load_config

    torch.manual_seed(0)
    cfg = load_config(arch="x3d-xs", frames=4, size=32, stride=2, dropout=0.0)
    model = create_model("x3d-xs", num_classes=len(CLASSES), dropout=0.0)
    inp = {"modality": "rgb", "channels": 3, "frames": 4, "size": 32, "stride": 2}
    path = tmp_path / "x3d.pt"
    save_checkpoint(path, arch="x3d-xs", classes=CLASSES, config=cfg.to_dict(), input=inp, model=model.state_dict())
    return path


def _videos(synth_dir) -> list:
    return sorted((synth_dir / "videos").rglob("*.mp4"))


def test_collect_videos_from_file_folder_and_lists(synth_dir, tmp_path):
    videos = _videos(synth_dir)
    assert collect_videos(synth_dir / "videos") == videos
    assert collect_videos(videos[0]) == [videos[0]]
    lst = tmp_path / "list.txt"
    lst.write_text("# two clips\n" + "\n".join(str(v) for v in videos[:2]) + "\n")
    assert collect_videos(lst) == videos[:2]
    assert len(collect_videos(synth_dir / "train.csv")) == sum(1 for _ in open(synth_dir / "train.csv")) - 1


def test_batch_rows_equal_per_file_predict_json(cli, ckpt, synth_dir, tmp_path):
    videos = _videos(synth_dir)[:3]
    lst = tmp_path / "some.txt"
    lst.write_text("\n".join(str(v) for v in videos))
    jsonl, table = tmp_path / "preds.jsonl", tmp_path / "preds.csv"
    assert cli("predict", ckpt, lst, "-o", jsonl, "--topk", "3", "--device", "cpu").exit_code == 0
    assert cli("predict", ckpt, lst, "-o", table, "--topk", "3", "--device", "cpu").exit_code == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    with open(table, newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["video"] for r in rows] == [str(v) for v in videos] == [r["path"] for r in csv_rows]
    for video, row, crow in zip(videos, rows, csv_rows):
        single = cli("predict", ckpt, video, "--topk", "3", "--json", "--device", "cpu")
        assert single.exit_code == 0
        assert row["top"] == json.loads(single.stdout)["top"]
        assert [crow[f"class_{i}"] for i in (1, 2, 3)] == [t["class"] for t in row["top"]]
        assert [float(crow[f"prob_{i}"]) for i in (1, 2, 3)] == pytest.approx([t["prob"] for t in row["top"]], abs=1e-6)


def test_unreadable_videos_go_to_failures_and_exit_1(cli, ckpt, synth_dir, tmp_path):
    folder = tmp_path / "vids"
    folder.mkdir()
    good = _videos(synth_dir)[0]
    (folder / "good.mp4").write_bytes(good.read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "out" / "preds.jsonl"
    res = cli("predict", ckpt, folder, "-o", out, "--device", "cpu")
    assert res.exit_code == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["video"] for r in rows] == [str(folder / "good.mp4")]
    failures = (out.parent / "failures.txt").read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith(str(folder / "broken.mp4") + ": ")
    assert "1 unreadable videos listed in" in res.stderr


def test_features_are_the_pooled_pre_logits(cli, x3d_ckpt, synth_dir, tmp_path):
    from vidact.predict.video import load_predictor, predict_with

    videos = sorted((synth_dir / "videos" / "move_left").glob("*.mp4"))
    feats = tmp_path / "feats.npz"
    res = cli(
        "predict", x3d_ckpt, synth_dir / "videos" / "move_left", "--features", feats, "--clips", "2", "--device", "cpu"
    )
    assert res.exit_code == 0, res.stderr
    data = np.load(feats)
    assert list(data["paths"]) == [str(v) for v in videos]
    p = load_predictor(x3d_ckpt, "cpu")
    assert data["features"].shape == (len(data["paths"]), p.model.num_features)
    one = predict_with(p, videos[0], clips=2, features=True)["features"]
    np.testing.assert_allclose(data["features"][0], one, rtol=1e-5, atol=1e-6)
    # they are what the classifier reads: the projection of the mean feature is the mean of the clips' logits
    from vidact.data import sampling
    from vidact.predict.video import _clip_tensor

    x = torch.stack([_clip_tensor(str(videos[0]), idx, p.view()) for idx in sampling.uniform_clips(16, 4, 2, 2)])
    with torch.no_grad():
        logits = p.model(x).mean(0)
        projected = p.model.head.projection(torch.from_numpy(one))
    torch.testing.assert_close(projected, logits, rtol=1e-4, atol=1e-5)


def test_bad_outputs_are_usage_errors(cli, ckpt, synth_dir, tmp_path):
    res = cli("predict", ckpt, synth_dir / "videos", "-o", tmp_path / "preds.txt")
    assert res.exit_code == 2 and "must end in .csv or .jsonl" in res.stderr
    res = cli("predict", ckpt, synth_dir / "videos", "--window", "1")
    assert res.exit_code == 2 and "--window scores one video" in res.stderr
