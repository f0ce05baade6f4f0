"""The request id: taken from the caller's `x-request-id` metadata or made by the first
server a request reaches (the gateway), kept in a context variable for the request's
lifetime, written into every log line, and passed on to every upstream call."""

from __future__ import annotations

import contextvars
import uuid

METADATA_KEY = "x-request-id"
MAX_LENGTH = 128

current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def from_metadata(metadata) -> str:
    """The caller's id (if it is a sane one) or a new one."""
    for key, value in metadata or ():
        if key == METADATA_KEY and isinstance(value, str) and 0 < len(value) <= MAX_LENGTH:
            return value
    return uuid.uuid4().hex


def outgoing() -> tuple[tuple[str, str], ...]:
    """Metadata for an upstream call made while handling a request."""
    request_id = current.get()
    return ((METADATA_KEY, request_id),) if request_id else ()
