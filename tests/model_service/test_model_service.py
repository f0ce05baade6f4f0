"""The model service through a real channel: predictions equal the offline model's, errors
carry the right codes, health follows the model's loading."""

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from recsys.api.model.v1 import model_pb2 as pb
from recsys.api.model.v1 import model_pb2_grpc
from recsys.serving.config import Settings
from recsys.serving.errors import field_violations
from services.model.predictor import Predictor, PredictorHolder
from services.model.server import create_server
from tests.support.servers import serving, wait_serving
from tests.support.stack import swap_on

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def predictor(trained_run):
    _, run = trained_run
    return Predictor.load(str(run.artifact_path.parent), run.artifact_path.name)


@pytest.fixture(scope="module")
def model_stub(predictor):
    holder = PredictorHolder(predictor)
    with serving(lambda: create_server(Settings(model_port=0), holder)) as (_, channel):
        wait_serving(channel)
        yield model_pb2_grpc.ModelServiceStub(channel)


RATINGS = {1: 5.0, 5: 4.0, 2: 1.0, 7: 2.0}


def prefs_request(predictor, ratings=RATINGS, **output):
    user = predictor.artifact.recommender.user_vector(ratings)
    ids = predictor.index.item_ids[user.rated_columns]
    values = user.preferences[user.rated_columns]
    return user, pb.PredictRequest(
        preferences=pb.SparseVector(movie_ids=ids.tolist(), values=values.tolist()),
        **output,
    )


