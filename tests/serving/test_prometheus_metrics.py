"""Prometheus metrics over HTTP: RPC counts and latency by method and code from the server
interceptor, Redis latency per feature-store operation."""

import asyncio
import urllib.request

import redis.asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsys.redis_server import free_port
from recsys.serving.config import Settings
from recsys.serving.metrics import serve_metrics
from recsys.serving.server import Service
from services.feature.store import FeatureStore
from tests.support.servers import serving


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_rpcs_and_redis_operations_are_counted(redis_url):
    port = serve_metrics(free_port(), "127.0.0.1")
    ok = 'recsys_rpcs_total{code="OK",method="/grpc.health.v1.Health/Check"}'
    before = scrape(port).get(ok, 0.0)

    async def bare():
        service = Service(Settings(), [])
        service.bind(0)
        return service

    with serving(bare) as (_, channel):
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(3):
            stub.Check(health_pb2.HealthCheckRequest(), timeout=5)

    async def ping():
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await FeatureStore(client).ping()
        finally:
            await client.aclose()

    asyncio.run(ping())
    samples = scrape(port)
    assert samples[ok] - before == 3
    assert samples['recsys_rpc_seconds_count{method="/grpc.health.v1.Health/Check"}'] >= 3
    assert samples['recsys_redis_seconds_count{operation="ping"}'] >= 1
