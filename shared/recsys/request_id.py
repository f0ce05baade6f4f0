"""The request id: taken from the caller's `x-request-id` metadata or made by the first
server a request reaches (the gateway), kept in a context variable for the request's
lifetime, written into every log line, and passed on to every upstream call. A coalesced
upstream call serves several requests: it carries their ids comma-separated
("req-1,req-2"), so a search for one request's id finds the batch's log lines too."""

from __future__ import annotations

import contextvars
import uuid

METADATA_KEY = "x-request-id"
MAX_LENGTH = 128
MAX_IDS = 64  # ids a batch call names at most (metadata stays well under gRPC's 8 KiB)

current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def from_metadata(metadata) -> str:
    """The caller's id (if it is a sane one) or a new one."""
    for key, value in metadata or ():
        if key == METADATA_KEY and isinstance(value, str) and _sane(value):
            return value
    return uuid.uuid4().hex


def _sane(value: str) -> bool:
    ids = value.split(",")
    return len(ids) <= MAX_IDS and all(0 < len(one) <= MAX_LENGTH for one in ids)


def batch_metadata(request_ids) -> tuple[tuple[str, str], ...]:
    """Metadata for a call made on behalf of several requests: their ids (the first
    MAX_IDS), comma-separated; none when no request had one."""
    named = [one for one in request_ids if one][:MAX_IDS]
    return ((METADATA_KEY, ",".join(named)),) if named else ()


def outgoing() -> tuple[tuple[str, str], ...]:
    """Metadata for an upstream call made while handling a request."""
    request_id = current.get()
    return ((METADATA_KEY, request_id),) if request_id else ()