def test_all_items_equal_the_offline_model(model_stub, predictor):
    user, request = prefs_request(predictor, all_items=pb.AllItems())
    reply = model_stub.Predict(request, timeout=5)
    assert reply.model_version == predictor.version
    got = np.array(reply.predictions.values)
    expected = predictor.network.predict(user.preferences[None, :])[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert list(reply.predictions.movie_ids) == predictor.index.item_ids.tolist()


def test_top_k_by_rating_matches_offline_recommend(model_stub, predictor):
    _, request = prefs_request(predictor, top_k=pb.TopK(k=5, exclude_movie_ids=list(RATINGS)))
    reply = model_stub.Predict(request, timeout=5)
    offline = predictor.artifact.recommender.recommend(RATINGS, 5)
    assert list(reply.predictions.movie_ids) == [s.item_id for s in offline]
    assert not set(RATINGS) & set(reply.predictions.movie_ids)


def test_given_items_and_unknown_ones(model_stub, predictor):
    _, request = prefs_request(predictor, given_items=pb.GivenItems(movie_ids=[3, 1]))
    reply = model_stub.Predict(request, timeout=5)
    assert list(reply.predictions.movie_ids) == [3, 1]
    _, request = prefs_request(predictor, given_items=pb.GivenItems(movie_ids=[3, 99999]))
    with pytest.raises(grpc.RpcError) as caught:
        model_stub.Predict(request, timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "99999" in caught.value.details()


def test_unknown_input_items_are_ignored_and_reported(model_stub, predictor):
    request = pb.PredictRequest(
        preferences=pb.SparseVector(movie_ids=[1, 99999], values=[1.0, 1.0])
    )
    assert list(model_stub.Predict(request, timeout=5).ignored_movie_ids) == [99999]


def test_batch_equals_single(model_stub, predictor):
    _, first = prefs_request(predictor, top_k=pb.TopK(k=3))
    _, second = prefs_request(predictor, {4: 5.0, 8: 1.0}, top_k=pb.TopK(k=3))
    batch = model_stub.BatchPredict(pb.BatchPredictRequest(requests=[first, second]), timeout=5)
    singles = [model_stub.Predict(r, timeout=5) for r in (first, second)]
    assert len(batch.responses) == 2
    for batched, single in zip(batch.responses, singles, strict=False):
        assert list(batched.predictions.movie_ids) == list(single.predictions.movie_ids)
        np.testing.assert_allclose(
            list(batched.predictions.values),
            list(single.predictions.values),
            rtol=1e-5,
            atol=1e-6,
        )


def test_similar_items_match_offline(model_stub, predictor):
    reply = model_stub.SimilarItems(pb.SimilarItemsRequest(movie_id=1, k=4), timeout=5)
    offline = predictor.similar(1, 4)
    assert [(i.movie_id, pytest.approx(i.distance)) for i in reply.items] == [
        (s.item_id, s.value) for s in offline
    ]
    far = model_stub.SimilarItems(
        pb.SimilarItemsRequest(
            movie_id=1, k=1, direction=pb.DIRECTION_FARTHEST, metric=pb.METRIC_COSINE
        ),
        timeout=5,
    )
    assert far.items[0].movie_id == predictor.similar(1, 1, "cosine", farthest=True)[0].item_id


@pytest.mark.parametrize(
    ("call", "request_message", "code", "field"),
    [
        ("SimilarItems", pb.SimilarItemsRequest(movie_id=1, k=0), "INVALID_ARGUMENT", "k"),
        ("SimilarItems", pb.SimilarItemsRequest(movie_id=1, k=5000), "INVALID_ARGUMENT", "k"),
        ("SimilarItems", pb.SimilarItemsRequest(movie_id=0, k=5), "INVALID_ARGUMENT", "movie_id"),
        ("SimilarItems", pb.SimilarItemsRequest(movie_id=99999, k=5), "NOT_FOUND", None),
        (
            "SimilarItems",
            pb.SimilarItemsRequest(movie_id=1, k=5, metric=7),
            "INVALID_ARGUMENT",
            "metric",
        ),
        ("Predict", pb.PredictRequest(top_k=pb.TopK(k=0)), "INVALID_ARGUMENT", "top_k.k"),
        (
            "Predict",
            pb.PredictRequest(preferences=pb.SparseVector(movie_ids=[-1], values=[1])),
            "INVALID_ARGUMENT",
            "preferences.movie_ids",
        ),
        (
            "Predict",
            pb.PredictRequest(preferences=pb.SparseVector(movie_ids=[1], values=[float("nan")])),
            "INVALID_ARGUMENT",
            "preferences.values",
        ),
        ("Predict", pb.PredictRequest(model_version="other"), "FAILED_PRECONDITION", None),
        (
            "Predict",
            pb.PredictRequest(preferences=pb.SparseVector(movie_ids=[1], values=[3e38])),
            "INVALID_ARGUMENT",
            "preferences.values",
        ),
        ("BatchPredict", pb.BatchPredictRequest(), "INVALID_ARGUMENT", "requests"),
    ],
)
def test_errors(model_stub, call, request_message, code, field):
    with pytest.raises(grpc.RpcError) as caught:
        getattr(model_stub, call)(request_message, timeout=5)
    assert caught.value.code() == grpc.StatusCode[code], caught.value.details()
    if field:
        assert field_violations(caught.value)[0][0] == field


def test_model_info(model_stub, predictor):
    info = model_stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
    assert (info.model_version, info.item_count, info.encoding_size) == (
        predictor.version,
        len(predictor.index),
        predictor.network.encoding_size,
    )
    assert info.metrics["autoencoder/rmse"] > 0
    assert '"encoding_size"' in info.config_json


def test_unavailable_until_loaded_then_serving(predictor):
    holder = PredictorHolder()
    with serving(lambda: create_server(Settings(model_port=0), holder)) as (running, channel):
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as caught:
            model_pb2_grpc.ModelServiceStub(channel).GetModelInfo(pb.GetModelInfoRequest())
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert swap_on(running, holder, predictor) is None  # loaded, as the server does
        wait_serving(channel, "recsys.model.v1.ModelService")


def test_reflection_lists_the_services():
    holder = PredictorHolder()
    with serving(lambda: create_server(Settings(model_port=0), holder)) as (_, channel):
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for s in next(replies).list_services_response.service}
    assert {"recsys.model.v1.ModelService", "grpc.health.v1.Health"} <= names
