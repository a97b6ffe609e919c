"""Typed errors with exit codes; the CLI prints them as one line."""

from __future__ import annotations

import re
from pathlib import Path

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2

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
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(VidactError):
    """Bad arguments: unknown name, missing input file, invalid option value."""

    exit_code = EXIT_USAGE


class VideoDecodeError(VidactError):
    """A video that cannot be opened or decoded; names the file."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class AnnotationError(VidactError):
    """A malformed annotation entry, reported as ``file:line: reason``."""

    exit_code = EXIT_USAGE

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
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
