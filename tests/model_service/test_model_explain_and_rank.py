"""The model service's Explain RPC and ranking modes, and a deep model served unchanged,
through real servers and channels."""

import grpc
import keras
import numpy as np
import pytest

from recsys.api.model.v1 import model_pb2 as pb
from recsys.api.model.v1 import model_pb2_grpc
from recsys.serving.config import Settings
from recsys.serving.errors import field_violations
from services.model.predictor import Predictor, PredictorHolder
from services.model.server import create_server
from tests.support.servers import serving, wait_serving

pytestmark = pytest.mark.slow

RATINGS = {1: 5.0, 5: 4.0, 2: 1.0, 7: 2.0, 11: 4.5}


def load(run) -> Predictor:
    return Predictor.load(str(run.artifact_path.parent), run.artifact_path.name)


@pytest.fixture(scope="module")
def linear(trained_run):
    predictor = load(trained_run[1])
    with serving(lambda: create_server(Settings(model_port=0), PredictorHolder(predictor))) as (
        _,
        channel,
    ):
        wait_serving(channel)
        yield predictor, model_pb2_grpc.ModelServiceStub(channel)


@pytest.fixture(scope="module")
def deep(trained_deep_run):
    predictor = load(trained_deep_run[1])
    with serving(lambda: create_server(Settings(model_port=0), PredictorHolder(predictor))) as (
        _,
        channel,
    ):
        wait_serving(channel)
        yield predictor, model_pb2_grpc.ModelServiceStub(channel)


def preferences(predictor, ratings=RATINGS) -> pb.SparseVector:
    user = predictor.artifact.recommender.user_vector(ratings)
    ids = predictor.index.item_ids[user.rated_columns]
    return pb.SparseVector(movie_ids=ids.tolist(), values=user.preferences[user.rated_columns])


def test_contributions_add_up_to_the_prediction(linear):
    predictor, stub = linear
    vector = preferences(predictor)
    everything = stub.Predict(pb.PredictRequest(preferences=vector, all_items=pb.AllItems()))
    predicted = dict(
        zip(everything.predictions.movie_ids, everything.predictions.values, strict=True)
    )
    for movie_id in (3, 9, 1):  # unrated ones and a rated one
        reply = stub.Explain(
            pb.ExplainRequest(preferences=vector, movie_id=movie_id, max_contributions=2)
        )
        parts = [c.contribution for c in reply.contributions]
        assert len(parts) == 2 and reply.other_count == len(RATINGS) - 2
        assert sum(parts) + reply.other_contributions == pytest.approx(
            reply.predicted_preference, abs=1e-6
        )
        assert reply.predicted_preference == pytest.approx(predicted[movie_id], abs=1e-5)
        assert abs(parts[0]) >= abs(parts[1])  # largest |contribution| first
        # each contribution is the input preference × (W_enc W_dec)[j, i], by hand
        network, index = predictor.network, predictor.index
        for c in reply.contributions:
            weight = (
                network.encoder_kernel[index.column(c.movie_id)]
                @ network.decoder_kernel[:, index.column(movie_id)]
            )
            assert c.contribution == pytest.approx(c.preference * weight, rel=1e-4, abs=1e-7)
    whole = stub.Explain(pb.ExplainRequest(preferences=vector, movie_id=3))  # 0 means 10
    assert len(whole.contributions) == len(RATINGS) and whole.other_count == 0
    assert whole.other_contributions == 0


def test_explain_matches_offline_and_reports_ignored(linear):
    predictor, stub = linear
    vector = preferences(predictor)
    vector.movie_ids.append(99999)
    vector.values.append(1.0)
    reply = stub.Explain(pb.ExplainRequest(preferences=vector, movie_id=3))
    offline = predictor.artifact.recommender.explain(RATINGS, 3)
    assert list(reply.ignored_movie_ids) == [99999]
    assert [c.movie_id for c in reply.contributions] == [c.item_id for c in offline.contributions]
    assert reply.predicted_preference == pytest.approx(offline.predicted_preference, abs=1e-5)


