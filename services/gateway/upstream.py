"""The gateway's calls to the feature and model services: one channel per upstream with a
retry policy on UNAVAILABLE (declared in the service config, not a hand-written loop), a
deadline on every call derived from the caller's remaining time, and one translation of
upstream failures into the project's errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsys import errors, request_id
from recsys.api.feature.v1 import feature_pb2_grpc
from recsys.api.model.v1 import model_pb2, model_pb2_grpc
from recsys.serving import tls, tracing
from recsys.serving.auth import bearer_metadata
from recsys.serving.config import Settings
from recsys.serving.errors import error_reasons, field_violations
from recsys.serving.keepalive import keepalive_options
from recsys.serving.server import message_options

MODEL_SERVICE = model_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name

RETRY_SERVICE_CONFIG = {
    # with a dns:/// address naming several backends (a headless Service), balance per call
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{}],  # every method of the channel
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


def upstream_channel(
    address: str, settings: Settings, *, health_checked: str | None = None
) -> grpc.aio.Channel:
    """A channel to `address`: TLS (and a client certificate) when TLS_CA_FILE is set, see
    recsys.serving.tls. With `health_checked` (a service name) the channel watches each
    backend's health for that service and balances only over the SERVING ones, so a replica
    that is still loading or shutting down gets no calls."""
    service_config = dict(RETRY_SERVICE_CONFIG)
    if health_checked is not None:
        service_config["healthCheckConfig"] = {"serviceName": health_checked}
    return tls.aio_channel(
        address,
        settings,
        options=[
            *message_options(settings),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(service_config)),
            *keepalive_options(settings, server=False),
        ],
        interceptors=tracing.client_interceptors(settings),
    )


_TRANSLATION = {
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.ABORTED: errors.Aborted,  # a write lost too many races: safe to retry
}


def translate(error: grpc.aio.AioRpcError, upstream: str) -> errors.RecsysError:
    """An upstream failure as the error the gateway's caller gets."""
    code = error.code()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = field_violations(error)
        return errors.InvalidArgument(
            error.details(), field=violations[0][0] if violations else None
        )
    if code == grpc.StatusCode.CANCELLED:  # the upstream cancelled it (e.g. shutting down)
        return errors.Unavailable(f"{upstream} service: cancelled: {error.details()}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return _TRANSLATION[code](f"{upstream} service: {error.details()}")
    if code == grpc.StatusCode.FAILED_PRECONDITION and (
        errors.VersionMismatch.reason in error_reasons(error)
    ):
        return errors.VersionMismatch(error.details())
    if code in _TRANSLATION:
        return _TRANSLATION[code](error.details())
    return errors.RecsysError(f"{upstream} service failed: {code.name}")


_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def row_error(code: int, message: str, field: str = "") -> errors.RecsysError:
    """One row's failure in an upstream's batch answer (a status code number) as the
    error that row's caller gets."""
    status = _BY_NUMBER.get(code)
    if status == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.InvalidArgument(message, field=field or None)
    if status in _TRANSLATION:
        return _TRANSLATION[status](message)
    return errors.RecsysError(f"upstream row failed: {status.name if status else code}")


@dataclass
class Upstreams:
    """Channels and stubs of the feature and model services, one each per process."""

    feature_channel: grpc.aio.Channel
    model_channel: grpc.aio.Channel
    timeout_s: float
    token: str = field(default="", repr=False)  # sent as `authorization: Bearer <token>`

    def __post_init__(self):
        self.feature = feature_pb2_grpc.FeatureServiceStub(self.feature_channel)
        self.model = model_pb2_grpc.ModelServiceStub(self.model_channel)

    @classmethod
    def connect(cls, settings: Settings) -> Upstreams:
        settings.require("feature_addr", "model_addr")
        return cls(
            upstream_channel(settings.feature_addr, settings),
            upstream_channel(settings.model_addr, settings, health_checked=MODEL_SERVICE),
            settings.upstream_timeout_s,
            settings.upstream_token,
        )

    def timeout(self, context) -> float:
        """The caller's remaining time, capped by the configured upstream timeout."""
        remaining = context.time_remaining() if context is not None else None
        if remaining is None:
            return self.timeout_s
        if remaining <= 0:
            raise errors.DeadlineExceeded("deadline passed before the upstream call")
        return min(self.timeout_s, remaining)

    async def call(self, upstream: str, method, request, context):
        try:
            return await method(
                request,
                timeout=self.timeout(context),
                metadata=request_id.outgoing() + bearer_metadata(self.token),
            )
        except grpc.aio.AioRpcError as error:
            raise translate(error, upstream) from None

    async def call_batch(self, upstream: str, method, request, timeout_s: float, request_ids):
        """A coalesced call: the deadline is the batch's (its members keep their own); the
        metadata names every member's request id."""
        try:
            return await method(
                request,
                timeout=timeout_s,
                metadata=request_id.batch_metadata(request_ids) + bearer_metadata(self.token),
            )
        except grpc.aio.AioRpcError as error:
            raise translate(error, upstream) from None

    async def healthy(self) -> bool:
        """Both upstreams answer their health check with SERVING."""
        for channel in (self.feature_channel, self.model_channel):
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
            except grpc.aio.AioRpcError:
                return False
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                return False
        return True

    async def close(self) -> None:
        await self.feature_channel.close()
        await self.model_channel.close()
