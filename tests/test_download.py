"""vidact.io.download: cache location, atomic verified downloads over HTTP and file://, offline reuse."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers.local_server import Handler, LocalServer

from vidact.errors import DownloadError
from vidact.io.download import cache_dir, cached_name, fetch


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = LocalServer(root)
    yield root, server
    server.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("VIDACT_CACHE", str(folder))
    return folder


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_cache_dir_is_vidact_cache_else_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDACT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("VIDACT_CACHE")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert cache_dir() == tmp_path / "th" / "hub" / "checkpoints"


def test_http_download_is_cached_and_reused_offline(served, cache):
    root, server = served
    data = bytes(range(256)) * 5000
    (root / "w.pyth").write_bytes(data)
    url = server.url("w.pyth")
    first = fetch(url, progress=False)
    assert first.downloaded and not first.from_cache
    assert first.path.read_bytes() == data and first.sha256 == hashlib.sha256(data).hexdigest()
    assert first.path.parent == cache and first.path.name == cached_name(url)
    recorded = first.path.with_name(first.path.name + ".sha256").read_text().split()[0]
    assert recorded == first.sha256
    server.stop()
    second = fetch(url, progress=False)  # the server is gone: served from the cache
    assert second.from_cache and second.path == first.path and second.sha256 == first.sha256


def test_file_url_and_expected_sha256(tmp_path, cache):
    src = tmp_path / "weights.pt"
    src.write_bytes(b"abc" * 1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    got = fetch(src.as_uri(), sha256=digest[:8], progress=False)
    assert got.downloaded and got.path.read_bytes() == src.read_bytes()
    assert fetch(str(src), sha256=digest).path == src  # a plain path is read in place


def test_hash_mismatch_leaves_nothing_in_the_cache(served, cache):
    root, server = served
    (root / "w.pyth").write_bytes(b"x" * 4096)
    with pytest.raises(DownloadError, match=r"sha256 [0-9a-f]{16}\.\.\. does not match the expected 0badc0de") as err:
        fetch(server.url("w.pyth"), sha256="0badc0de", progress=False)
    assert "\n" not in str(err.value) and err.value.exit_code == 2
    assert _files(cache) == []


def test_truncated_download_leaves_nothing_in_the_cache(served, cache, monkeypatch):
    root, server = served
    (root / "w.pyth").write_bytes(b"y" * 100_000)
    monkeypatch.setitem(Handler.truncate, "w.pyth", 60_000)
    with pytest.raises(DownloadError, match=r"truncated download \(60000 of 100000 bytes\); nothing was cached"):
        fetch(server.url("w.pyth"), progress=False)
    assert _files(cache) == []


def test_cached_file_changed_after_the_first_download_is_refused(served, cache):
    root, server = served
    (root / "w.pyth").write_bytes(b"z" * 1000)
    got = fetch(server.url("w.pyth"), progress=False)
    got.path.write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="cached file has sha256 .* delete it to download again"):
        fetch(server.url("w.pyth"), progress=False)


def test_unreachable_server_is_one_line(served, cache):
    root, server = served
    url = server.url("missing.pyth")
    server.stop()
    with pytest.raises(DownloadError, match=r"cannot download .*nothing is cached for it"):
        fetch(url, progress=False)
    assert _files(cache) == []
