"""gRPC status → HTTP response: the standard google.rpc code ↔ HTTP status mapping, and a
JSON body in the google.rpc.Status shape (code, message, details: BadRequest field
violations, ErrorInfo), taken from the call's rich status when it has one."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from recsys.errors import RecsysError
from recsys.serving.errors import status_for

log = logging.getLogger(__name__)

# google/rpc/code.proto's HTTP mapping
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
# the code of an answer the HTTP layer gives itself (no route, wrong method, body too large)
CODE_OF_HTTP = {
    400: code_pb2.INVALID_ARGUMENT,
    404: code_pb2.NOT_FOUND,
    405: code_pb2.UNIMPLEMENTED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
}


def http_status(status: status_pb2.Status) -> int:
    return HTTP_STATUS.get(BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN), 500)


def of_rpc_error(error: grpc.RpcError) -> status_pb2.Status:
    """The status a failed call answered: its rich status (grpc-status-details-bin) when
    it sent one, else its code and message."""
    try:
        rich = rpc_status.from_call(error)
    except ValueError:  # a rich status that disagrees with the call's code
        rich = None
    if rich is not None:
        return rich
    return status_pb2.Status(code=error.code().value[0], message=error.details() or "")


def of_error(error: RecsysError) -> status_pb2.Status:
    """The status the gRPC side would answer for one of our exceptions (same message, same
    details), for problems the HTTP side finds itself (a body that is not JSON)."""
    converted = status_for(error)
    details = dict(converted.trailing_metadata).get(rpc_status.GRPC_DETAILS_METADATA_KEY)
    if details is not None:
        return status_pb2.Status.FromString(details)
    return status_pb2.Status(code=converted.code.value[0], message=converted.details)


def of_http(status: int, message: str) -> status_pb2.Status:
    code = CODE_OF_HTTP.get(status, code_pb2.INTERNAL if status >= 500 else code_pb2.UNKNOWN)
    return status_pb2.Status(code=code, message=message)


def body(status: status_pb2.Status) -> dict:
    """{"code": 3, "message": "...", "details": [{"@type": "type.googleapis.com/...", ...}]}:
    code and message always, details by the proto3 JSON mapping of each Any."""
    details = []
    for detail in status.details:
        try:
            details.append(json_format.MessageToDict(detail))
        except (TypeError, KeyError, json_format.SerializeToJsonError):  # a type not linked in
            log.warning("an error detail is not shown", extra={"type_url": detail.type_url})
    return {"code": status.code, "message": status.message, "details": details}
