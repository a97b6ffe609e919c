"""The CPU cores this process may use, and how processes that work side by side share them."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """CPU cores this process may run on (affinity / cgroup cpuset aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def threads_per_process(cores: int, processes: int) -> int:
    """Threads each of ``processes`` processes may run so that together they fit ``cores`` (at least 1)."""
    return max(1, cores // max(1, processes))
