"""Property-based fuzzing (hypothesis) of every RPC's request message, through real channels
to the real stack (gateway, feature and model services, Redis): whatever the request, the
answer is OK or a deliberate status — never INTERNAL or UNKNOWN, the server stays up, and a
refused write leaves every key in Redis as it was.

Requests are drawn from the message descriptors: every field (nested messages, oneofs,
repeated fields, open enums with unknown values) with values that mix the edge cases (0,
negatives, int32 / int64 bounds, NaN, ±∞, odd strings) with ids that exist, so that valid
requests reach the deep paths too. The number of cases run is printed at the end."""

from __future__ import annotations

import collections

import grpc
import numpy as np
import pytest
import redis
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
from recsys.api.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from recsys.api.model.v1 import model_pb2, model_pb2_grpc
from recsys.serving.auth import WRITE_METHODS
from services.feature.servicer import encode_page_token
from tests.support.redis_snapshot import snapshot
from tests.support.stack import running_stack

pytestmark = pytest.mark.slow

EXAMPLES = {"gateway": 40, "feature": 25, "model": 40}  # per RPC; 600 cases in all
SERVICES = {
    "gateway": (gateway_pb2, gateway_pb2_grpc.GatewayServiceStub, "GatewayService"),
    "feature": (feature_pb2, feature_pb2_grpc.FeatureServiceStub, "FeatureService"),
    "model": (model_pb2, model_pb2_grpc.ModelServiceStub, "ModelService"),
}
NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
EDGE_IDS = [0, -1, 121, 401, 99_999, 2**31 - 1, 2**31, INT64[1], INT64[0]]
VERSION_LIKE = ["20000101T000000000000Z", "a:b", "*", "{x}", "../etc", " "]

# Plausible values by field name (ids that exist in the synthetic data: users 1-400, movies
# 1-120; ratings on its 1-5 scale; preferences near 0): five times as likely as the rest,
# so that many requests are valid and reach the deep paths.
PLAUSIBLE = {
    "user_id": st.integers(1, 420),
    "user_ids": st.integers(1, 420),
    "movie_id": st.integers(1, 125),
    "movie_ids": st.integers(1, 125),
    "exclude_movie_ids": st.integers(1, 125),
    "rating": st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0, 4.5, 5.0]),
    "values": st.floats(-3, 3, width=32),
    "k": st.integers(0, 20),
    "page_size": st.integers(0, 50),
    "model_version": st.just(""),
    "page_token": st.sampled_from([""] + [encode_page_token(n) for n in (1, 50, 119)]),
}


def anything(field: FieldDescriptor) -> st.SearchStrategy:
    """Any value of the field's type, edge cases first."""
    kind = field.type
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return st.one_of(st.sampled_from(EDGE_IDS), st.integers(*INT64))
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32):
        edges = [v for v in EDGE_IDS if INT32[0] <= v <= INT32[1]]
        return st.one_of(st.sampled_from(edges), st.integers(*INT32))
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.one_of(st.sampled_from([0.0, 0.5, 5.5, -1.0, 1e9]), st.floats(width=32))
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:  # proto3 enums are open: unknown numbers arrive too
        return st.integers(-3, 6)
    if kind == FieldDescriptor.TYPE_STRING:
        tokens = [encode_page_token(n) for n in (0, 2**62)]
        return st.one_of(st.sampled_from(VERSION_LIKE + tokens), st.text(max_size=24))
    if kind == FieldDescriptor.TYPE_BYTES:  # packed arrays: sizes that fit and sizes that don't
        packed = st.lists(st.integers(*INT32), max_size=8).map(
            lambda values: np.array(values, "<i4").tobytes()
        )
        return st.one_of(packed, st.binary(max_size=40))
    raise AssertionError(f"no strategy for {field.full_name} (type {kind})")


def scalar(field: FieldDescriptor) -> st.SearchStrategy:
    plausible = None if field.type == FieldDescriptor.TYPE_BYTES else PLAUSIBLE.get(field.name)
    if plausible is None and field.type == FieldDescriptor.TYPE_ENUM:
        plausible = st.sampled_from([v.number for v in field.enum_type.values])
    if plausible is None:
        return anything(field)
    edge = anything(field)
    # 5 in 6 plausible (hypothesis would merge repeated branches of a one_of)
    return st.integers(0, 5).flatmap(lambda n: edge if n == 5 else plausible)


def field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        element = messages(GetMessageClass(field.message_type), depth + 1)
    else:
        element = scalar(field)
    if field.is_repeated:
        return st.one_of(st.lists(element, min_size=1, max_size=8), st.lists(element, max_size=8))
    return element


def build(cls, values: dict, oneof_choices: tuple):
    """A `cls` message with `values` set, and one (name, value) per oneof (or None)."""
    values = {**values, **dict(choice for choice in oneof_choices if choice is not None)}
    message = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                getattr(message, name).extend(value)
            else:
                getattr(message, name).CopyFrom(value)
        elif field.is_repeated:
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


