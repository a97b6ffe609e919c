"""Process-group helpers; every function also works in a plain single process.

Launch with ``torchrun`` (one process per GPU, or several on CPU): it sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` (or a rendezvous
endpoint for many nodes), and :func:`init_from_env` joins the group: NCCL on CUDA, gloo on
CPU. Rank 0 logs and writes checkpoints; metrics are reduced over all ranks.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over all ranks (``t`` itself when not distributed)."""
    if not is_dist():
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / get_world_size()


@dataclass(frozen=True)
class LaunchEnv:
    """What ``torchrun`` tells a process in its environment (1 process, rank 0 when not launched by it)."""

    rank: int
    world_size: int
    local_rank: int
    restart_count: int = 0  # how often torchrun has restarted the group (--max-restarts) before this start
    local_world_size: int = 1  # processes on this node (they share its cores)

    @property
    def launched(self) -> bool:
        """True when torchrun started more than one process."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        return default


def launch_env() -> LaunchEnv:
    """``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and ``TORCHELASTIC_RESTART_COUNT`` as torchrun
    sets them; the only reader of those variables. Without ``LOCAL_WORLD_SIZE`` every process is taken to share
    this node."""
    local = _env_int("LOCAL_RANK", 0)
    world = max(1, _env_int("WORLD_SIZE", 1))
    return LaunchEnv(
        rank=_env_int("RANK", local),
        world_size=world,
        local_rank=local,
        restart_count=max(0, _env_int("TORCHELASTIC_RESTART_COUNT", 0)),
        local_world_size=max(1, _env_int("LOCAL_WORLD_SIZE", world)),
    )


def launched_rank() -> int:
    """The rank ``torchrun`` gave this process (``RANK``), also after the group is left; 0 otherwise."""
    return launch_env().rank


def get_local_rank() -> int:
    """This process's index on its node (``LOCAL_RANK`` from torchrun; 0 otherwise)."""
    return launch_env().local_rank


def default_backend() -> str:
    """NCCL when this process has a CUDA GPU, gloo otherwise (CPU training)."""
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def init_from_env(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the process group that ``torchrun`` describes in the environment; False when not launched so."""
    if is_dist():
        return True
    if not launch_env().launched:
        return False
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(get_local_rank())
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed (``model`` unchanged otherwise)."""
    if get_world_size() <= 1:
        return model
    ids = [device.index if device.index is not None else get_local_rank()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_dist():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over all ranks (``t`` itself when not distributed)."""
    if not is_dist():
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def reduce_counts(values: dict[str, float]) -> dict[str, float]:
    """Sum each value over all ranks (counts: correct predictions, clips, summed losses)."""
    if not is_dist() or not values:
        return dict(values)
    keys = sorted(values)
    summed = all_reduce_sum(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64))
    return dict(zip(keys, summed.tolist()))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (``obj`` itself when not distributed)."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Leave the process group (safe to call when not distributed)."""
    if is_dist():
        dist.destroy_process_group()
