"""Fixtures of the fault suite: ``faults`` makes any bad input in a fresh temporary folder;
``trained_run`` is one tiny trained run (tiny3d, 1 epoch) shared by the checkpoint tests."""

from __future__ import annotations

import pytest
from helpers.faultkit import Faults

TRAIN_ARGS = (
    "--arch",
    "tiny3d",
    "--epochs",
    "1",
    "--batch-size",
    "2",
    "--frames",
    "4",
    "--size",
    "16",
    "--device",
    "cpu",
    "--deterministic",
    "--seed",
    "0",
)


def report_lines(stderr: str) -> list[str]:
    """The lines of a training run's stderr after its one-line data loading report."""
    return [line for line in stderr.splitlines() if not line.startswith("data loading: ")]


@pytest.fixture
def faults(tmp_path) -> Faults:
    return Faults(tmp_path / "faults")


@pytest.fixture(scope="session")
def tiny_arch() -> str:
    from helpers.tiny_model import register_tiny

    return register_tiny()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_arch):
    """(data set folder, run folder) of a 1-epoch tiny3d run on a clean 4+2 clip data set."""
    from vidact.train.config import load_config
    from vidact.train.engine import train

    root = tmp_path_factory.mktemp("trained")
    data = Faults(root).dataset("data")
    run = root / "run"
    cfg = load_config(
        None,
        [],
        arch=tiny_arch,
        data=str(data),
        out=str(run),
        epochs=1,
        batch_size=2,
        frames=4,
        size=16,
        device="cpu",
        deterministic=True,
        seed=0,
    )
    train(cfg, progress=False)
    return data, run
