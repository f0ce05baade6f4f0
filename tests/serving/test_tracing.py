"""OpenTelemetry tracing across the services: with OTEL_ENABLED one request is one trace
spanning gateway → feature → model, the context carried in the gRPC metadata; log lines
written while it is handled carry its trace id; with tracing off nothing is traced."""

import logging

import grpc
import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from recsys.api.gateway.v1 import gateway_pb2
from recsys.serving import tracing
from recsys.serving.config import Settings
from tests.support.stack import running_stack

pytestmark = pytest.mark.slow

GATEWAY = "recsys.gateway.v1.GatewayService"
FEATURE = "recsys.feature.v1.FeatureService"
MODEL = "recsys.model.v1.ModelService"


@pytest.fixture(scope="module")
def exporter():
    """The process's tracer provider, exporting into memory (a provider is set once per
    process; this module is the only one that sets it)."""
    memory = InMemorySpanExporter()
    assert tracing.configure(Settings(otel_enabled=True), "tests", exporter=memory) is not None
    return memory


def traced_call(stub_method, request, tracer):
    """Call under a client span of the test's own, its context in the metadata as any
    instrumented caller would send it; returns (reply or error, the test span)."""
    with tracer.start_as_current_span("test client") as root:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        try:
            return stub_method(request, timeout=10, metadata=tuple(carrier.items())), root
        except grpc.RpcError as error:
            return error, root


def server_spans(spans, service):
    return [
        s
        for s in spans
        if s.kind == trace.SpanKind.SERVER and s.attributes.get("rpc.service") == service
    ]


def test_one_trace_spans_gateway_feature_and_model(trained_run, redis_url, exporter, caplog):
    tracer = trace.get_tracer("tests")
    with running_stack(trained_run, redis_url, server_settings={"otel_enabled": True}) as stack:
        exporter.clear()
        with caplog.at_level(logging.DEBUG, logger="services.gateway.servicer"):
            reply, root = traced_call(
                stack.stub.Recommend, gateway_pb2.RecommendRequest(user_id=1, k=3), tracer
            )
    assert len(reply.items) == 3
    trace_id = root.get_span_context().trace_id
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in spans}

    (gateway,) = server_spans(spans, GATEWAY)
    assert gateway.name == f"/{GATEWAY}/Recommend"
    assert gateway.parent.span_id == root.get_span_context().span_id and gateway.parent.is_remote
    assert gateway.attributes["recsys.model_version"] == reply.model_version
    assert gateway.attributes["recsys.user"] == "user_id"
    assert gateway.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]

    # the feature and model services continue the trace from the gateway's client spans
    # (its coalesced calls; a lone request's batch joins its trace), whose context reached
    # them in the metadata (a remote parent)
    for service, method in ((FEATURE, "BatchGetUserFeatures"), (MODEL, "BatchPredict")):
        (span,) = [s for s in server_spans(spans, service) if s.name.endswith(f"/{method}")]
        assert span.parent.is_remote
        client = by_id[span.parent.span_id]
        assert client.kind == trace.SpanKind.CLIENT and client.name == span.name
        assert client.attributes["recsys.model_version"] == reply.model_version
        assert client.attributes["recsys.user_ids" if service == FEATURE else "recsys.items"] >= 1
    stages = {s.name: s for s in spans if s.name.startswith("gateway.")}
    assert set(stages) == {"gateway.features", "gateway.model", "gateway.rank"}
    assert all(s.parent.span_id == gateway.context.span_id for s in stages.values())
    (predict_client,) = [
        s for s in spans if s.kind == trace.SpanKind.CLIENT and s.name.endswith("/BatchPredict")
    ]
    assert predict_client.parent.span_id == stages["gateway.model"].context.span_id
    # health checks and reflection are never traced
    assert not [s for s in exporter.get_finished_spans() if "grpc.health" in s.name]

    (stages_log,) = [r for r in caplog.records if r.getMessage() == "stages"]
    assert stages_log.trace_id == trace.format_trace_id(trace_id)
    assert stages_log.request_id


def test_an_error_status_is_on_the_span(trained_run, redis_url, exporter):
    tracer = trace.get_tracer("tests")
    with running_stack(trained_run, redis_url, server_settings={"otel_enabled": True}) as stack:
        exporter.clear()
        error, root = traced_call(
            stack.stub.Recommend, gateway_pb2.RecommendRequest(user_id=999_999), tracer
        )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    spans = [
        s
        for s in exporter.get_finished_spans()
        if s.context.trace_id == root.get_span_context().trace_id
    ]
    (span,) = [s for s in server_spans(spans, GATEWAY) if s.name.endswith("/Recommend")]
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    # OpenTelemetry's gRPC conventions: a NOT_FOUND answer is no server error ...
    assert span.status.status_code == trace.StatusCode.UNSET
    # ... and the coalesced read that found no such user answered OK, listing it as missing
    (read,) = [s for s in server_spans(spans, FEATURE) if s.name.endswith("/BatchGetUserFeatures")]
    assert read.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]


def test_tracing_is_off_by_default(trained_run, redis_url, exporter):
    assert Settings.from_env({}).otel_enabled is False
    assert tracing.server_interceptors(Settings()) == []
    assert tracing.client_interceptors(Settings()) == []
    tracer = trace.get_tracer("tests")
    with running_stack(trained_run, redis_url) as stack:
        exporter.clear()
        reply, root = traced_call(
            stack.stub.Recommend, gateway_pb2.RecommendRequest(user_id=1, k=3), tracer
        )
    assert len(reply.items) == 3
    assert [s.name for s in exporter.get_finished_spans()] == ["test client"]
