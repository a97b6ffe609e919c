"""vidact predict on streams: standard input from another program, a local HTTP server, lavfi, cuts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.faultkit import encode_video, moving_frames
from helpers.local_server import Handler, LocalServer
from helpers.tiny_model import make_checkpoint

from vidact.io.stream import parse_source
from vidact.predict.predictor import load_predictor
from vidact.predict.stream import predict_windows

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ["move_left", "move_right", "move_up", "move_down"]
TESTS = str(Path(__file__).parent)
VIDACT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from helpers.tiny_model import register_tiny; "
    "register_tiny(); from vidact.cli.main import main; main(sys.argv[1:])"
)
WRITER = (
    "import sys; sys.path.insert(0, sys.argv[1]); from helpers.faultkit import encode_video, moving_frames; "
    "encode_video('pipe:1', moving_frames(int(sys.argv[2])), codec='mpeg4', fmt=sys.argv[3])"
)


@pytest.fixture
def ckpt(tmp_path):
    return make_checkpoint(tmp_path / "tiny.pt", CLASSES)


def _lines(stdout: str) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert [r["event"] for r in rows] == ["window"] * (len(rows) - 1) + ["end"]
    return rows[:-1], rows[-1]


def _windows(frames: int, window: int, hop: int) -> list[list[int]]:
    """[first, last] frame of every window: full windows every ``hop``, then one on the final frames."""
    spans = [[s, s + window - 1] for s in range(0, frames - window + 1, hop)]
    if spans[-1][1] != frames - 1:
        spans.append([frames - window, frames - 1])
    return spans


def test_a_lavfi_source_gives_its_windows_as_json_lines(cli, ckpt):
    # 2 s at 25 fps = 50 frames; windows of 10 frames every 5: 9 windows, the last ending on frame 49
    r = cli("predict", ckpt, "lavfi:testsrc=size=64x48:rate=25:duration=2", "--window", "0.4", "--hop", "0.2")
    assert r.exit_code == 0, r.stderr
    windows, end = _lines(r.stdout)
    assert [w["frames"] for w in windows] == _windows(50, 10, 5) and len(windows) == 9
    assert [w["window"] for w in windows] == list(range(9))
    assert [w["start"] for w in windows] == pytest.approx([0.2 * k for k in range(9)])
    assert all(len(w["top"]) == 4 and sum(t["prob"] for t in w["top"]) == pytest.approx(1.0, abs=1e-5) for w in windows)
    assert all(w["latency_ms"] >= 0 for w in windows)
    assert (end["windows"], end["frames"], end["fps"], end["exit_code"], end["ended"]) == (
        9,
        50,
        25.0,
        0,
        "end of stream",
    )
    assert end["window_frames"] == 10 and end["hop_frames"] == 5 and end["dropped_frames"] == 0
    assert set(end["latency_ms"]) == {"mean", "p50", "p95", "max"} and end["windows_per_second"] > 0


@pytest.mark.parametrize("fmt", ["mpegts", pytest.param("matroska", marks=pytest.mark.slow)])
def test_predict_reads_a_stream_piped_on_standard_input(ckpt, fmt):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, TESTS, "60", fmt], stdout=subprocess.PIPE)
    predict = [sys.executable, "-c", VIDACT, TESTS, "predict", str(ckpt), "-", "--window", "0.4", "--topk", "2"]
    result = subprocess.run(predict, stdin=writer.stdout, capture_output=True, text=True, timeout=300)
    writer.stdout.close()
    assert writer.wait(timeout=60) == 0
    assert result.returncode == 0, result.stderr
    windows, end = _lines(result.stdout)
    assert [w["frames"] for w in windows] == _windows(60, 10, 10)  # 6 windows of 10 frames at 25 fps
    assert all(len(w["top"]) == 2 for w in windows)
    assert (end["frames"], end["windows"], end["exit_code"]) == (60, 6, 0)


@pytest.fixture
def ts_server(tmp_path):
    encode_video(tmp_path / "clip.ts", moving_frames(60), codec="mpeg4", fmt="mpegts")
    server = LocalServer(tmp_path)
    yield server
    server.stop()
    Handler.truncate.clear()


def test_predict_on_a_local_http_stream(cli, ckpt, ts_server):
    r = cli("predict", ckpt, ts_server.url("clip.ts"), "--window", "0.4", "--hop", "0.4")
    assert r.exit_code == 0, r.stderr
    windows, end = _lines(r.stdout)
    assert [w["frames"] for w in windows] == _windows(60, 10, 10)
    assert (end["exit_code"], end["ended"], end["source"]) == (0, "end of stream", ts_server.url("clip.ts"))


def test_a_stream_cut_midway_keeps_its_windows_says_why_in_one_line_and_exits_1(cli, ckpt, ts_server, tmp_path):
    Handler.truncate["clip.ts"] = (tmp_path / "clip.ts").stat().st_size // 2  # the server stops half-way
    r = cli("predict", ckpt, ts_server.url("clip.ts"), "--window", "0.4")
    assert r.exit_code == 1
    windows, end = _lines(r.stdout)
    assert 1 <= len(windows) < 6 and end["windows"] == len(windows) and end["exit_code"] == 1
    assert [w["frames"] for w in windows][: len(windows) - 1] == _windows(60, 10, 10)[: len(windows) - 1]
    assert end["ended"].startswith(f"stream cut: {ts_server.url('clip.ts')}: ")
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("warning: stream cut: ") and r.stderr.rstrip().endswith(
        f"the {len(windows)} windows scored so far are kept"
    )


def test_a_live_source_drops_frames_instead_of_falling_behind(ckpt):
    predictor = load_predictor(ckpt, "cpu")
    model = predictor.model

    def slow(x):
        import time

        time.sleep(0.05)
        return model(x)

    predictor.model = slow
    source = parse_source("lavfi:testsrc=size=64x48:rate=25:duration=2")  # 50 frames, decoded in ~10 ms
    kept = predict_windows(predictor, source, window=0.04, live=False)  # one-frame windows, 50 ms each
    assert (kept.frames, kept.windows, kept.dropped_frames) == (50, 50, 0)
    live = predict_windows(predictor, source, window=0.04, live=True)
    assert live.dropped_frames > 0 and live.frames + live.dropped_frames == 50 and live.windows == live.frames


def test_stream_sources_and_their_errors(cli, ckpt):
    assert parse_source("-").url == "pipe:0" and parse_source("udp://127.0.0.1:5000").live
    assert parse_source("/dev/video0").format == "v4l2" and parse_source("lavfi:testsrc").format == "lavfi"
    assert not parse_source("http://host/a.ts").live and parse_source("clip.mp4").kind == "file"
    r = cli("predict", ckpt, "gopher://host/x")
    assert r.exit_code == 2 and "unsupported URL scheme 'gopher'" in r.stderr
    r = cli("predict", ckpt, "lavfi:")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    r = cli("predict", ckpt, "/dev/video97")
    assert r.exit_code == 1 and r.stderr.startswith("error: /dev/video97: ") and r.stderr.count("\n") == 1
    r = cli("predict", ckpt, "lavfi:testsrc=duration=1", "-o", "x.csv")
    assert r.exit_code == 2 and "a stream is scored per window" in r.stderr
    r = cli("predict", ckpt, "lavfi:testsrc=duration=1", "--input-option", "novalue")
    assert r.exit_code == 2 and "KEY=VALUE" in r.stderr
    assert torch.get_num_threads() == 1


def test_ctrl_c_ends_a_run_with_its_summary(ckpt):
    def stop_after_two(row: dict) -> None:
        if row["window"] == 1:
            raise KeyboardInterrupt

    source = parse_source("lavfi:testsrc=size=64x48:rate=25:duration=10")
    report = predict_windows(load_predictor(ckpt, "cpu"), source, window=0.4, on_window=stop_after_two)
    assert (report.windows, report.ended, report.exit_code) == (2, "interrupted", 130)
    assert report.frames >= 20 and set(report.latency_ms) == {"mean", "p50", "p95", "max"}
