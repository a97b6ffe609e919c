import json

import numpy as np

from vidact.data.annotations import load_dataset_dir
from vidact.data.synthetic import MOTIONS, clip_seed, render_clip
from vidact.train.config import TrainConfig


def test_synthetic_set_forbids_horizontal_flip(synth_dir, tmp_path):
    assert json.loads((synth_dir / "dataset.json").read_text()) == {"horizontal_flip": False}
    assert load_dataset_dir(synth_dir).horizontal_flip is False
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "classes.txt").write_text("a\nb\n")
    (plain / "train.csv").write_text("path,label\nx.mp4,0\n")
    assert load_dataset_dir(plain).horizontal_flip is True
    assert TrainConfig().hflip == "auto"


def test_engine_dataset_follows_the_folder_unless_overridden(synth_dir):
    from vidact.train.data import build_data, config_input

    for mode, expected in (("auto", False), ("on", True), ("off", False)):
        cfg = TrainConfig(arch="c3d", data=str(synth_dir), frames=4, size=32, hflip=mode).validate()
        data = build_data(cfg, config_input(cfg))
        assert data.train_set.hflip is expected


def test_single_frames_carry_no_motion_class_but_pairs_do():
    """Mean frame statistics do not separate left from right; the frame-to-frame shift does."""
    left = render_clip("move_left", 6, 48, clip_seed(3, 0, 0))
    right = render_clip("move_right", 6, 48, clip_seed(3, 0, 0))
    assert np.array_equal(left[0], right[0])  # same seed: identical first frame for both classes
    assert not np.array_equal(left[3], right[3])
    assert len(MOTIONS) == 10


def test_frame_data_set_inherits_the_no_flip_option(synth_dir, tmp_path, cli):
    frames = tmp_path / "frames"
    r = cli("frames", "extract", synth_dir, frames, "--list", synth_dir)
    assert r.exit_code == 0, r.stderr
    assert load_dataset_dir(frames).horizontal_flip is False


def test_synth_cli_takes_the_style(tmp_path, cli):
    r = cli(
        "data",
        "synth",
        tmp_path / "n",
        "--classes",
        "2",
        "--per-class",
        "2",
        "--frames",
        "4",
        "--size",
        "32",
        "--style",
        "natural",
    )
    assert r.exit_code == 0, r.stderr
    assert json.loads((tmp_path / "n" / "synth.json").read_text())["style"] == "natural"
    r = cli("data", "synth", tmp_path / "x", "--style", "cartoon")
    assert r.exit_code == 2 and r.stderr.strip() == "error: style must be one of dots, natural"


def test_natural_style_is_deterministic_and_still_motion_only(tmp_path):
    """The natural style (multi-scale shapes and texture, camera drift) keeps the set's contract:
    same seed, same clip; the first frame is the same for every class; motion tells them apart."""
    import pytest

    from vidact.data.synthetic import SynthConfig, generate

    seed = clip_seed(5, 0, 0)
    left = render_clip("move_left", 8, 48, seed, style="natural")
    assert np.array_equal(left, render_clip("move_left", 8, 48, seed, style="natural"))
    right = render_clip("move_right", 8, 48, seed, style="natural")
    assert np.array_equal(left[0], right[0]) and not np.array_equal(left[4], right[4])
    assert not np.array_equal(left[0], render_clip("move_left", 8, 48, seed)[0])  # not the dots style
    still = render_clip("still", 8, 48, seed, style="natural")
    assert not np.array_equal(still[0], still[7])  # the camera drifts even when the objects do not move
    with pytest.raises(ValueError, match="style must be one of dots, natural"):
        SynthConfig(style="cartoon")
    with pytest.raises(ValueError, match="unknown style"):
        render_clip("still", 4, 32, seed, style="cartoon")
    generate(tmp_path / "n", SynthConfig(classes=2, per_class=2, frames=4, size=32, style="natural"))
    assert json.loads((tmp_path / "n" / "synth.json").read_text())["style"] == "natural"
    generate(tmp_path / "d", SynthConfig(classes=2, per_class=2, frames=4, size=32))
    assert "style" not in json.loads((tmp_path / "d" / "synth.json").read_text())  # older folders still resume
