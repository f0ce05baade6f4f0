"""Run the whole system on one machine: Redis (started here unless a REDIS_URL is given),
then the feature, model and gateway services as child processes, each waited for until its
health says SERVING; stopped cleanly (SIGTERM, grace, then Redis) on exit."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsys.redis_server import LocalRedis, free_port
from recsys.serving import tls
from recsys.serving.config import Settings

log = logging.getLogger(__name__)

SERVICES = ("feature", "model", "gateway")


def wait_channel_serving(
    channel: grpc.Channel,
    timeout: float,
    process: subprocess.Popen | None = None,
    service: str = "",
) -> None:
    """Block until the health check on `channel` (of `service`, default the server) answers
    SERVING; fail early if `process`, the server's process, exits."""
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{service or 'the server'} did not become SERVING in {timeout:.0f}s"
            )
        time.sleep(0.05)


def wait_serving(
    address: str,
    timeout: float,
    process: subprocess.Popen | None = None,
    settings: Settings | None = None,
) -> None:
    """Block until the gRPC health check at `address` answers SERVING (TLS per `settings`)."""
    with tls.sync_channel(address, settings or Settings()) as channel:
        wait_channel_serving(channel, timeout, process)


@dataclass
class LocalStack:
    """The three services (and Redis) as local processes. Ports 0 pick free ports."""

    model_dir: Path
    model_version: str = ""  # pin a version; empty: the newest in model_dir
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    redis_key_prefix: str = "recsys"
    redis_dir: Path | None = None  # where a Redis started here keeps its append-only file
    ports: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SERVICES})
    log_level: str = "WARNING"
    # more settings, e.g. MODEL_POLL_S (may hold tokens: not in the repr)
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    redis: LocalRedis | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def start_redis(self) -> str:
        if not self.redis_url:
            self.redis = LocalRedis(data_dir=self.redis_dir, appendonly=True).start()
            self.redis_url = self.redis.url
        return self.redis_url

    def start_services(self, timeout: float = 120.0) -> None:
        self.start_redis()
        self.ports = {s: p or free_port() for s, p in self.ports.items()}
        env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.redis_key_prefix,
            "MODEL_DIR": str(self.model_dir),
            "MODEL_VERSION": self.model_version,
            "FEATURE_PORT": str(self.ports["feature"]),
            "MODEL_PORT": str(self.ports["model"]),
            "GATEWAY_PORT": str(self.ports["gateway"]),
            "FEATURE_ADDR": self.address("feature"),
            "MODEL_ADDR": self.address("model"),
            "BIND_HOST": "127.0.0.1",
            "LOG_LEVEL": self.log_level,
            **self.environment,
        }
        for service in SERVICES:
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}.server"], env=env
            )
        client = Settings.from_env({k: v for k, v in env.items() if k.startswith("TLS_")})
        for service in SERVICES:
            wait_serving(self.address(service), timeout, self.processes[service], client)
            log.info("%s service SERVING on %s", service, self.address(service))

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the gateway first (no new work), then the others; Redis last."""
        for service in reversed(SERVICES):
            process = self.processes.pop(service, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s service did not stop in %.0fs: killed", service, grace)
                process.kill()
                process.wait()
        if self.redis is not None:
            self.redis.cleanup()  # removes its directory only if it made a temporary one
            self.redis = None

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