@pytest.mark.parametrize(
    ("request_message", "code", "field"),
    [
        (pb.ExplainRequest(movie_id=0), "INVALID_ARGUMENT", "movie_id"),
        (
            pb.ExplainRequest(movie_id=3, max_contributions=5000),
            "INVALID_ARGUMENT",
            "max_contributions",
        ),
        (
            pb.ExplainRequest(movie_id=3, max_contributions=-1),
            "INVALID_ARGUMENT",
            "max_contributions",
        ),
        (
            pb.ExplainRequest(movie_id=3, preferences=pb.SparseVector(movie_ids=[1], values=[])),
            "INVALID_ARGUMENT",
            "preferences",
        ),
        (pb.ExplainRequest(movie_id=99999), "NOT_FOUND", None),
        (pb.ExplainRequest(movie_id=3, model_version="other"), "FAILED_PRECONDITION", None),
    ],
)
def test_explain_errors(linear, request_message, code, field):
    with pytest.raises(grpc.RpcError) as caught:
        linear[1].Explain(request_message, timeout=5)
    assert caught.value.code() == grpc.StatusCode[code], caught.value.details()
    if field:
        assert field_violations(caught.value)[0][0] == field


@pytest.mark.parametrize(
    ("rank_by", "mode"),
    [
        (pb.RANK_BY_UNSPECIFIED, "relevance"),
        (pb.RANK_BY_RELEVANCE, "relevance"),
        (pb.RANK_BY_RATING, "rating"),
        (pb.RANK_BY_PREFERENCE, "preference"),
    ],
)
def test_rank_modes_equal_offline_recommend(linear, rank_by, mode):
    predictor, stub = linear
    top = pb.TopK(k=6, exclude_movie_ids=list(RATINGS), rank_by=rank_by)
    reply = stub.Predict(pb.PredictRequest(preferences=preferences(predictor), top_k=top))
    offline = predictor.artifact.recommender.recommend(RATINGS, 6, rank_by=mode)
    assert list(reply.predictions.movie_ids) == [s.item_id for s in offline]
    assert not set(RATINGS) & set(reply.predictions.movie_ids)


def test_relevance_differs_from_rating_and_unknown_mode_is_refused(linear):
    predictor, stub = linear
    model = predictor.artifact.recommender
    assert model.ranking is not None and model.default_rank_by == "relevance"
    assert [s.item_id for s in model.recommend(RATINGS, 10, rank_by="relevance")] != [
        s.item_id for s in model.recommend(RATINGS, 10, rank_by="rating")
    ]
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(
            pb.PredictRequest(preferences=preferences(predictor), top_k=pb.TopK(k=3, rank_by=9))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value)[0][0] == "top_k.rank_by"


def test_deep_model_is_served_with_keras_predictions(deep, trained_deep_run):
    predictor, stub = deep
    vector = preferences(predictor)
    reply = stub.Predict(pb.PredictRequest(preferences=vector, all_items=pb.AllItems()))
    dense = np.zeros((1, len(predictor.index)), np.float32)
    dense[0, predictor.index.columns(np.array(vector.movie_ids))] = vector.values
    reloaded = keras.saving.load_model(
        trained_deep_run[1].artifact_path / "model.keras", safe_mode=True
    )
    expected = keras.ops.convert_to_numpy(reloaded(dense))[0]
    np.testing.assert_allclose(list(reply.predictions.values), expected, rtol=1e-4, atol=1e-5)
    similar = stub.SimilarItems(pb.SimilarItemsRequest(movie_id=1, k=3))
    assert [i.movie_id for i in similar.items] == [s.item_id for s in predictor.similar(1, 3)]
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert '"hidden_layers": [16]' in info.config_json


def test_deep_model_cannot_be_explained(deep):
    predictor, stub = deep
    with pytest.raises(grpc.RpcError) as caught:
        stub.Explain(pb.ExplainRequest(preferences=preferences(predictor), movie_id=3))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "deep" in caught.value.details()
