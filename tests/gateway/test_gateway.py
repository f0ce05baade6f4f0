"""The full predict flow through the gateway over real channels: a real Redis loaded with
features, the feature, model and gateway services each built by its production factory."""

import grpc
import numpy as np
import pytest

from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.api.gateway.v1 import gateway_pb2_grpc
from recsys.serving.config import Settings
from recsys.serving.errors import field_violations
from services.gateway.server import create_server as gateway_server
from services.gateway.upstream import Upstreams
from tests.support.servers import ServiceThread
from tests.support.stack import running_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(trained_run, redis_server):
    with running_stack(trained_run, redis_server.url) as running:
        yield running


def inline(ratings: dict[int, float]) -> pb.InlineRatings:
    return pb.InlineRatings(ratings=[pb.Rating(movie_id=m, rating=r) for m, r in ratings.items()])


def test_inline_ratings_equal_the_offline_model(stack):
    ratings = {1: 5.0, 5: 5.0, 9: 4.0, 2: 1.0, 3: 2.0, 99999: 4.0}
    reply = stack["stub"].Recommend(pb.RecommendRequest(inline_ratings=inline(ratings), k=8))
    offline = stack["artifact"].recommender.recommend(ratings, 8)
    assert [i.movie_id for i in reply.items] == [s.item_id for s in offline]
    np.testing.assert_allclose(
        [i.predicted_rating for i in reply.items], [s.value for s in offline], rtol=1e-4
    )
    assert reply.model_version == stack["artifact"].version
    assert list(reply.ignored_movie_ids) == [99999]
    assert reply.items[0].title.startswith("Synthetic Movie")
    assert list(reply.items[0].genres) and not set(ratings) & {i.movie_id for i in reply.items}


def test_stored_user_equals_the_offline_model(stack):
    ratings = stack["data"].ratings
    user = ratings[ratings["user_id"] == 3]
    stored = dict(
        zip(user["item_id"].tolist(), user["rating"].astype(float).tolist(), strict=False)
    )
    reply = stack["stub"].Recommend(pb.RecommendRequest(user_id=3, k=5))
    offline = stack["artifact"].recommender.recommend(stored, 5)
    assert [i.movie_id for i in reply.items] == [s.item_id for s in offline]
    np.testing.assert_allclose(
        [i.predicted_rating for i in reply.items], [s.value for s in offline], rtol=1e-4
    )


def test_predict_ratings_and_default_k(stack):
    ratings = {1: 5.0, 2: 1.0}
    reply = stack["stub"].PredictRatings(
        pb.PredictRatingsRequest(inline_ratings=inline(ratings), movie_ids=[7, 3])
    )
    model = stack["artifact"].recommender
    expected = model.predict_ratings(model.user_vector(ratings))[
        model.index.columns(np.array([7, 3]))
    ]
    assert [p.movie_id for p in reply.predictions] == [7, 3]
    np.testing.assert_allclose([p.predicted_rating for p in reply.predictions], expected, rtol=1e-4)
    default = stack["stub"].Recommend(pb.RecommendRequest(inline_ratings=inline(ratings)))
    assert len(default.items) == 10


def test_similar_items_with_titles(stack):
    reply = stack["stub"].SimilarItems(pb.SimilarItemsRequest(movie_id=1, k=3))
    offline = stack["artifact"].recommender.similar(1, 3)
    assert [i.movie_id for i in reply.items] == [s.item_id for s in offline]
    assert all(i.title for i in reply.items)
    farthest = stack["stub"].SimilarItems(pb.SimilarItemsRequest(movie_id=1, k=1, farthest=True))
    assert (
        farthest.items[0].movie_id
        == stack["artifact"].recommender.similar(1, 1, farthest=True)[0].item_id
    )


