"""How the load generator connects: one `grpc.aio` channel per server address, straight to
that address (no HTTP proxy from the environment), no retries. Like the services, it reads
TLS_CA_FILE (TLS; with TLS_CERT_FILE / TLS_KEY_FILE a client certificate) and UPSTREAM_TOKEN
(sent as a bearer token) from the environment."""

from __future__ import annotations

import grpc

from recsys.serving import tls
from recsys.serving.auth import BearerTokenInterceptor
from recsys.serving.config import Settings

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # as the services' default MAX_MESSAGE_BYTES

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.enable_http_proxy", 0),  # contact only the given address
    ("grpc.enable_retries", 0),  # every attempt is one measured request
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


def open_channel(address: str) -> grpc.aio.Channel:
    """A new channel to HOST:PORT; the caller closes it (`await channel.close()`)."""
    settings = Settings.from_env()
    interceptors = (
        [BearerTokenInterceptor(settings.upstream_token)] if settings.upstream_token else None
    )
    return tls.aio_channel(address, settings, CHANNEL_OPTIONS, interceptors=interceptors)
