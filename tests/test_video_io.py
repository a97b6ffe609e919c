import numpy as np
import pytest

from vidact.data.synthetic import SynthConfig, clip_seed, generate, render_clip
from vidact.errors import VideoDecodeError
from vidact.io.video import decode_frames, decode_range, probe, short_side_size


def test_synth_is_deterministic_and_decodes_close_to_render(tmp_path):
    cfg = SynthConfig(classes=2, per_class=4, frames=12, size=32, seed=7)
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, cfg)
    generate(b, cfg)
    videos = sorted(p.relative_to(a) for p in a.rglob("*.mp4"))
    assert len(videos) == 8
    assert all((a / v).read_bytes() == (b / v).read_bytes() for v in videos)  # byte-identical encodes
    clip = "videos/move_right/move_right_0001.mp4"
    fa = decode_frames(a / clip, range(12))
    fb = decode_frames(b / clip, range(12))
    assert np.array_equal(fa, fb)
    rendered = render_clip("move_right", 12, 32, clip_seed(7, 1, 1))
    other = render_clip("move_right", 12, 32, clip_seed(7, 1, 0))
    err_same = np.abs(fa.astype(int) - rendered).mean()
    err_other = np.abs(fa.astype(int) - other).mean()
    assert err_same < 10 and err_same < err_other / 3  # lossy H.264 (4:2:0), but the same picture
    assert (a / "classes.txt").read_text().split() == ["move_left", "move_right"]
    assert (a / "train.csv").read_text().splitlines()[0] == "path,label"


def test_short_side_size_landscape_portrait_and_even():
    # (width, height) in, (width, height) out, whatever the orientation
    assert short_side_size(width=640, height=272, short_side=128) == (301, 128)
    assert short_side_size(width=272, height=640, short_side=128) == (128, 301)
    assert short_side_size(width=48, height=48, short_side=20) == (20, 20)
    assert short_side_size(width=20, height=12, short_side=6) == (10, 6)
    # encoders and frame extraction: both sides even (an odd short side too), at least 2
    assert short_side_size(width=640, height=272, short_side=128, even=True) == (302, 128)
    assert short_side_size(width=272, height=640, short_side=113, even=True) == (112, 266)
    assert short_side_size(width=1, height=1, short_side=1, even=True) == (2, 2)
    assert short_side_size(width=100, height=1, short_side=1) == (100, 1)
    with pytest.raises(TypeError):
        short_side_size(640, 272, 128)  # keywords only: the order cannot be mistaken


def test_probe_and_decode_real_clip(bikes_mp4):
    info = probe(bikes_mp4)
    assert (info.width, info.height, info.codec) == (640, 272, "h264")
    assert info.num_frames == 250 and info.fps == pytest.approx(25.0)
    frames = decode_frames(bikes_mp4, [200, 3, 3, 120])
    assert frames.shape == (4, 272, 640, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[1], frames[2])
    sequential = decode_frames(bikes_mp4, list(range(0, 201)))
    assert np.array_equal(frames[0], sequential[200])  # seeking lands on the same frame
    assert np.array_equal(frames[3], sequential[120])


def test_decode_range_counts_frames(bikes_mp4):
    clip = decode_range(bikes_mp4, 1.0, 2.0, size=(160, 68))
    assert clip.shape == (25, 68, 160, 3)


def test_bad_files_raise_named_errors(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    for path, reason in [(empty, "empty file"), (junk, "cannot open"), (tmp_path / "none.mp4", "no such file")]:
        with pytest.raises(VideoDecodeError) as err:
            probe(path)
        assert str(path) in str(err.value) and reason in str(err.value)


def test_frames_come_in_rgb_or_bgr_at_any_size(bikes_mp4):
    from vidact.io.video import iter_frames

    rgb = [f for _, f in zip(range(3), iter_frames(bikes_mp4, size=(302, 128)))]
    bgr = [f for _, f in zip(range(3), iter_frames(bikes_mp4, size=(302, 128), pixel_format="bgr24"))]
    assert rgb[0].shape == (128, 302, 3)
    assert all(np.array_equal(a, b[..., ::-1]) for a, b in zip(rgb, bgr))  # the same pixels, channels reversed
    full = decode_frames(bikes_mp4, [0, 1, 2])
    assert all(np.array_equal(a, b) for a, b in zip(iter_frames(bikes_mp4), full))  # sequential == indexed
    with pytest.raises(ValueError, match="pixel_format must be one of rgb24, bgr24"):
        next(iter_frames(bikes_mp4, pixel_format="gray"))