@pytest.mark.parametrize(
    ("method", "request_message", "code", "field"),
    [
        ("Recommend", pb.RecommendRequest(user_id=987654), "NOT_FOUND", None),
        ("Recommend", pb.RecommendRequest(user_id=-1), "INVALID_ARGUMENT", "user_id"),
        ("Recommend", pb.RecommendRequest(), "INVALID_ARGUMENT", "user"),
        ("Recommend", pb.RecommendRequest(user_id=1, k=-3), "INVALID_ARGUMENT", "k"),
        ("Recommend", pb.RecommendRequest(user_id=1, k=100000), "INVALID_ARGUMENT", "k"),
        (
            "Recommend",
            pb.RecommendRequest(inline_ratings=pb.InlineRatings()),
            "INVALID_ARGUMENT",
            "inline_ratings.ratings",
        ),
        (
            "Recommend",
            pb.RecommendRequest(inline_ratings=inline({1: 6.0})),
            "INVALID_ARGUMENT",
            "inline_ratings.ratings.rating",
        ),
        (
            "Recommend",
            pb.RecommendRequest(inline_ratings=inline({1: 0.0})),
            "INVALID_ARGUMENT",
            "inline_ratings.ratings.rating",
        ),
        (
            "Recommend",
            pb.RecommendRequest(inline_ratings=inline({0: 3.0})),
            "INVALID_ARGUMENT",
            "inline_ratings.ratings.movie_id",
        ),
        ("SimilarItems", pb.SimilarItemsRequest(movie_id=99999), "NOT_FOUND", None),
        ("SimilarItems", pb.SimilarItemsRequest(movie_id=1, k=-1), "INVALID_ARGUMENT", "k"),
        ("SimilarItems", pb.SimilarItemsRequest(movie_id=0), "INVALID_ARGUMENT", "movie_id"),
        ("PredictRatings", pb.PredictRatingsRequest(user_id=1), "INVALID_ARGUMENT", "movie_ids"),
        (
            "PredictRatings",
            pb.PredictRatingsRequest(user_id=1, movie_ids=[99999]),
            "NOT_FOUND",
            None,
        ),
    ],
)
def test_errors(stack, method, request_message, code, field):
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stack["stub"], method)(request_message, timeout=5)
    assert caught.value.code() == grpc.StatusCode[code], caught.value.details()
    if field:
        assert field_violations(caught.value)[0][0] == field
    assert "Traceback" not in caught.value.details()


