"""Helpers for tests that fork torchrun-like ranks on the CPU (gloo)."""

from __future__ import annotations

import os
import socket

import torch
from torch import nn

from vidact.runtime import distributed


def free_port() -> int:
    """A TCP port on localhost nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_as_rank(rank: int, world: int, port: int) -> None:
    """Set torchrun's environment for ``rank`` of ``world``, one torch thread, and join the group."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    assert distributed.init_from_env()


def sub_batch_bn_net(seed: int) -> nn.Module:
    """conv, sub-batch BatchNorm, ReLU, pool, linear: 3-channel clips to 3 classes (initialised from ``seed``)."""
    from vidact.train.subbatch_bn import convert_sub_batch_norm

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv3d(3, 4, 3, padding=1),
        nn.BatchNorm3d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    convert_sub_batch_norm(model)
    return model
