"""Typed errors with exit codes; the CLI prints them as one line."""

from __future__ import annotations

import errno
import re
from pathlib import Path

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
# A run that stopped on a signal (SIGTERM, SIGUSR1, SIGINT) after saving its exact position: rerunning
# the same command with --resume continues it. sysexits.h's EX_TEMPFAIL ("temporary failure, the user
# is invited to retry"): distinct from failure (1), bad usage (2) and a death by signal (128 + N, 143
# for SIGTERM), so a batch script, or SLURM's RequeueExit=75, requeues on it alone.
EXIT_PREEMPTED = 75

# Terminal control sequences (colours, cursor moves) that a library may put in its messages.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|[\x00-\x08\x0b-\x1f\x7f]")


def strip_control(text: str) -> str:
    """``text`` without terminal control sequences (ANSI colours and the like)."""
    return _CONTROL.sub("", text)


def first_line(exc: BaseException, *, with_type: bool = False) -> str:
    """The first non-empty line of ``exc``'s message, control codes stripped; the type name when empty.

    ``with_type`` prefixes ``TypeName: `` (for errors whose type says what went wrong).
    """
    lines = [line.strip() for line in strip_control(str(exc)).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return f"{type(exc).__name__}: {lines[0]}" if with_type else lines[0]


class VidactError(Exception):
    """Base error: a message fit for one line and the exit code it maps to."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(strip_control(message))  # a library's text inside never colours a terminal
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(VidactError):
    """Bad arguments: unknown name, missing input file, invalid option value."""

    exit_code = EXIT_USAGE


class VideoDecodeError(VidactError):
    """A video that cannot be opened or decoded; names the file."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = strip_control(reason)
        super().__init__(f"{path}: {reason}")


class AnnotationError(VidactError):
    """A malformed annotation entry, reported as ``file:line: reason``."""

    exit_code = EXIT_USAGE

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = strip_control(reason)
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {reason}")


class TrainingDiverged(VidactError):
    """The training loss became NaN or infinite: a runtime failure (exit 1), not bad usage."""

    exit_code = 1


class CheckpointError(VidactError):
    """A checkpoint that is missing, truncated, unsafe or for another model."""

    exit_code = EXIT_USAGE


class DownloadError(VidactError):
    """A download that failed, was truncated or does not match its expected SHA-256; nothing was cached."""

    exit_code = EXIT_USAGE


# errno values that mean "no room left": the disk is full, or the user's quota is spent.
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def disk_full_cause(exc: BaseException | None) -> OSError | None:
    """The full-disk or over-quota ``OSError`` behind ``exc`` (itself, or its cause/context), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class DiskFullError(VidactError):
    """Writing ``path`` failed because its disk (or the user's quota) is full: exit 1, nothing half-written."""

    exit_code = 1

    def __init__(self, path: str | Path, cause: OSError | str | None = None):
        self.path = str(path)
        reason = cause if isinstance(cause, str) else (cause.strerror if cause is not None else None)
        self.reason = reason or "No space left on device"
        super().__init__(
            f"{path}: disk full ({self.reason}); nothing was half-written and finished outputs are kept: "
            f"free space (or raise the quota) and rerun"
        )

    def __reduce__(self):  # survives a process pool (the default reduction would pass the message as path)
        return (DiskFullError, (self.path, self.reason))