def messages(cls, depth: int = 0) -> st.SearchStrategy:
    """Any message of type `cls` (nesting at most 3 deep)."""
    descriptor = cls.DESCRIPTOR
    in_oneof = {f.name for oneof in descriptor.oneofs for f in oneof.fields}
    if depth > 3:
        return st.just(cls())
    plain = [f for f in descriptor.fields if f.name not in in_oneof]
    # fields with plausible values are always set (to something); the others now and then
    required = {f.name: field_values(f, depth) for f in plain if f.name in PLAUSIBLE}
    optional = {f.name: field_values(f, depth) for f in plain if f.name not in PLAUSIBLE}
    oneofs = [
        st.one_of(
            *[st.tuples(st.just(f.name), field_values(f, depth)) for f in oneof.fields], st.none()
        )
        for oneof in descriptor.oneofs
    ]
    return st.builds(
        build, st.just(cls), st.fixed_dictionaries(required, optional=optional), st.tuples(*oneofs)
    )


@pytest.fixture(scope="module")
def counts(request):
    counted: collections.Counter = collections.Counter()
    yield counted
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    by_method: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for (method, code), n in sorted(counted.items()):
        by_method[method][code] = n
    lines = [f"fuzzing: {sum(counted.values())} cases"] + [
        f"  {method}: {sum(codes.values())} ({', '.join(f'{c} {n}' for c, n in codes.items())})"
        for method, codes in by_method.items()
    ]
    with capture.global_and_fixture_disabled():  # shown even when output is captured
        print("\n" + "\n".join(lines))


@pytest.fixture(scope="module")
def stack(trained_run, redis_server):
    with running_stack(trained_run, redis_server.url) as running:
        channels = {
            "gateway": running.channel,
            "feature": grpc.insecure_channel(running.features.address),
            "model": grpc.insecure_channel(running.model.address),
        }
        yield running, channels
        channels["feature"].close()
        channels["model"].close()


def rpcs(service: str) -> list[tuple[str, str]]:
    module, _, name = SERVICES[service]
    return [(service, m.name) for m in module.DESCRIPTOR.services_by_name[name].methods]


ALL_RPCS = rpcs("gateway") + rpcs("feature") + rpcs("model")


@pytest.mark.parametrize(("service", "rpc"), ALL_RPCS, ids=lambda v: v)
def test_fuzz_rpc(stack, counts, service, rpc):
    running, channels = stack
    module, stub_class, name = SERVICES[service]
    method = module.DESCRIPTOR.services_by_name[name].methods_by_name[rpc]
    full_name = f"/{module.DESCRIPTOR.package}.{name}/{rpc}"
    stub = getattr(stub_class(channels[service]), rpc)
    health = health_pb2_grpc.HealthStub(channels[service])
    is_write = full_name in WRITE_METHODS
    client = redis.Redis.from_url(running.redis_url)

    @settings(
        max_examples=EXAMPLES[service],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=messages(GetMessageClass(method.input_type)))
    def check(request):
        before = snapshot(client) if is_write else None
        code = "OK"
        try:
            stub(request, timeout=20)
        except grpc.RpcError as error:
            code = error.code().name
            assert error.code() not in NEVER, (error.code(), error.details(), request)
            if before is not None:
                assert snapshot(client) == before, ("refused write changed Redis", request)
        counts[full_name, code] += 1
        alive = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert alive.status == health_pb2.HealthCheckResponse.SERVING

    try:
        check()
    finally:
        client.close()


RAW_EXAMPLES = 10  # per RPC


@pytest.mark.parametrize(("service", "rpc"), ALL_RPCS, ids=lambda v: v)
def test_fuzz_raw_bytes(stack, counts, service, rpc):
    """Arbitrary bytes as the request (most do not parse; some parse as odd messages)."""
    running, channels = stack
    module, _, name = SERVICES[service]
    full_name = f"/{module.DESCRIPTOR.package}.{name}/{rpc}"
    call = channels[service].unary_unary(full_name)  # no (de)serializers: raw bytes
    health = health_pb2_grpc.HealthStub(channels[service])
    client = redis.Redis.from_url(running.redis_url)

    @settings(max_examples=RAW_EXAMPLES, deadline=None, database=None)
    @given(payload=st.binary(min_size=1, max_size=64))
    def check(payload):
        before = snapshot(client) if full_name in WRITE_METHODS else None
        code = "OK"
        try:
            call(payload, timeout=20)
        except grpc.RpcError as error:
            code = error.code().name
            assert error.code() not in NEVER, (error.code(), error.details(), payload)
            if before is not None:
                assert snapshot(client) == before, ("refused write changed Redis", payload)
        counts[f"{full_name} (bytes)", code] += 1
        alive = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert alive.status == health_pb2.HealthCheckResponse.SERVING

    try:
        check()
    finally:
        client.close()
