"""One server interceptor maps the project's exceptions to gRPC status codes (the table is in
docs/api.md).

Handlers raise `recsys.errors` exceptions; nothing else calls `abort` or `set_code`. An
INVALID_ARGUMENT carries a `google.rpc.BadRequest` detail naming the field; an unexpected
exception is logged with its traceback and answered INTERNAL without leaking it."""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from recsys import request_id
from recsys.errors import InvalidArgument, RecsysError, Unavailable
from recsys.serving import metrics

log = logging.getLogger(__name__)


# gRPC retry pushback: a negative value tells the client's retry policy not to retry
PUSHBACK_KEY = "grpc-retry-pushback-ms"
ERROR_DOMAIN = "recsys"  # of the ErrorInfo details our errors carry


def status_for(error: RecsysError) -> grpc.Status:
    """The grpc.Status (code, message, rich details) for one of our exceptions; an
    Unavailable with `retry=False` carries a negative retry pushback."""
    status = status_pb2.Status(code=getattr(code_pb2, error.status), message=str(error))
    if isinstance(error, InvalidArgument) and error.field:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=error.field, description=str(error)
                    )
                ]
            )
        )
        status.details.append(detail)
    if error.reason:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))
        status.details.append(detail)
    converted = rpc_status.to_status(status)
    if isinstance(error, Unavailable) and not error.retry:
        return _Status(
            converted.code,
            converted.details,
            (*converted.trailing_metadata, (PUSHBACK_KEY, "-1")),
        )
    return converted


class _Status(NamedTuple):  # a grpc.Status with our own trailing metadata
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, description) pairs of a BadRequest detail on a client-side error."""
    status = rpc_status.from_call(error)
    violations = []
    for detail in status.details if status else []:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations += [(v.field, v.description) for v in bad_request.field_violations]
    return violations


def error_reasons(error: grpc.RpcError) -> list[str]:
    """The reasons of our ErrorInfo details on a client-side error (e.g.
    "MODEL_VERSION_MISMATCH")."""
    status = rpc_status.from_call(error)
    reasons = []
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
            reasons.append(info.reason)
    return reasons


class Undecodable:
    """Stands for a request whose bytes are not a valid message (see `lenient`)."""

    def __init__(self, problem: str):
        self.problem = problem


def lenient(deserializer):
    """A request deserializer that returns Undecodable instead of raising, so that bytes
    which do not parse are answered INVALID_ARGUMENT by the handler's wrapper, not UNKNOWN
    with the parser's exception text by grpc."""
    if deserializer is None:
        return None

    def deserialize(data: bytes):
        try:
            return deserializer(data)
        except Exception as exc:
            return Undecodable(type(exc).__name__)

    return deserialize


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-unary handler: sets the request id (see `request_id`), maps
    RecsysError → its status and anything else → INTERNAL, refuses undecodable requests
    (INVALID_ARGUMENT), and logs each call at DEBUG."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method

        async def guarded(request, context):
            request_id.current.set(request_id.from_metadata(context.invocation_metadata()))
            started = time.perf_counter()
            code = "OK"
            in_flight = metrics.IN_FLIGHT.labels(method)
            in_flight.inc()
            try:
                if isinstance(request, Undecodable):
                    raise InvalidArgument(f"the request is not a valid message ({request.problem})")
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except RecsysError as error:
                code = error.status
                status = status_for(error)
                await context.abort(status.code, status.details, status.trailing_metadata)
            except NotImplementedError:
                code = "UNIMPLEMENTED"
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
            except Exception:
                code = "INTERNAL"
                log.exception("unhandled error", extra={"method": method})
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            finally:
                elapsed = time.perf_counter() - started
                in_flight.dec()
                metrics.RPCS.labels(method, code).inc()
                metrics.RPC_SECONDS.labels(method).observe(elapsed)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "rpc",
                        extra={
                            "method": method,
                            "code": code,
                            "ms": round(elapsed * 1e3, 3),
                        },
                    )

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
