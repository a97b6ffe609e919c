"""Compiled or eager: the TV-L1 step through torch.compile with a recorded fallback, and whether to compile.

:class:`CompiledOrEager` wraps a function in ``torch.compile`` and falls back to eager, with one
warning line (:func:`warn_once`) and the reason kept for ``flow.json``, when compiling fails. A
CPU flow job compiles the step only when it saves more time than it costs (:func:`should_compile`).

Measured on a 2-core x86_64 CPU (torch 2.14.1, one thread, 340x256 real frames): the compiled
inner iteration solves a pair in ~0.30 s, the eager one in ~1.35 s, so compiling saves ~12 s per
megapixel-pair; compiling costs 13-20 s when Inductor's on-disk cache is cold and ~2 s (tracing
plus cache lookup) once it holds the code. The cache is shared by every process and run of the
same user, so a marker file next to it, written after a successful compiled solve, tells
whether the next job will find it warm. Both costs scale alike with the CPU's speed, so the
ratio that decides holds on other machines roughly as well.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from vidact.errors import first_line

log = logging.getLogger(__name__)

SAVING_S_PER_MPX_PAIR = 12.0  # eager minus compiled seconds per megapixel of one pair
COMPILE_COLD_S = 15.0
COMPILE_WARM_S = 2.5


# --------------------------------------------------------------------------- compile with fallback
_warned: set[str] = set()
warnings_enabled = True  # extraction workers turn this off; their parent warns once for all of them


def warn_once(message: str) -> None:
    """Log ``message`` as a warning the first time this process sees it."""
    if message not in _warned:
        _warned.add(message)
        if warnings_enabled:
            log.warning(message)


def compiler_available() -> bool:
    """torch.compile's CPU backend needs a C++ compiler."""
    return shutil.which("g++") is not None or shutil.which("c++") is not None or shutil.which("clang++") is not None


class CompiledOrEager:
    """``fn`` through ``torch.compile`` when asked; falls back to eager, once and for good, on failure.

    A fallback is never silent: one warning line with the cause, and ``reason`` keeps it for
    the outputs (``flow.json``, benchmark tables). ``backend`` is torch.compile's (tests pass a
    counting backend to check that nothing recompiles).
    """

    def __init__(self, fn: Callable, enable: bool, backend: str | Callable = "inductor", reason: str = ""):
        self.eager = fn
        self.fn = fn
        self.compiled = False
        self.reason = reason  # why it runs eagerly ("" when compiled)
        if enable:
            try:
                self.fn = torch.compile(fn, dynamic=True, backend=backend)
                self.compiled = True
            except Exception as exc:  # no inductor on this platform, unsupported Python, ...
                self._fall_back(f"torch.compile unavailable ({first_line(exc, with_type=True)})")

    def _fall_back(self, reason: str) -> None:
        self.fn, self.compiled, self.reason = self.eager, False, reason
        warn_once(f"{reason}; TV-L1 runs eagerly (about 4x slower on CPU)")

    def __call__(self, *args):
        if not self.compiled:
            return self.eager(*args)
        try:
            return self.fn(*args)
        except Exception as exc:  # compiler missing or crashing: the eager path gives the same result
            self._fall_back(f"torch.compile failed ({first_line(exc, with_type=True)})")
            return self.eager(*args)


# --------------------------------------------------------------------------- whether a CPU job compiles
def _marker() -> Path:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    solver_source = Path(__file__).with_name("tvl1.py").read_text()  # vidact.flow.tvl1, not imported (it imports us)
    key = hashlib.sha256((torch.__version__ + solver_source).encode()).hexdigest()[:16]
    return Path(cache_dir()) / f"vidact_tvl1_cpu_{key}.ok"


def cache_is_warm() -> bool:
    """Has a compiled TV-L1 step of this torch and this solver source been cached on disk?"""
    try:
        return _marker().is_file()
    except Exception:  # no inductor, unreadable cache dir: treat as cold
        return False


def mark_cache_warm() -> None:
    """Record that the on-disk cache now holds the compiled step (after it ran successfully)."""
    try:
        marker = _marker()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except Exception:  # a read-only cache dir only costs the next job a wrong (cold) guess
        pass


def should_compile(sizes: Iterable[tuple[int, int]], workers: int, warm: bool) -> tuple[bool, str]:
    """(compile?, why) for jobs given as (pairs, pixels per frame), run on ``workers`` processes.

    ``sizes`` may be a lazy iterable: it is read only until the job is known to be large enough.
    """
    cost = COMPILE_WARM_S if warm else COMPILE_COLD_S
    state = "warm" if warm else "cold"
    need = cost * max(1, workers)  # every worker pays the cost; the saving is summed over all of them
    saving = 0.0
    pairs = 0
    for n, pixels in sizes:
        pairs += n
        saving += n * pixels / 1e6 * SAVING_S_PER_MPX_PAIR
        if saving > need:
            return True, ""
    return False, (
        f"small job: compiling would save ~{saving / max(1, workers):.1f} s per worker "
        f"({pairs} pairs on {workers} workers) but cost ~{cost:.0f} s ({state} compile cache)"
    )


def job_sizes(
    sources: Iterable[Path], short_side: int | None, frame_count: Callable[[Path], tuple[int, int, int]]
) -> Iterable[tuple[int, int]]:
    """(pairs, pixels) per input from ``frame_count(src) -> (frames, width, height)``; unreadable ones count 0."""
    from vidact.io.video import short_side_size

    for src in sources:
        try:
            frames, width, height = frame_count(src)
        except Exception:  # a broken input costs nothing here; the job reports it
            continue
        size = (
            short_side_size(width=width, height=height, short_side=short_side, even=True)
            if short_side
            else (width, height)
        )
        yield max(0, frames - 1), size[0] * size[1]
