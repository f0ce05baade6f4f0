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


def train_version(
    data_dir: Path, model_dir: Path, settings: dict[str, object], preset: str | None = None
) -> None:
    """`recsys train` of `preset` (None: the default one) with `--set NAME=VALUE` for each
    setting, in a child process (TensorFlow stays out of the caller), writing a version to
    `model_dir`; raises CalledProcessError when training fails."""
    overrides = [arg for name, value in settings.items() for arg in ("--set", f"{name}={value}")]
    presets = [] if preset is None else ["--preset", preset]
    subprocess.run(
        [sys.executable, "-m", "recsys.cli", "train", "--data", str(data_dir)]
        + ["--model-dir", str(model_dir), *presets, *overrides],
        check=True,
        stdout=subprocess.DEVNULL,
    )


SMOKE_MODEL = {"encoding_size": 8, "max_epochs": 2}  # a model trained in seconds, for CI smokes


def bench_inputs(work: Path, data_dir: Path, model_dir: Path | None, *, smoke: bool):
    """(data directory, loaded data, model directory) of a benchmark run: with `smoke`,
    synthetic data written under `work`; without `model_dir`, the default preset trained
    under `work` (SMOKE_MODEL's settings with `smoke`)."""
    from recsys.data.movielens import load_movielens

    if smoke:
        from recsys.data.synthetic import write_synthetic_movielens

        data_dir = write_synthetic_movielens(work / "data")
    data = load_movielens(data_dir)
    if model_dir is None:
        model_dir = work / "models"
        print("training the default preset ...", flush=True)
        train_version(data_dir, model_dir, SMOKE_MODEL if smoke else {})
    return data_dir, data, model_dir


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
    """The three services (and Redis) as local processes. Ports 0 pick free ports.

    With `model_replicas` > 1 the model service runs that many processes ("model",
    "model-2", ...), and the gateway balances over them per call (round robin over an
    `ipv4:` address list). `stop_process` / `start_process` stop and start one of them (a
    restart or a crash in a fault test) with the environment it was started with."""

    model_dir: Path
    model_version: str = ""  # pin a version; empty: the newest in model_dir
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    redis_key_prefix: str = "recsys"
    redis_dir: Path | None = None  # where a Redis started here keeps its append-only file
    ports: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SERVICES})
    log_level: str = "WARNING"
    # more settings, e.g. MODEL_POLL_S (may hold tokens: not in the repr)
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    model_replicas: int = 1
    redis: LocalRedis | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # the environment of every service process (holds secrets: not in the repr)
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    @property
    def model_names(self) -> list[str]:
        """The model service's processes: "model", then "model-2", ... for replicas."""
        return ["model"] + [f"model-{n}" for n in range(2, self.model_replicas + 1)]

    @property
    def model_addr(self) -> str:
        """MODEL_ADDR of the gateway: one address, or an ipv4: list of the replicas."""
        if self.model_replicas == 1:
            return self.address("model")
        return "ipv4:" + ",".join(self.address(name) for name in self.model_names)

    def start_redis(self) -> str:
        if not self.redis_url:
            self.redis = LocalRedis(data_dir=self.redis_dir, appendonly=True).start()
            self.redis_url = self.redis.url
        return self.redis_url

    def start_services(self, timeout: float = 120.0) -> None:
        self.start_redis()
        for name in self.model_names:
            self.ports.setdefault(name, 0)
        self.ports = {s: p or free_port() for s, p in self.ports.items()}
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.redis_key_prefix,
            "MODEL_DIR": str(self.model_dir),
            "MODEL_VERSION": self.model_version,
            "FEATURE_PORT": str(self.ports["feature"]),
            "GATEWAY_PORT": str(self.ports["gateway"]),
            "FEATURE_ADDR": self.address("feature"),
            "MODEL_ADDR": self.model_addr,
            "BIND_HOST": "127.0.0.1",
            "LOG_LEVEL": self.log_level,
            **self.environment,
        }
        names = ["feature", *self.model_names, "gateway"]
        for name in names:
            self.start_process(name, wait_s=None)
        for name in names:
            wait_serving(self.address(name), timeout, self.processes[name], self.client_settings)
            log.info("%s service SERVING on %s", name, self.address(name))

    def start_process(self, name: str, wait_s: float | None = 120.0) -> subprocess.Popen:
        """Start the process `name` ("feature", "model", "model-2", "gateway") on its port;
        with `wait_s`, wait until its health says SERVING."""
        service = name.split("-")[0]
        env = {**self.env, f"{service.upper()}_PORT": str(self.ports[name])}
        process = subprocess.Popen([sys.executable, "-m", f"services.{service}.server"], env=env)
        self.processes[name] = process
        if wait_s is not None:
            wait_serving(self.address(name), wait_s, process, self.client_settings)
        return process

    @property
    def client_settings(self) -> Settings:
        """TLS settings of a client of the services (health checks), from their environment."""
        return Settings.from_env({k: v for k, v in self.env.items() if k.startswith("TLS_")})

    def stop_process(self, name: str, grace: float = 10.0, *, kill: bool = False) -> int | None:
        """SIGTERM the process `name` and wait for it (SIGKILL after `grace` seconds), or
        SIGKILL it at once with `kill=True`, as a crash would; returns its exit code."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        if kill:
            process.kill()
        else:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("%s service did not stop in %.0fs: killed", name, grace)
            process.kill()
            return process.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the gateway first (no new work), then the others; Redis last."""
        for name in sorted(self.processes, key=lambda n: n != "gateway"):
            self.stop_process(name, grace)
        if self.redis is not None:
            self.redis.cleanup()  # removes its directory only if it made a temporary one
            self.redis = None

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
