"""Tests for recsys.data.download against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from recsys.data.download import (
    MARKER,
    RemoteDataset,
    default_cache_dir,
    download_dataset,
)
from recsys.errors import DownloadError, InvalidArgument

RATINGS = "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _make_zip(path: Path, members: dict[str, str]) -> str:
    """Write a zip holding `members` (name -> text) and return its md5."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return hashlib.md5(path.read_bytes()).hexdigest()


@dataclass
class Server:
    """A running file server for `root` and the "ml-test" dataset it serves."""

    root: Path
    httpd: ThreadingHTTPServer
    thread: threading.Thread
    md5: str
    stopped: bool = field(default=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def datasets(self, md5: str | None = None) -> dict[str, RemoteDataset]:
        return {"ml-test": RemoteDataset("ml-test", "ml-test.zip", md5 or self.md5, "ml-test")}

    def stop(self) -> None:
        if not self.stopped:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)
            self.stopped = True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "served"
    root.mkdir()
    md5 = _make_zip(root / "ml-test.zip", {"ml-test/ratings.dat": RATINGS})
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    srv = Server(root, httpd, thread, md5)
    yield srv
    srv.stop()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _download(server: Server, cache_dir: Path, **kwargs: object) -> Path:
    kwargs.setdefault("datasets", server.datasets())
    return download_dataset("ml-test", cache_dir, base_url=server.base_url, timeout=5, **kwargs)


def test_download_extracts_and_writes_marker(server: Server, cache_dir: Path) -> None:
    path = _download(server, cache_dir)
    assert path == cache_dir / "ml-test"
    assert (path / "ratings.dat").read_text() == RATINGS
    assert (path / MARKER).read_text().strip() == server.md5
    assert sorted(p.name for p in cache_dir.iterdir()) == ["ml-test"]


def test_download_shows_progress_on_stderr(
    server: Server, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _download(server, cache_dir, progress=True)
    err = capsys.readouterr().err
    progress = [line for line in err.splitlines() if line.startswith("ml-test.zip:")]
    assert progress and "100%" in progress[-1] and "\r" not in err
    _download(server, cache_dir, progress=False)  # cached: nothing to show either way
    assert capsys.readouterr().err == ""


def test_second_call_uses_cache_without_network(server: Server, cache_dir: Path) -> None:
    first = _download(server, cache_dir)
    server.stop()
    assert _download(server, cache_dir) == first
    assert (first / "ratings.dat").read_text() == RATINGS


def test_incomplete_folder_is_replaced(server: Server, cache_dir: Path) -> None:
    stale = cache_dir / "ml-test"
    stale.mkdir(parents=True)
    (stale / "leftover.dat").write_text("partial")
    path = _download(server, cache_dir)
    assert sorted(p.name for p in path.iterdir()) == [MARKER, "ratings.dat"]


def test_wrong_md5_leaves_nothing(server: Server, cache_dir: Path) -> None:
    with pytest.raises(DownloadError) as info:
        _download(server, cache_dir, datasets=server.datasets("0" * 32))
    message = str(info.value)
    assert "ml-test" in message and "0" * 32 in message and server.md5 in message
    assert list(cache_dir.iterdir()) == []


def test_http_404(server: Server, cache_dir: Path) -> None:
    (server.root / "ml-test.zip").unlink()
    with pytest.raises(DownloadError, match="404"):
        _download(server, cache_dir)
    assert list(cache_dir.iterdir()) == []


def test_zip_path_traversal_is_rejected(server: Server, cache_dir: Path, tmp_path: Path) -> None:
    md5 = _make_zip(
        server.root / "ml-test.zip",
        {"ml-test/ratings.dat": RATINGS, "../evil": "pwned"},
    )
    with pytest.raises(DownloadError, match="evil"):
        _download(server, cache_dir, datasets=server.datasets(md5))
    assert list(cache_dir.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    assert not list(tmp_path.rglob("evil"))


def test_zip_without_expected_folder(server: Server, cache_dir: Path) -> None:
    md5 = _make_zip(server.root / "ml-test.zip", {"other/ratings.dat": RATINGS})
    with pytest.raises(DownloadError, match="top-level folder"):
        _download(server, cache_dir, datasets=server.datasets(md5))
    assert list(cache_dir.iterdir()) == []


def test_unknown_name(server: Server, cache_dir: Path) -> None:
    with pytest.raises(InvalidArgument, match="ml-test") as info:
        download_dataset("nope", cache_dir, base_url=server.base_url, datasets=server.datasets())
    assert info.value.field == "dataset"
    assert not cache_dir.exists()


def test_connection_refused_fails_fast(server: Server, cache_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match=f"127.0.0.1:{port}") as caught:
        download_dataset(
            "ml-test",
            cache_dir,
            base_url=f"http://127.0.0.1:{port}/",
            timeout=2,
            datasets=server.datasets(),
        )
    # the refusal itself, at once: not a timeout after waiting on the socket
    assert "Connection refused" in str(caught.value) and "timed out" not in str(caught.value)
    assert list(cache_dir.iterdir()) == []


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("RECSYS_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "recsys"


def test_unresponsive_server_times_out(server: Server, cache_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # the kernel accepts the connection, but nobody ever answers
        port = sock.getsockname()[1]
        with pytest.raises(DownloadError, match="timed out"):
            download_dataset(
                "ml-test",
                cache_dir,
                base_url=f"http://127.0.0.1:{port}/",
                timeout=0.3,
                datasets=server.datasets(),
            )
    assert list(cache_dir.iterdir()) == []