def test_model_service_down_is_unavailable_not_a_hang(trained_run, redis_server):
    """A gateway whose model service is gone answers UNAVAILABLE well before its deadline
    (10 s: a gateway waiting on the dead upstream until then would answer
    DEADLINE_EXCEEDED)."""
    from recsys.redis_server import free_port

    dead = f"127.0.0.1:{free_port()}"
    settings = Settings(gateway_port=0, feature_addr=dead, model_addr=dead, upstream_timeout_s=2)

    async def gateway():
        return await gateway_server(settings, Upstreams.connect(settings))

    with ServiceThread(gateway) as running, grpc.insecure_channel(running.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.SimilarItems(pb.SimilarItemsRequest(movie_id=1), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "model service" in caught.value.details()


def test_health_and_reflection(stack):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(stack["channel"])
    for service in ("", "recsys.gateway.v1.GatewayService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(stack["channel"])
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="recsys.gateway.v1.GatewayService"
    )
    reply = next(reflection.ServerReflectionInfo(iter([request]), timeout=5))
    assert reply.file_descriptor_response.file_descriptor_proto  # clients can discover the API


def test_a_model_version_without_features_is_unavailable(stack, tmp_path):
    """The model service moved to a version whose features are not loaded (a rollout in
    progress): UNAVAILABLE, never NOT_FOUND for a user or movie that exists."""
    from recsys.artifacts import copy_version
    from services.model.predictor import Predictor

    copy = copy_version(stack.artifact.path, tmp_path, "29990101T000000000000Z")
    serving = stack.holder.predictor
    stack.holder.predictor = Predictor.load(str(tmp_path), copy.name)
    try:
        for call in (
            lambda: stack.stub.Recommend(pb.RecommendRequest(user_id=3), timeout=5),
            lambda: stack.stub.SimilarItems(pb.SimilarItemsRequest(movie_id=1), timeout=5),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "not loaded" in caught.value.details()
    finally:
        stack.holder.predictor = serving
    assert stack.stub.Recommend(pb.RecommendRequest(user_id=3), timeout=5).items


def test_the_callers_deadline_is_passed_downstream():
    """A model service that records the deadline of the calls it gets: the gateway's call
    carries the caller's remaining time (0.4 s), not its own 2 s upstream timeout."""
    import asyncio

    from recsys.api.model.v1 import model_pb2_grpc
    from recsys.serving.server import Service

    seen: list[float] = []

    class SlowModel(model_pb2_grpc.ModelServiceServicer):
        async def GetModelInfo(self, request, context):  # the flow's first downstream call
            seen.append(context.time_remaining())
            await asyncio.sleep(1.0)
            raise AssertionError("the caller should have given up")

    async def serving() -> bool:
        return True

    async def model():
        service = Service(Settings(), ["recsys.model.v1.ModelService"])
        model_pb2_grpc.add_ModelServiceServicer_to_server(SlowModel(), service.server)
        service.bind(0)
        service.watch_readiness(serving)  # the gateway calls only a SERVING model service
        return service

    with ServiceThread(model) as slow:
        settings = Settings(
            gateway_port=0,
            feature_addr=slow.address,
            model_addr=slow.address,
            upstream_timeout_s=2.0,
        )

        async def gateway():
            return await gateway_server(settings, Upstreams.connect(settings))

        with (
            ServiceThread(gateway) as running,
            grpc.insecure_channel(running.address) as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            gateway_pb2_grpc.GatewayServiceStub(channel).SimilarItems(
                pb.SimilarItemsRequest(movie_id=1), timeout=0.4
            )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(seen) == 1 and 0 < seen[0] <= 0.4, seen


def test_a_catalog_slower_than_a_deadline_is_fetched_once_and_kept():
    """Upstreams whose catalog takes 0.8 s to page through (two ListItems pages of 0.4 s):
    a search with 0.3 s to live gives up with DEADLINE_EXCEEDED, but the fetch it started
    goes on under the upstream timeout; the next search is answered from it, and the
    catalog was read once (before, each request fetched it anew with its own
    deadline, so at MovieLens 25M's size no request ever got an answer)."""
    import asyncio
    import time

    from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
    from recsys.api.model.v1 import model_pb2, model_pb2_grpc
    from recsys.serving.server import Service

    pages: list[str] = []

    class Model(model_pb2_grpc.ModelServiceServicer):
        async def GetModelInfo(self, request, context):
            return model_pb2.GetModelInfoResponse(model_version="v1", item_count=2)

    class SlowCatalog(feature_pb2_grpc.FeatureServiceServicer):
        async def GetNormalization(self, request, context):
            return feature_pb2.GetNormalizationResponse(
                model_version=request.model_version,
                global_mean=3.5,
                item_means=feature_pb2.SparseVector(movie_ids=[1, 2], values=[0.1, -0.1]),
                rating_min=1.0,
                rating_max=5.0,
            )

        async def ListItems(self, request, context):
            pages.append(request.page_token)
            await asyncio.sleep(0.4)
            first = request.page_token == ""
            item = feature_pb2.Item(
                movie_id=1 if first else 2, title="Alien" if first else "Aliens"
            )
            return feature_pb2.ListItemsResponse(
                items=[item], next_page_token="p2" if first else "", total_size=2
            )

    async def serving() -> bool:
        return True

    async def upstreams():
        service = Service(Settings(), ["recsys.model.v1.ModelService"])
        model_pb2_grpc.add_ModelServiceServicer_to_server(Model(), service.server)
        feature_pb2_grpc.add_FeatureServiceServicer_to_server(SlowCatalog(), service.server)
        service.bind(0)
        service.watch_readiness(serving)
        return service

    with ServiceThread(upstreams) as fake:
        settings = Settings(
            gateway_port=0, feature_addr=fake.address, model_addr=fake.address,
            upstream_timeout_s=2.0,
        )  # fmt: skip

        async def gateway():
            return await gateway_server(settings, Upstreams.connect(settings))

        with (
            ServiceThread(gateway) as running,
            grpc.insecure_channel(running.address) as channel,
        ):
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.SearchMovies(pb.SearchMoviesRequest(query="alien"), timeout=0.3)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            deadline = time.monotonic() + 10
            while len(pages) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)  # the fetch goes on without the request that started it
            # answered from that fetch (cached by now, or still awaited: not fetched anew)
            found = stub.SearchMovies(pb.SearchMoviesRequest(query="alien"), timeout=5)
    assert [m.title for m in found.movies] == ["Alien", "Aliens"]
    assert found.model_version == "v1"
    assert pages == ["", "p2"]  # fetched once


def test_stage_timings_explain_a_request(stack):
    """Recommend returns the time of each stage as trailing metadata and adds it to the
    recsys_gateway_stage_seconds histogram (the gateway runs in this process), also when
    the request fails."""
    from prometheus_client import REGISTRY

    def observed(stage: str) -> tuple[float, float]:
        labels = {"method": "Recommend", "stage": stage}
        count = REGISTRY.get_sample_value("recsys_gateway_stage_seconds_count", labels)
        total = REGISTRY.get_sample_value("recsys_gateway_stage_seconds_sum", labels)
        return count or 0.0, total or 0.0

    before = {stage: observed(stage) for stage in ("features", "model", "rank")}
    _, call = stack.stub.Recommend.with_call(pb.RecommendRequest(user_id=3, k=5), timeout=10)
    stages = dict(call.trailing_metadata())["recsys-stage-ms"]
    timings = {name: float(ms) for name, ms in (part.split("=") for part in stages.split(","))}
    assert set(timings) == {"features", "model", "rank"}
    assert all(ms >= 0 for ms in timings.values())
    for stage, (count, total) in before.items():
        now_count, now_total = observed(stage)
        assert now_count == count + 1
        # the header rounds to 0.01 ms; the histogram holds the unrounded seconds
        assert now_total - total == pytest.approx(timings[stage] / 1000, abs=1e-5)
    # a failed request's stages count too: an unknown user fails in the feature stage
    before = {stage: observed(stage) for stage in ("features", "model")}
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.Recommend(pb.RecommendRequest(user_id=987_654_321, k=5), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert observed("features")[0] == before["features"][0] + 1
    assert observed("model")[0] == before["model"][0]


def test_the_request_id_reaches_every_service(stack, caplog):
    """The caller's x-request-id is used by the gateway and passed to the feature and model
    services (with the ids of the other requests of a coalesced call, comma-separated);
    every service's log lines for the request carry it."""
    import logging

    from recsys.logs import JsonFormatter  # installs the record factory that adds request_id

    with caplog.at_level(logging.DEBUG, logger="recsys.serving.errors"):
        stack.stub.Recommend(
            pb.RecommendRequest(user_id=3, k=3), metadata=(("x-request-id", "req-42"),), timeout=10
        )
    lines = [JsonFormatter().format(r) for r in caplog.records if r.getMessage() == "rpc"]
    methods = {line.split('"method": "')[1].split('"')[0] for line in lines if "req-42" in line}
    assert {
        "/recsys.gateway.v1.GatewayService/Recommend",
        "/recsys.feature.v1.FeatureService/BatchGetUserFeatures",
        "/recsys.model.v1.ModelService/BatchPredict",
    } <= methods, lines
