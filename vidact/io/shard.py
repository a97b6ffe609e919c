"""Deterministic slicing of a work list for cluster job arrays (``--shard i/n``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from vidact.errors import UsageError

T = TypeVar("T")


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` with 0 <= i < n -> (i, n); None -> (0, 1)."""
    if not text:
        return 0, 1
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise UsageError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text}: need 0 <= i < n")
    return i, n


def take_shard(items: Sequence[T], shard: tuple[int, int]) -> list[T]:
    """Every n-th item starting at i; the union over i = 0..n-1 is the whole list."""
    i, n = shard
    return list(items[i::n])
