"""Every registered architecture accepts every multigrid shape (meta device: shapes only, no compute)."""

from __future__ import annotations

import pytest
import torch

from vidact.models.registry import create_model, get_entry, model_names
from vidact.train.multigrid import long_cycle_shapes, short_cycle_shapes
from vidact.train.subbatch_bn import convert_sub_batch_norm


def _multigrid_shapes(frames: int, size: int) -> list[tuple[int, int]]:
    """(T, crop) of every iteration shape of long+short at the default input (frames, size)."""
    shapes = []
    for t, s, _ in long_cycle_shapes(frames, size):
        shapes += [(t, sc.size) for sc in short_cycle_shapes(s)]
    return sorted(set(shapes))


def _meta_model(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        model = create_model(name, num_classes=7)
    convert_sub_batch_norm(model)
    return model


def test_multigrid_shapes_of_a_default_input():
    # long cycle (4, 79), (8, 79), (8, 112), (16, 112), each with short-cycle crops 0.5·S and sqrt(0.5)·S
    assert _multigrid_shapes(16, 112) == [
        (4, 40),
        (4, 56),
        (4, 79),
        (8, 40),
        (8, 56),
        (8, 79),
        (8, 112),
        (16, 56),
        (16, 79),
        (16, 112),
    ]


@pytest.mark.parametrize("name", model_names())
def test_architecture_accepts_the_smallest_multigrid_shape(name):
    entry = get_entry(name)
    frames, size = _multigrid_shapes(entry.input.frames, entry.input.size)[0]
    model = _meta_model(name).eval()
    with torch.no_grad():
        assert tuple(model(entry.example_input(2, frames, size, device="meta")).shape) == (2, 7)


@pytest.mark.slow
@pytest.mark.parametrize("name", model_names())
def test_architecture_accepts_every_multigrid_shape(name):
    entry = get_entry(name)
    model = _meta_model(name).train()
    for frames, size in _multigrid_shapes(entry.input.frames, entry.input.size):
        x = entry.example_input(16, frames, size, device="meta")  # 16 clips: 2 sub-batch BN splits
        assert tuple(model(x).shape) == (16, 7), (frames, size)
