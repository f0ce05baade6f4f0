"""Prometheus metrics of the services: RPC counts by method and status code, latency and
calls in flight by method (recorded by the server interceptor), the gateway's stage times,
Redis latency per feature-store operation, the model version in use, and the model
service's batch sizes and queue time, readiness; served over HTTP on METRICS_PORT (0: off)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

RPCS = Counter("recsys_rpcs", "RPCs handled, by method and status code", ["method", "code"])
RPC_SECONDS = Histogram(
    "recsys_rpc_seconds", "Time to answer an RPC", ["method"], buckets=LATENCY_BUCKETS
)
IN_FLIGHT = Gauge("recsys_rpcs_in_flight", "RPCs being handled now, by method", ["method"])
STAGE_SECONDS = Histogram(
    "recsys_gateway_stage_seconds",
    "Time of each stage of a gateway request: features, model, rank",
    ["method", "stage"],
    buckets=LATENCY_BUCKETS,
)
REDIS_SECONDS = Histogram(
    "recsys_redis_seconds",
    "Time of a feature-store operation against Redis (round trip and decoding)",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
MODEL_VERSION = Gauge(
    "recsys_model_version_info", "The model version served (value 1)", ["version"]
)
BATCH_SIZE = Histogram(
    "recsys_model_batch_size",
    "Users per matrix product: a BatchPredict call, or Predict calls batched together",
    ["method"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
GATEWAY_BATCH_SIZE = Histogram(
    "recsys_gateway_batch_size",
    "Client requests per coalesced upstream call the gateway sent, by upstream",
    ["upstream"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
QUEUE_SECONDS = Histogram(
    "recsys_model_queue_seconds",
    "Time a Predict call waited in the model service's batching queue",
    buckets=(0.00005, 0.0001, 0.0002, 0.0005, *LATENCY_BUCKETS),
)
READY = Gauge(
    "recsys_ready",
    "Readiness: 1 while the health of the service says SERVING (its dependencies answer)",
    ["service"],
)
QUEUE_REFUSED = Counter(
    "recsys_model_queue_refused",
    "Predict calls refused with RESOURCE_EXHAUSTED because the batching queue was full",
)


def serve_metrics(port: int, host: str) -> int | None:
    """Start the HTTP endpoint (/metrics) in a background thread; returns its port, or None
    when `port` is 0 (metrics off)."""
    if not port:
        return None
    server, _ = start_http_server(port, addr=host)
    log.info("metrics listening", extra={"port": server.server_port})
    return server.server_port
