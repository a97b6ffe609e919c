"""Helpers for tests that fork torchrun-like ranks on the CPU (gloo)."""

from __future__ import annotations

import os
import socket

import torch

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
