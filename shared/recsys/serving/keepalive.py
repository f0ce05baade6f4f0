"""Connection limits shared by servers and channels: HTTP/2 keepalive (so idle connections
behind load balancers and NATs are kept open, and dead ones noticed), from KEEPALIVE_TIME_S
and KEEPALIVE_TIMEOUT_S. Message sizes are `server.message_options`; the concurrency cap is
the server's `maximum_concurrent_rpcs`."""

from __future__ import annotations

from recsys.serving.config import Settings


def keepalive_options(settings: Settings, *, server: bool) -> list[tuple[str, int]]:
    """Ping every KEEPALIVE_TIME_S even with no call in flight, drop the connection when a
    ping is unanswered for KEEPALIVE_TIMEOUT_S. A server also accepts pings from clients as
    often as every half of that period (gRPC's default, 5 min, would answer a client pinging
    every 30 s with GOAWAY "too_many_pings")."""
    time_ms = int(settings.keepalive_time_s * 1000)
    options = [
        ("grpc.keepalive_time_ms", time_ms),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if server:
        options.append(("grpc.http2.min_ping_interval_without_data_ms", max(1, time_ms // 2)))
    return options
