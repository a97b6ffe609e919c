"""Fetch a file named by a path or an ``http(s)://`` / ``file://`` URL into a local cache, verified.

The cache is ``$VIDACT_CACHE``, else ``checkpoints/`` in torch's hub folder (``$TORCH_HOME/hub``).
A URL is stored as ``<8 hex of sha256(url)>-<file name>``, so two URLs ending in the same name
never collide. A download goes to a temporary sibling and is renamed into place only when it is
complete (the ``Content-Length`` was received) and its SHA-256 matches the expected digest (a full
64-hex digest, or a prefix such as torchvision's 8 in ``googlenet-1378be20.pth``); a failed download
leaves nothing in the cache. Without an expected digest, the one measured at the first download is
recorded in ``<name>.sha256`` and every later use is checked against it. A cached file is used
without any network access.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from vidact.errors import DownloadError, first_line
from vidact.io.atomic import atomic_path, atomic_write_text
from vidact.io.progress import make_progress

CACHE_ENV = "VIDACT_CACHE"
CHUNK = 1 << 20
TIMEOUT_S = 60
_HEX = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass(frozen=True)
class Fetched:
    """Where a source ended up: ``path`` to read, its SHA-256, and whether it came from the cache."""

    source: str
    path: Path
    sha256: str
    url: str | None = None
    from_cache: bool = False
    downloaded: bool = False

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def cache_dir() -> Path:
    """``$VIDACT_CACHE``, else ``<torch hub dir>/checkpoints`` (torch's ``$TORCH_HOME/hub``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(str(source)).scheme in ("http", "https", "file")


def cached_name(url: str) -> str:
    """The cache file name of ``url``: 8 hex digits of the URL's SHA-256, then its file name."""
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name or "download"
    return f"{hashlib.sha256(url.encode()).hexdigest()[:8]}-{name}"


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_expected(expected: str | None) -> str | None:
    if not expected:
        return None
    expected = expected.strip().lower()
    if not _HEX.match(expected):
        raise DownloadError(f"expected sha256 {expected!r} is not 8 to 64 hex digits")
    return expected


def _matches(digest: str, expected: str | None) -> bool:
    return expected is None or digest.startswith(expected)


def fetch(
    source: str | Path, *, sha256: str | None = None, progress: bool | None = None, cache: str | Path | None = None
) -> Fetched:
    """A local file for ``source`` (a path or a URL), checked against ``sha256`` (full or prefix)."""
    expected = _check_expected(sha256)
    text = str(source)
    if not is_url(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise DownloadError(f"{path}: file not found")
        digest = sha256_of(path)
        if not _matches(digest, expected):
            raise DownloadError(f"{path}: sha256 {digest[:16]}... does not match the expected {expected}")
        return Fetched(text, path, digest)

    folder = Path(cache) if cache is not None else cache_dir()
    dest = folder / cached_name(text)
    record = dest.with_name(dest.name + ".sha256")
    if dest.is_file():
        digest = sha256_of(dest)
        recorded = record.read_text().split()[0] if record.is_file() else None
        want = expected or recorded
        if not _matches(digest, want):
            raise DownloadError(
                f"{dest}: cached file has sha256 {digest[:16]}..., expected {want}; delete it to download again"
            )
        return Fetched(text, dest, digest, url=text, from_cache=True)

    digest = _download(text, dest, expected, progress)
    atomic_write_text(record, f"{digest}  {dest.name}\n")
    return Fetched(text, dest, digest, url=text, downloaded=True)


def _download(url: str, dest: Path, expected: str | None, progress: bool | None) -> str:
    """Stream ``url`` to a temporary sibling of ``dest``; rename it when complete and verified."""
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)  # noqa: S310 (schemes checked by is_url)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(
            f"{url}: cannot download ({reason}); nothing is cached for it (cache: {dest.parent})"
        ) from None
    h = hashlib.sha256()
    received = 0
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        try:
            with (
                atomic_path(dest) as tmp,
                open(tmp, "wb") as f,
                make_progress(transient=True, disable=None if progress is not False else True) as bar,
            ):
                task = bar.add_task(f"download {dest.name.split('-', 1)[-1]}", total=total, status="")
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except http.client.IncompleteRead as exc:
                        raise DownloadError(
                            f"{url}: truncated download ({received + len(exc.partial)} of "
                            f"{total} bytes); nothing was cached"
                        ) from None
                    except OSError as exc:
                        raise DownloadError(
                            f"{url}: download failed after {received} bytes ({first_line(exc)})"
                        ) from None
                    if not chunk:
                        break
                    f.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    bar.update(task, advance=len(chunk))
                if total is not None and received != total:
                    raise DownloadError(f"{url}: truncated download ({received} of {total} bytes); nothing was cached")
                digest = h.hexdigest()
                if not _matches(digest, expected):
                    raise DownloadError(
                        f"{url}: sha256 {digest[:16]}... does not match the expected {expected}; nothing was cached"
                    )
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise DownloadError(f"{url}: cannot write to the cache {dest.parent} ({first_line(exc)})") from None
    return digest
