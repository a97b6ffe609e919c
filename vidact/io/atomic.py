"""Atomic writes: write to a temporary sibling, then rename into place."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vidact.errors import DiskFullError, disk_full_cause


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: read by setting, and put it back at once
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (0o644 under umask 022)."""
    return 0o666 & ~current_umask()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")  # what atomic_path names its temporary files


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder``; returns them.

    Temporary names carry the writer's pid (``.NAME.PID.<random>.tmp``); only files whose writer
    is no longer running are removed, so a concurrent live writer is never disturbed.
    """
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            m = _TEMP_NAME.match(entry.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_running(int(m.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``dest``; on success fsync it and rename it to ``dest``.

    The file gets the mode ``open()`` would give it (the umask applies). Leftovers of killed writers
    in the same folder are removed first. A full disk or quota is one :class:`DiskFullError`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600; the file gets what open() would give it
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync_file(tmp_path)  # the bytes reach the disk before the name does (a full disk shows here too)
        os.replace(tmp_path, dest)
        _fsync_dir(dest.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        full = disk_full_cause(exc)
        if full is not None and not isinstance(exc, DiskFullError):
            raise DiskFullError(dest, full) from None
        raise


class _WriteErrors:
    """A file wrapper that keeps the ``OSError`` of a failed write: torch's zip writer replaces it with
    a RuntimeError ("unexpected pos ...") that no longer says the disk is full."""

    def __init__(self, f):
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def atomic_write_bytes(dest: str | Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(dest: str | Path, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_torch_save(obj, dest: str | Path) -> None:
    """``torch.save`` that never leaves a truncated file at ``dest``."""
    import torch

    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            tracked = _WriteErrors(f)
            try:
                torch.save(obj, tracked)
            except RuntimeError as exc:
                if tracked.error is not None:
                    raise tracked.error from exc
                raise


def append_line(path: str | Path, line: str, *, sync: bool = False) -> None:
    """Append ``line`` (a newline is added) to a log file, whole or not at all.

    A failed write (a full disk) cuts the file back to its old length, so no torn line is left, and
    a full disk or quota is one :class:`DiskFullError` naming ``path``. ``sync`` fsyncs the file.
    """
    path = Path(path)
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)  # the umask applies, as for open()
    try:
        start = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            if sync:
                os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            full = disk_full_cause(exc)
            if full is not None:
                raise DiskFullError(path, full) from None
            raise
    finally:
        os.close(fd)


def tmp_dir_for(dest: str | Path) -> Path:
    """The staging folder name used by :func:`atomic_dir` for ``dest``."""
    dest = Path(dest)
    return dest.parent / f".{dest.name}.partial"


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces ``dest`` in one rename.

    A stale staging folder from an interrupted run is removed first, so a killed
    job never leaves a half-written ``dest`` behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir_for(dest)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        full = disk_full_cause(exc)
        if full is not None and not isinstance(exc, DiskFullError):
            raise DiskFullError(dest, full) from None
        raise
