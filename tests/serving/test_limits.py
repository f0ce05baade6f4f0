"""Limits: at most MAX_CONCURRENT_RPCS calls at once per server (RESOURCE_EXHAUSTED beyond),
the gateway's channels retry only UNAVAILABLE, every downstream call of the gateway carries
the caller's remaining deadline, message sizes and keepalive on servers and channels."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from recsys import errors
from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.api.model.v1 import model_pb2, model_pb2_grpc
from recsys.serving.config import Settings
from recsys.serving.keepalive import keepalive_options
from recsys.serving.server import Service
from services.gateway import upstream as upstream_module
from services.gateway.upstream import Upstreams
from tests.support.servers import ServiceThread
from tests.support.stack import running_stack

MODEL_SERVICE = "recsys.model.v1.ModelService"


class Blocking(model_pb2_grpc.ModelServiceServicer):
    """SimilarItems waits until released; counts the calls in flight."""

    def __init__(self):
        self.release = asyncio.Event()
        self.in_flight = 0
        self.changed = threading.Condition()

    async def SimilarItems(self, request, context):
        with self.changed:
            self.in_flight += 1
            self.changed.notify_all()
        await self.release.wait()
        return model_pb2.SimilarItemsResponse(model_version="v")


def model_with(servicer, settings: Settings):
    async def factory():
        service = Service(settings, [MODEL_SERVICE])
        model_pb2_grpc.add_ModelServiceServicer_to_server(servicer, service.server)
        service.bind(0)
        service.watch_readiness(always_ready)  # the gateway calls only a SERVING model service
        return service

    return factory


async def always_ready() -> bool:
    return True


def test_calls_beyond_max_concurrent_rpcs_are_resource_exhausted():
    blocking = Blocking()
    with (
        ServiceThread(model_with(blocking, Settings(max_concurrent_rpcs=2))) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        stub = model_pb2_grpc.ModelServiceStub(channel)
        request = model_pb2.SimilarItemsRequest(movie_id=1)
        held = [stub.SimilarItems.future(request, timeout=30) for _ in range(2)]
        with blocking.changed:
            assert blocking.changed.wait_for(lambda: blocking.in_flight == 2, timeout=20)
        with pytest.raises(grpc.RpcError) as caught:
            stub.SimilarItems(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert blocking.in_flight == 2  # the refused call never reached the handler
        running.loop.call_soon_threadsafe(blocking.release.set)
        assert [f.result().model_version for f in held] == ["v", "v"]
        # below the limit again: served
        assert stub.SimilarItems(request, timeout=10).model_version == "v"


class Failing(model_pb2_grpc.ModelServiceServicer):
    """Each RPC fails with a chosen error for its first `failures` attempts, then answers;
    counts the attempts."""

    def __init__(self, error: type[errors.RecsysError], failures: int):
        self.error, self.failures, self.attempts = error, failures, 0

    async def GetModelInfo(self, request, context):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error("try again" if self.error is errors.Unavailable else "no")
        return model_pb2.GetModelInfoResponse(model_version="v")


@pytest.mark.parametrize(
    ("error", "failures", "attempts", "outcome"),
    [
        (errors.Unavailable, 2, 3, "OK"),  # retried by the channel's service config
        (errors.Unavailable, 5, 3, "UNAVAILABLE"),  # maxAttempts 3
        (errors.ResourceExhausted, 1, 1, "RESOURCE_EXHAUSTED"),
        (errors.RecsysError, 1, 1, "INTERNAL"),
        (errors.FailedPrecondition, 1, 1, "FAILED_PRECONDITION"),
        (errors.Aborted, 1, 1, "ABORTED"),
    ],
)
def test_the_gateways_channels_retry_only_unavailable(error, failures, attempts, outcome):
    failing = Failing(error, failures)
    with ServiceThread(model_with(failing, Settings())) as running:
        settings = Settings(feature_addr=running.address, model_addr=running.address)

        async def call():
            upstreams = Upstreams.connect(settings)
            try:
                reply = await upstreams.call(
                    "model", upstreams.model.GetModelInfo, model_pb2.GetModelInfoRequest(), None
                )
                return "OK", reply
            except errors.RecsysError as exc:
                return exc.status, exc
            finally:
                await upstreams.close()

        code, _ = running.run(call())
    assert (code, failing.attempts) == (outcome, attempts)


class DeadlineRecorder(grpc.aio.UnaryUnaryClientInterceptor):
    """Records (method, timeout) of every call the gateway makes upstream."""

    def __init__(self):
        self.calls: list[tuple[str, float | None]] = []

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        method = client_call_details.method
        self.calls.append(
            (method.decode() if isinstance(method, bytes) else method, client_call_details.timeout)
        )
        return await continuation(client_call_details, request)


@pytest.mark.slow
def test_every_downstream_call_carries_the_callers_deadline(trained_run, redis_url, monkeypatch):
    """With a 30 s UPSTREAM_TIMEOUT_S and callers giving 5 s, every feature and model call
    made for a request has a deadline of at most the caller's remaining 5 s. The fetch of a
    version's μ, b_i and catalog, done once for all callers and cached, has the upstream
    timeout instead (no request's deadline may cut it short for the others)."""
    recorder = DeadlineRecorder()

    def recording_channel(address, settings, options=(), server_name="", interceptors=None):
        return grpc.aio.insecure_channel(
            address, options=list(options), interceptors=[recorder, *(interceptors or [])]
        )

    monkeypatch.setattr(upstream_module.tls, "aio_channel", recording_channel)
    with running_stack(
        trained_run, redis_url, gateway_settings={"upstream_timeout_s": 30.0}
    ) as stack:
        recorder.calls.clear()
        stub, deadline = stack.stub, 5.0
        inline = pb.InlineRatings(ratings=[pb.Rating(movie_id=1, rating=5)])
        stub.Recommend(pb.RecommendRequest(user_id=3, k=3), timeout=deadline)
        stub.Recommend(pb.RecommendRequest(inline_ratings=inline, k=3), timeout=deadline)
        stub.PredictRatings(pb.PredictRatingsRequest(user_id=3, movie_ids=[1]), timeout=deadline)
        stub.SimilarItems(pb.SimilarItemsRequest(movie_id=1, k=3), timeout=deadline)
        stub.RateItems(
            pb.RateItemsRequest(user_id=77_001, ratings=[pb.Rating(movie_id=1, rating=4)]),
            timeout=deadline,
        )
        stub.DeleteRatings(pb.DeleteRatingsRequest(user_id=77_001, movie_ids=[1]), timeout=deadline)
        stub.RateItems(
            pb.RateItemsRequest(user_id=77_001, ratings=[pb.Rating(movie_id=1, rating=4)]),
            timeout=deadline,
        )
        stub.DeleteUser(pb.DeleteUserRequest(user_id=77_001), timeout=deadline)
    calls = [(m, t) for m, t in recorder.calls if not m.startswith("/grpc.health")]
    shared = {"GetNormalization", "ListItems"}  # the version's data, fetched for every caller
    fetched = [(m, t) for m, t in calls if m.rsplit("/", 1)[1] in shared]
    calls = [(m, t) for m, t in calls if m.rsplit("/", 1)[1] not in shared]
    assert fetched and all(t is not None and 5.5 < t <= 30.5 for _, t in fetched), fetched
    methods = {m.rsplit("/", 1)[1] for m, _ in calls}
    assert {
        "BatchGetUserFeatures",  # the gateway's coalesced calls
        "BatchPredict",
        "BatchSimilarItems",
        "UpsertRatings",
        "DeleteRatings",
        "DeleteUser",
    } <= methods, methods
    # the caller's 5 s, give or take the rounding of the grpc-timeout header; never the 30 s
    assert all(t is not None and 0 < t <= deadline + 0.5 for _, t in calls), calls


def test_keepalive_and_message_sizes_reach_servers_and_channels():
    settings = Settings(keepalive_time_s=20, keepalive_timeout_s=5, max_message_bytes=1024)
    server = dict(keepalive_options(settings, server=True))
    client = dict(keepalive_options(settings, server=False))
    assert server["grpc.keepalive_time_ms"] == client["grpc.keepalive_time_ms"] == 20_000
    assert server["grpc.keepalive_timeout_ms"] == client["grpc.keepalive_timeout_ms"] == 5_000
    assert client["grpc.keepalive_permit_without_calls"] == 1
    # the server tolerates clients pinging as often as its own settings make them
    assert server["grpc.http2.min_ping_interval_without_data_ms"] <= 20_000


def test_messages_over_max_message_bytes_are_refused_both_ways():
    """A server with MAX_MESSAGE_BYTES=1024 refuses a bigger request; a gateway channel with
    the limit refuses a bigger response."""

    class Echo(model_pb2_grpc.ModelServiceServicer):
        async def GetModelInfo(self, request, context):
            return model_pb2.GetModelInfoResponse(config_json="x" * 4096)

        async def Predict(self, request, context):
            return model_pb2.PredictResponse(model_version="v")

    small = Settings(max_message_bytes=1024)
    with (
        ServiceThread(model_with(Echo(), small)) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        stub = model_pb2_grpc.ModelServiceStub(channel)
        big = model_pb2.PredictRequest(
            preferences=model_pb2.SparseVector(movie_ids=list(range(1, 2000)))
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(big, timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.Predict(model_pb2.PredictRequest(), timeout=10).model_version == "v"
        with pytest.raises(grpc.RpcError) as caught:  # nor does it send a bigger answer
            stub.GetModelInfo(model_pb2.GetModelInfoRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    with ServiceThread(model_with(Echo(), Settings())) as running:
        settings = Settings(
            feature_addr=running.address, model_addr=running.address, max_message_bytes=1024
        )

        async def call():
            upstreams = Upstreams.connect(settings)
            try:
                await upstreams.call(
                    "model", upstreams.model.GetModelInfo, model_pb2.GetModelInfoRequest(), None
                )
            except errors.RecsysError as exc:
                return exc.status
            finally:
                await upstreams.close()

        assert running.run(call()) == "RESOURCE_EXHAUSTED"
