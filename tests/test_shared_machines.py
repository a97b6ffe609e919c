"""Files on shared machines: what vidact writes honours the umask, and a full disk is one clear line."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.tiny_model import TINY, register_tiny

from vidact.errors import DiskFullError, disk_full_cause
from vidact.io import atomic

pytestmark = pytest.mark.usefixtures("one_thread")


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _modes(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    files, dirs = {}, {}
    for folder, subdirs, names in os.walk(root):
        for d in subdirs:
            dirs[os.path.join(folder, d)] = os.stat(os.path.join(folder, d)).st_mode & 0o777
        for n in names:
            files[os.path.join(folder, n)] = os.stat(os.path.join(folder, n)).st_mode & 0o777
    return files, dirs


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_file_and_folder_honours_the_umask(cli, tmp_path, umask):
    register_tiny()
    old = os.umask(umask)
    try:
        data, frames, run = tmp_path / "data", tmp_path / "frames", tmp_path / "run"
        args = ("--classes", "2", "--per-class", "2", "--frames", "10", "--size", "32")
        assert cli("data", "synth", data, *args).exit_code == 0
        assert cli("frames", "extract", data, frames, "--list", data, "--workers", "1").exit_code == 0
        assert cli("data", "index", data, "--format", "folder", "--out", tmp_path / "index").exit_code == 0
        flow = ("flow", "extract", data / "videos", tmp_path / "flow", "--short-side", "32", "--no-compile")
        assert cli(*flow, "--workers", "1").exit_code == 0
        r = cli("train", "--arch", TINY, "--data", data, "--out", run, "--epochs", "1", "--batch-size", "2")
        assert r.exit_code == 0, r.stderr
    finally:
        os.umask(old)
    files, dirs = _modes(tmp_path)
    written = {Path(p).name for p in files}
    assert {"classes.txt", "train.csv", "val.csv", "dataset.json", "last.pt", "best.pt", "config.toml"} <= written
    assert {"env.json", "metrics.jsonl", "curves.png", "img_00001.jpg", "flow_x_00001.jpg", "flow.json"} <= written
    assert any(p.endswith(".mp4") for p in files)
    assert set(files.values()) == {0o666 & ~umask}, {p: oct(m) for p, m in files.items() if m != 0o666 & ~umask}
    assert set(dirs.values()) == {0o777 & ~umask}
    if umask == 0o022:
        assert 0o600 not in files.values()
    else:
        assert not [p for p, m in files.items() if m & 0o077], "readable by others under umask 077"


def test_the_umask_is_read_without_being_changed():
    old = os.umask(0o027)
    try:
        assert atomic.current_umask() == 0o027 and atomic.file_mode() == 0o640
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)


def test_an_atomic_write_on_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    dest = tmp_path / "config.toml"
    atomic.atomic_write_text(dest, "old = 1\n")
    monkeypatch.setattr(atomic.os, "fsync", _no_space)  # a full disk often shows first at fsync
    with pytest.raises(DiskFullError) as err:
        atomic.atomic_write_text(dest, "new = 2\n")
    assert str(err.value).startswith(f"{dest}: disk full (No space left on device)")
    assert "\n" not in str(err.value) and err.value.exit_code == 1
    assert dest.read_text() == "old = 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # no temporary file left


def test_a_torch_save_on_a_full_disk_names_the_disk_not_the_zip_writer(tmp_path, monkeypatch):
    import torch

    dest = tmp_path / "last.pt"
    atomic.atomic_torch_save({"epoch": 1}, dest)
    real_open = open

    class FullAfter:
        """A file that takes 1 KB, then fails like a full disk (torch turns that into a RuntimeError)."""

        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 1024:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr("builtins.open", lambda p, mode="r", *a, **k: FullAfter(real_open(p, mode, *a, **k)))
    with pytest.raises(DiskFullError, match=f"^{dest}: disk full"):
        atomic.atomic_torch_save({"weights": torch.zeros(10_000)}, dest)
    monkeypatch.undo()
    assert torch.load(dest, weights_only=True) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_disk_full_error_survives_a_process_pool_and_is_found_behind_others():
    import pickle

    err = pickle.loads(pickle.dumps(DiskFullError("/x/y", OSError(errno.ENOSPC, "No space left on device"))))
    assert isinstance(err, DiskFullError) and err.path == "/x/y" and str(err).startswith("/x/y: disk full")
    inner = OSError(errno.EDQUOT, "Disk quota exceeded")
    try:
        try:
            raise inner
        except OSError as exc:
            raise RuntimeError("unexpected pos 202560 vs 202456") from exc
    except RuntimeError as outer:
        assert disk_full_cause(outer) is inner
    assert disk_full_cause(OSError(errno.EACCES, "Permission denied")) is None


def test_frame_extraction_stops_at_the_first_full_disk_error(cli, synth_dir, tmp_path, monkeypatch):
    from vidact.io import frames

    out = tmp_path / "frames"
    real_write = Path.write_bytes
    written = []

    def write_until_full(self, data):
        if self.name.startswith(frames.PREFIX):
            if len(written) >= 40:  # two clips of 16 frames fit, the third does not
                raise OSError(errno.ENOSPC, "No space left on device")
            written.append(self)
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_until_full)
    r = cli("frames", "extract", synth_dir, out, "--list", synth_dir, "--workers", "1")
    monkeypatch.undo()
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and "disk full (No space left on device)" in lines[0]
    done = [p for p in out.rglob("*") if p.is_dir() and any(p.glob("img_*.jpg"))]
    assert len(done) == 2 and all(len(list(p.glob("img_*.jpg"))) == 16 for p in done)
    assert not [p for p in out.rglob("*") if p.name.endswith((".partial", ".tmp"))]
    assert len(written) == 40  # it stopped: the remaining 13 clips were never tried


def _unshare() -> list[str]:
    tool = shutil.which("unshare")
    if tool is None:
        pytest.skip("no unshare(1) to mount a small tmpfs")
    probe = subprocess.run([tool, "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("user and mount namespaces are not allowed here")
    return [tool, "--user", "--map-root-user", "--mount"]


def test_on_a_real_small_tmpfs(synth_dir, tmp_path):
    """A 400 KB tmpfs in a private mount namespace: a checkpoint that does not fit, then frame extraction."""
    small = tmp_path / "small"
    small.mkdir()
    script = textwrap.dedent(
        f"""
        import json, os, subprocess, sys, torch
        from vidact.errors import DiskFullError
        from vidact.io.atomic import atomic_torch_save
        small = {str(small)!r}
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "none", small], check=True)
        out = {{}}
        atomic_torch_save({{"w": torch.zeros(1000)}}, small + "/last.pt")
        try:
            atomic_torch_save({{"w": torch.zeros(200_000)}}, small + "/last.pt")
        except DiskFullError as exc:
            out["checkpoint"] = str(exc)
        out["kept"] = torch.load(small + "/last.pt", weights_only=True)["w"].numel()
        out["after_checkpoint"] = sorted(os.listdir(small))
        r = subprocess.run([sys.executable, "-m", "vidact", "frames", "extract", {str(synth_dir)!r},
                            small + "/frames", "--list", {str(synth_dir)!r}, "--workers", "1"],
                           capture_output=True, text=True)
        out["frames_rc"], out["frames_err"] = r.returncode, r.stderr.strip().splitlines()
        out["leftovers"] = [n for _, ds, fs in os.walk(small) for n in ds + fs if n.endswith((".partial", ".tmp"))]
        print(json.dumps(out))
        """
    )
    r = subprocess.run([*_unshare(), sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["checkpoint"].startswith(f"{small}/last.pt: disk full")
    assert out["kept"] == 1000 and out["after_checkpoint"] == ["last.pt"]
    assert out["frames_rc"] == 1 and len(out["frames_err"]) == 1 and "disk full" in out["frames_err"][0]
    assert out["leftovers"] == []


def _full_for(name: str):
    """An ``os.fsync`` that fails like a full disk for temporary files of ``name`` only."""
    real_fsync = os.fsync

    def fsync(fd):
        with_name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) if os.path.exists("/proc/self/fd") else ""
        if with_name.startswith(f".{name}."):
            _no_space()
        return real_fsync(fd)

    return fsync


def test_data_synth_on_a_full_disk_stops_with_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.os, "fsync", _full_for("move_left_0001.mp4"))
    out = tmp_path / "synth"
    r = cli("data", "synth", out, "--classes", "2", "--per-class", "3", "--frames", "8", "--size", "32")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and "move_left_0001.mp4: disk full" in lines[0]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_checkpoint_on_a_full_disk_keeps_the_previous_one(cli, synth_dir, tmp_path, monkeypatch):
    import torch

    register_tiny()
    run = tmp_path / "run"
    base = ("train", "--arch", TINY, "--data", synth_dir, "--out", run, "--batch-size", "4")
    assert cli(*base, "--epochs", "1").exit_code == 0
    before = torch.load(run / "last.pt", weights_only=True)
    monkeypatch.setattr(atomic.os, "fsync", _full_for("last.pt"))
    r = cli(*base, "--epochs", "2", "--resume")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and lines[-1].startswith(f"error: {run / 'last.pt'}: disk full"), r.stderr
    after = torch.load(run / "last.pt", weights_only=True)
    assert after["epoch"] == before["epoch"] == 1
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def _torn_write_for(name: str):
    """An ``os.write`` that writes half of what it is given to a file called ``name``, then fails like a full disk."""
    real_write = os.write

    def write(fd, data):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == name:
            real_write(fd, bytes(data[: len(data) // 2]))
            _no_space()
        return real_write(fd, data)

    return write


def test_an_appended_log_line_on_a_full_disk_is_cut_back_and_named(tmp_path, monkeypatch):
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    log = tmp_path / "metrics.jsonl"
    atomic.append_line(log, '{"step": 1}')
    monkeypatch.setattr(atomic.os, "write", _torn_write_for("metrics.jsonl"))
    with pytest.raises(DiskFullError, match=f"^{log}: disk full"):
        atomic.append_line(log, '{"step": 2, "loss": 0.5}')
    assert log.read_text() == '{"step": 1}\n'  # the half-written line was cut off


# (command writing the file, the file that meets the full disk); each: one line naming it, exit 1, no temporaries
_TRAIN = ("train", "--arch", TINY, "--epochs", "1", "--batch-size", "4")
_WRITERS = [
    ("index", "train.csv"),
    ("flow", "flow.json"),
    ("train", "config.toml"),
    ("train", "metrics.jsonl"),
    ("train", "best.pt"),
    ("train", "curves.png"),
]


@pytest.mark.parametrize(("command", "name"), _WRITERS)
def test_each_writer_on_a_full_disk_is_one_line(cli, synth_dir, tmp_path, monkeypatch, command, name):
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    register_tiny()
    out = tmp_path / "out"
    args = {
        "index": ("data", "index", synth_dir, "--format", "folder", "--out", out),
        "flow": ("flow", "extract", synth_dir / "videos", out, "--short-side", "32", "--no-compile", "--workers", "1"),
        "train": (*_TRAIN, "--data", synth_dir, "--out", out),
    }[command]
    if name.endswith(".jsonl"):
        monkeypatch.setattr(atomic.os, "write", _torn_write_for(name))
    else:
        monkeypatch.setattr(atomic.os, "fsync", _full_for(name))
    r = cli(*args)
    monkeypatch.undo()
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and f"{name}: disk full (No space left on device)" in lines[-1], r.stderr
    assert lines[-1].startswith("error: ") and not [line for line in lines if "Traceback" in line]
    if command == "flow":
        assert len(lines) == 1  # the run stopped at the first video: one line, not one per video
        assert not [p for p in out.rglob("flow.json")]
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    if name.endswith(".jsonl"):
        assert all(json.loads(line) for line in (out / name).read_text().splitlines())  # no torn line
