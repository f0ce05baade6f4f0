"""How the load generator connects: one plaintext `grpc.aio` channel per server address,
straight to that address (no HTTP proxy from the environment), no retries."""

from __future__ import annotations

import grpc

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # as the services' default MAX_MESSAGE_BYTES

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.enable_http_proxy", 0),  # contact only the given address
    ("grpc.enable_retries", 0),  # every attempt is one measured request
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


def open_channel(address: str) -> grpc.aio.Channel:
    """A new channel to HOST:PORT; the caller closes it (`await channel.close()`)."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
