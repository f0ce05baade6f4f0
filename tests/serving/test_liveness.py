"""Liveness and readiness are separate health answers: a dependency's outage (Redis for the
feature service, an upstream for the gateway) turns readiness ("" and the service name)
NOT_SERVING while "liveness" stays SERVING, so Kubernetes takes the pod out of the load
balancer instead of restarting it. Real Redis, real gRPC servers."""

from __future__ import annotations

import time

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from recsys.featurestore.layout import KeyLayout
from recsys.healthcheck import check
from recsys.redis_server import LocalRedis
from recsys.serving.config import Settings
from recsys.serving.server import LIVENESS, Service
from services.feature.server import SERVICE_NAME as FEATURE_SERVICE
from services.feature.server import connect_redis
from services.feature.server import create_server as feature_server
from services.gateway.server import SERVICE_NAME as GATEWAY_SERVICE
from services.gateway.server import create_server as gateway_server
from services.gateway.upstream import Upstreams
from services.model.server import SERVICE_NAME as MODEL_SERVICE
from tests.support.servers import ServiceThread, serving

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def status(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2.0).status


def ready_gauge(service: str) -> float | None:
    """recsys_ready of `service` in this process's registry (the in-process servers')."""
    return REGISTRY.get_sample_value("recsys_ready", {"service": service})


def wait_status(channel: grpc.Channel, service: str, wanted: int, timeout: float = 20.0):
    """Poll until `service`'s health is `wanted`; fail naming what it was."""
    deadline = time.monotonic() + timeout
    while (now := status(channel, service)) != wanted:
        assert time.monotonic() < deadline, f"{service!r} stayed {now}, wanted {wanted}"
        time.sleep(0.05)


def test_a_redis_outage_turns_readiness_off_and_liveness_stays_on(tmp_path):
    with LocalRedis(data_dir=tmp_path, appendonly=True) as server:
        with redis.Redis.from_url(server.url) as client:
            client.set(KeyLayout("recsys").active(), "20260101T000000000000Z")
        settings = Settings(feature_port=0, redis_url=server.url, redis_timeout_s=0.25)

        async def feature():
            return await feature_server(settings, connect_redis(settings))

        with serving(feature) as (running, channel):
            wait_status(channel, "", SERVING)
            assert status(channel, FEATURE_SERVICE) == SERVING
            assert status(channel, LIVENESS) == SERVING

            assert ready_gauge(FEATURE_SERVICE) == 1
            server.stop()  # Redis gone
            wait_status(channel, "", NOT_SERVING)
            assert status(channel, FEATURE_SERVICE) == NOT_SERVING
            assert ready_gauge(FEATURE_SERVICE) == 0  # what the dashboard and alerts read
            for _ in range(5):  # and it stays alive while the probes keep failing
                assert status(channel, LIVENESS) == SERVING
                time.sleep(0.2)
            # what the TLS component's exec probes run, here in plaintext
            assert check(running.address, LIVENESS) and not check(running.address)

            server.start()  # back, with its append-only data: ready again
            wait_status(channel, "", SERVING)
            assert status(channel, LIVENESS) == SERVING


def _bare(name: str = ""):
    """A factory of a real server with health only, SERVING under `name` too (the model
    channel's health-checked balancing asks the model service's name)."""

    async def build():
        service = Service(Settings(), [name] if name else [])
        service.bind(0)

        async def ready():
            return True

        service.watch_readiness(ready, every_s=0.1)
        return service

    return build


def test_an_upstream_outage_turns_the_gateways_readiness_off_and_liveness_stays_on():
    features = ServiceThread(_bare(FEATURE_SERVICE)).start()
    model = ServiceThread(_bare(MODEL_SERVICE)).start()
    try:
        settings = Settings(gateway_port=0, feature_addr=features.address, model_addr=model.address)

        async def gateway():
            return await gateway_server(settings, Upstreams.connect(settings))

        with serving(gateway) as (_, channel):
            wait_status(channel, "", SERVING)
            assert status(channel, GATEWAY_SERVICE) == SERVING
            assert status(channel, LIVENESS) == SERVING

            model.stop()  # the model service is gone
            wait_status(channel, "", NOT_SERVING)
            assert status(channel, GATEWAY_SERVICE) == NOT_SERVING
            for _ in range(5):
                assert status(channel, LIVENESS) == SERVING
                time.sleep(0.2)
    finally:
        model.stop()
        features.stop()


def test_stopping_turns_liveness_off_too():
    running = ServiceThread(_bare()).start()
    try:
        with grpc.insecure_channel(running.address) as channel:
            wait_status(channel, LIVENESS, SERVING)
            service = running.service
            running.run(service.health.enter_graceful_shutdown())  # the first step of stop()
            assert status(channel, LIVENESS) == NOT_SERVING
            assert status(channel, "") == NOT_SERVING
    finally:
        running.stop()
