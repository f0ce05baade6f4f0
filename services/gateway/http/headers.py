"""The HTTP headers the gateway reads and writes, and their gRPC metadata: the bearer token,
the request id (echoed on every response), the deadline, trace context, stage timings."""

from __future__ import annotations

from recsys import request_id
from recsys.errors import InvalidArgument
from recsys.serving import auth

AUTHORIZATION = "Authorization"  # "Bearer <token>", passed on as `authorization` metadata
REQUEST_ID = "X-Request-Id"  # the caller's id or a new one; always echoed in the response
# The call's deadline in milliseconds (a positive integer, at most MAX_TIMEOUT_MS): the
# gRPC deadline of the forwarded call, so DEADLINE_EXCEEDED (504) when it runs out.
TIMEOUT_MS = "X-Timeout-Ms"
MAX_TIMEOUT_MS = 3_600_000
STAGE_MS = "Recsys-Stage-Ms"  # the trailing `recsys-stage-ms` metadata: stage timings
TRACE_HEADERS = ("traceparent", "tracestate")  # W3C trace context, passed on as metadata


def request_id_of(headers) -> str:
    """The caller's X-Request-Id when it is a sane one, else a new id (as the gRPC side
    chooses)."""
    given = headers.get(REQUEST_ID)
    return request_id.from_metadata(((request_id.METADATA_KEY, given),) if given else ())


def timeout_of(headers) -> float | None:
    """The deadline in seconds from X-Timeout-Ms, None without the header."""
    raw = headers.get(TIMEOUT_MS)
    if raw is None:
        return None
    text = raw.strip()
    if not text.isdigit() or not 0 < int(text) <= MAX_TIMEOUT_MS:
        raise InvalidArgument(
            f"{TIMEOUT_MS} must be a whole number of milliseconds in 1..{MAX_TIMEOUT_MS}, "
            f"got {raw!r}",
            field=TIMEOUT_MS,
        )
    return int(text) / 1000


def metadata_of(headers, rid: str) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata of a forwarded call: request id, authorization, trace context."""
    metadata = [(request_id.METADATA_KEY, rid)]
    passed = [(auth.METADATA_KEY, AUTHORIZATION), *((name, name) for name in TRACE_HEADERS)]
    for key, header in passed:
        value = headers.get(header)
        if value is None:
            continue
        if not value.isascii() or not value.isprintable():
            raise InvalidArgument(f"{header} must be printable ASCII", field=header)
        metadata.append((key, value))
    return tuple(metadata)
