"""Prometheus metrics of the gateway's HTTP side, beside the RPC metrics on METRICS_PORT:
requests by route and HTTP status, and their latency by route. A forwarded call is also
counted by the gRPC metrics (`recsys_rpcs`) under its method."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from recsys.serving.metrics import LATENCY_BUCKETS

UNMATCHED = "unmatched"  # the route label of a request no route matched (404, 405)

REQUESTS = Counter(
    "recsys_http_requests",
    "HTTP requests the gateway answered, by route (verb and path template) and status",
    ["route", "status"],
)
SECONDS = Histogram(
    "recsys_http_request_seconds",
    "Time to answer an HTTP request, by route",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
