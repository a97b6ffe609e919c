"""vidact eval: multi-view scores, metrics, late fusion, and the checkpoint errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.tiny_model import make_checkpoint

from vidact.errors import CheckpointError, UsageError
from vidact.evaluate.fuse import fuse_scores, parse_weights
from vidact.evaluate.metrics import confusion_matrix, mean_class_accuracy, per_class_accuracy, topk_accuracy
from vidact.evaluate.multiview import ViewScores, aggregate, evaluate_checkpoint, evaluate_scores

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ["move_left", "move_right", "move_up", "move_down"]


@pytest.fixture
def ckpt(tmp_path):
    return make_checkpoint(tmp_path / "tiny.pt", CLASSES)


# ----------------------------------------------------------------------------- metrics and aggregation
def test_topk_and_confusion_known_values():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 1, 1])
    assert topk_accuracy(scores, labels, 1) == 0.5
    assert topk_accuracy(scores, labels, 2) == 1.0
    assert topk_accuracy(scores, labels, 5) == 1.0  # k capped at the class count
    conf = confusion_matrix(scores.argmax(1), labels, 3)
    assert conf.tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    acc = per_class_accuracy(conf)
    assert acc[0] == 1.0 and acc[1] == pytest.approx(1 / 3) and np.isnan(acc[2])
    assert mean_class_accuracy(conf) == pytest.approx((1 + 1 / 3) / 2)


def _views(logits, labels, video, classes=("a", "b")):
    n = len(labels)
    return ViewScores(
        np.array(logits, dtype=np.float32), np.array(labels), np.array(video), np.arange(n) % 2, list(classes)
    )


def test_softmax_then_mean_and_logit_mean():
    scores = _views([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 1.0]], [0, 0, 1, 1], [7, 7, 3, 3])
    agg = aggregate(scores, "softmax-mean")
    assert agg.video.tolist() == [3, 7] and agg.labels.tolist() == [1, 0]
    s = lambda a, b: np.exp([a, b]) / np.exp([a, b]).sum()  # noqa: E731
    np.testing.assert_allclose(agg.scores[1], (s(2, 0) + s(0, 1)) / 2, rtol=1e-6)
    np.testing.assert_allclose(agg.scores[0], (s(0, 3) + s(1, 1)) / 2, rtol=1e-6)
    np.testing.assert_allclose(aggregate(scores, "logit-mean").scores, [[0.5, 2.0], [1.0, 0.5]])
    report = evaluate_scores(scores)
    assert (report["clip_top1"], report["video_top1"], report["views_per_video"]) == (0.5, 1.0, 2)


# ----------------------------------------------------------------------------- multi-view testing
def test_multiview_scores_equal_mean_of_single_views(synth_dir, ckpt, tmp_path):
    from vidact.data.annotations import load_dataset_dir
    from vidact.data.dataset import VideoClipDataset
    from vidact.runtime.build import model_from_checkpoint
    from vidact.runtime.checkpoint import load_checkpoint

    npz = tmp_path / "scores.npz"
    report = evaluate_checkpoint(
        ckpt, synth_dir, clips=2, crops=3, batch_size=5, save_scores=npz, out_dir=tmp_path, progress=False
    )
    saved = ViewScores.load(npz)
    assert saved.logits.shape == (4 * 2 * 3, 4) and report["views"] == 24 and report["videos"] == 4
    assert sorted(np.bincount(saved.video)) == [6, 6, 6, 6] and set(saved.view) == set(range(6))

    # Every view alone, batch size 1, straight from the dataset.
    model, inp = model_from_checkpoint(load_checkpoint(ckpt), ckpt, torch.device("cpu"))
    ds = VideoClipDataset(
        load_dataset_dir(synth_dir).split("val"),
        num_frames=inp.frames,
        stride=inp.stride,
        crop_size=inp.size,
        train=False,
        num_clips=2,
        num_crops=3,
    )
    single = {}
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            single.setdefault(item["index"], []).append(model(item["video"][None])[0])
    np.testing.assert_allclose(
        saved.logits, torch.stack([v for k in sorted(single) for v in single[k]]).numpy(), atol=1e-5
    )
    expected = np.stack([torch.softmax(torch.stack(single[k]), 1).mean(0).numpy() for k in sorted(single)])
    np.testing.assert_allclose(aggregate(saved).scores, expected, atol=1e-6)
    labels = aggregate(saved).labels
    assert report["video_top1"] == pytest.approx(float((expected.argmax(1) == labels).mean()))
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def test_eval_cli_json(cli, synth_dir, ckpt, tmp_path):
    r = cli("eval", ckpt, "--data", synth_dir, "--clips", "2", "--out", tmp_path, "--json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["aggregation"] == "softmax-mean" and report["videos"] == 4 and report["views"] == 8
    assert [row["class"] for row in report["per_class"]] == CLASSES
    assert sum(row["support"] for row in report["per_class"]) == 4
    for key in ("clip_top1", "clip_top5", "video_top1", "video_top5", "mean_class_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    r = cli("eval", ckpt, "--data", synth_dir, "--out", tmp_path)
    assert r.exit_code == 0 and "video top-1" in r.stdout and "move_left" in r.stdout


# ----------------------------------------------------------------------------- fusion
def test_fusion_known_values():
    # rgb: sure and right on video 0, a tie (read as class 0, wrong) on video 1;
    # flow: slightly wrong on video 0, sure and right on video 1. Together both are right.
    rgb = _views([[4.0, 0.0], [2.0, 0.0], [0.2, 0.0], [0.0, 0.2]], [0, 0, 1, 1], [0, 0, 1, 1])
    flow = _views([[0.0, 0.5], [0.0, 0.5], [0.0, 4.0], [0.0, 4.0]], [0, 0, 1, 1], [0, 0, 1, 1])
    equal = fuse_scores([rgb, flow], [1.0, 1.0])
    expected = (aggregate(rgb).scores + aggregate(flow).scores) / 2
    assert [i["video_top1"] for i in equal["inputs"]] == [0.5, 0.5]
    np.testing.assert_allclose(equal["fused_scores"], expected)
    assert equal["fused_top1"] == 1.0
    rgb_heavy = fuse_scores([rgb, flow], [1.0, 0.0])
    assert rgb_heavy["fused_top1"] == 0.5


def test_fusion_refuses_different_videos():
    a = _views([[1.0, 0.0], [0.0, 1.0]], [0, 1], [0, 1])
    b = _views([[1.0, 0.0], [0.0, 1.0]], [0, 1], [0, 2])
    with pytest.raises(UsageError, match="must score the same videos"):
        fuse_scores([a, b], [1.0, 1.0], names=["a.npz", "b.npz"])
    with pytest.raises(UsageError, match="--weights has 3 values for 2 score files"):
        parse_weights("1,2,3", 2)


def test_fuse_cli(cli, tmp_path):
    a = _views([[4.0, 0.0], [2.0, 0.0], [0.2, 0.0], [0.0, 0.2]], [0, 0, 1, 1], [0, 0, 1, 1]).save(tmp_path / "a.npz")
    b = _views([[0.0, 0.5], [0.0, 0.5], [0.0, 4.0], [0.0, 4.0]], [0, 0, 1, 1], [0, 0, 1, 1]).save(tmp_path / "b.npz")
    r = cli("eval", "fuse", a, b, "--weights", "1,1.5", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["weights"] == [1.0, 1.5] and out["fused_top1"] == 1.0 and out["videos"] == 2
    r = cli("eval", "fuse", a, tmp_path / "missing.npz")
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {tmp_path / 'missing.npz'}: scores file not found"


# ----------------------------------------------------------------------------- errors
def test_class_count_mismatch(cli, synth_dir, tmp_path):
    five = make_checkpoint(tmp_path / "five.pt", CLASSES + ["rotate_cw"])
    r = cli("eval", five, "--data", synth_dir)
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {five}: checkpoint has 5 classes but {synth_dir} has 4"


def test_truncated_checkpoint(cli, synth_dir, ckpt, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[:2000])
    r = cli("eval", cut, "--data", synth_dir)
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {cut}: truncated or corrupt checkpoint")
    assert len(r.stderr.strip().splitlines()) == 1


class Payload:
    def __reduce__(self):
        return (print, ("this would run at load time",))


def test_checkpoint_with_pickled_code_is_refused(cli, synth_dir, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "vidact-checkpoint", "payload": Payload()}, evil)
    r = cli("eval", evil, "--data", synth_dir)
    assert r.exit_code == 2
    assert r.stderr.strip().startswith(f"error: {evil}: refused: the file holds pickled Python objects")
    assert "this would run" not in r.stdout


def test_other_files_are_not_checkpoints(tmp_path):
    from vidact.runtime.checkpoint import load_checkpoint

    plain = tmp_path / "state.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a vidact checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_eval_missing_data(cli, ckpt, tmp_path):
    r = cli("eval", ckpt, "--data", tmp_path / "nowhere")
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {tmp_path / 'nowhere'}: data folder not found"
