"""OpenTelemetry tracing, off unless OTEL_ENABLED: one tracer provider per process exporting
over OTLP, a server interceptor that continues the caller's trace (W3C `traceparent` in the
gRPC metadata) and client interceptors that pass it on, for the project's own RPCs only
(health checks and reflection are not traced).

`configure(settings, service)` installs the provider (at most once per process);
`server_interceptors(settings)` and `client_interceptors(settings)` are empty lists when
tracing is off, so a service without tracing pays nothing for it. The OpenTelemetry SDK reads
its own standard variables on top (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER / _ARG, OTEL_BSP_*, OTEL_EXPORTER_OTLP_HEADERS, ...)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading

from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.instrumentation.grpc.filters import service_prefix

from recsys.serving.config import Settings

log = logging.getLogger(__name__)

TRACED = service_prefix("recsys.")  # our services; not grpc.health.v1 or reflection
TRACER = trace.get_tracer("recsys")  # follows the global provider once one is set

SHUTDOWN_TIMEOUT_S = 2.0
_provider = None  # the TracerProvider this process installed, if any


def configure(settings: Settings, service: str, exporter=None):
    """Install the global tracer provider when `settings.otel_enabled` (returns it; None when
    tracing is off). Spans go in batches to the OTLP gRPC endpoint
    (`settings.otel_exporter_otlp_endpoint`, else the exporter's own default,
    http://localhost:4317), or to `exporter` when one is given (tests: an in-memory one,
    exported at once). The resource's `service.name` is `recsys-<service>` unless
    OTEL_SERVICE_NAME says otherwise."""
    global _provider
    if not settings.otel_enabled:
        return None
    if _provider is not None:
        return _provider
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"recsys-{service}"}
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint or None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    log.info(
        "tracing on",
        extra={"otlp_endpoint": settings.otel_exporter_otlp_endpoint or "(exporter default)"},
    )
    return provider


def shutdown(timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
    """Export what is still buffered (at the end of a service's main), giving up after
    `timeout_s`: an unreachable collector must not hold a stopping process (the exporter
    itself would retry for up to 10 s)."""
    if _provider is None:
        return
    stopping = threading.Thread(target=_provider.shutdown, daemon=True)
    stopping.start()
    stopping.join(timeout_s)
    if stopping.is_alive():
        log.warning("spans not exported at exit", extra={"waited_s": timeout_s})


def server_interceptors(settings: Settings) -> list:
    """The server span of every call of our services, a child of the caller's span when the
    call carries a trace context. Goes before the error interceptor, so that the span holds
    the status code that interceptor sets."""
    if not settings.otel_enabled:
        return []
    return [aio_server_interceptor(filter_=TRACED)]


def client_interceptors(settings: Settings) -> list:
    """A client span per upstream call and the trace context in its metadata."""
    if not settings.otel_enabled:
        return []
    return aio_client_interceptors(filter_=TRACED, request_hook=describe_request)


def describe_request(span, request: Message) -> None:
    """Attributes of an upstream call's span taken from its request: the model version asked
    for, how many users and how many items it carries."""
    fields = {field.name for field, _ in request.ListFields()}
    if "model_version" in fields:
        span.set_attribute("recsys.model_version", request.model_version)
    if "user_id" in fields:
        span.set_attribute("recsys.user_ids", 1)
    elif "user_ids" in fields:
        span.set_attribute("recsys.user_ids", len(request.user_ids))
    if "preferences" in fields:
        span.set_attribute("recsys.items", len(request.preferences.movie_ids))
    elif "movie_ids" in fields:
        span.set_attribute("recsys.items", len(request.movie_ids))
    elif "packed" in fields:  # a coalesced BatchPredict: rows and entries of packed arrays
        preferences = request.packed.preferences
        span.set_attribute("recsys.model_version", request.packed.model_version)
        span.set_attribute("recsys.user_ids", max(len(preferences.offsets) // 4 - 1, 0))
        span.set_attribute("recsys.items", len(preferences.movie_ids) // 4)


def annotate(**attributes) -> None:
    """Set `recsys.<name>` attributes on the current span (no-op when nothing is traced)."""
    span = trace.get_current_span()
    if span.is_recording():
        for name, value in attributes.items():
            span.set_attribute(f"recsys.{name}", value)


@contextlib.contextmanager
def stage_span(stage: str):
    """A child span `gateway.<stage>` of the current span while it is traced; otherwise
    nothing (no span objects on the request path when tracing is off)."""
    if not trace.get_current_span().is_recording():
        yield
        return
    with TRACER.start_as_current_span(f"gateway.{stage}", attributes={"recsys.stage": stage}):
        yield
