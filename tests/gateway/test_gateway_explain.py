"""ExplainPrediction and Recommend's ranking modes through the gateway (real Redis, the three
services over real channels)."""

import grpc
import pytest

from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.serving.errors import field_violations
from tests.support.stack import running_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(trained_run, redis_server):
    with running_stack(trained_run, redis_server.url) as running:
        yield running


def inline(ratings: dict[int, float]) -> pb.InlineRatings:
    return pb.InlineRatings(ratings=[pb.Rating(movie_id=m, rating=r) for m, r in ratings.items()])


def stored_ratings(stack, user_id: int) -> dict[int, float]:
    ratings = stack.data.ratings
    user = ratings[ratings["user_id"] == user_id]
    return dict(zip(user["item_id"].tolist(), user["rating"].astype(float).tolist(), strict=True))


def test_explanation_adds_up_to_the_predicted_rating(stack):
    ratings = {1: 5.0, 5: 5.0, 9: 4.0, 2: 1.0, 3: 2.0, 99999: 4.0}
    reply = stack.stub.ExplainPrediction(
        pb.ExplainPredictionRequest(
            inline_ratings=inline(ratings), movie_id=13, max_contributions=3
        )
    )
    parts = [c.contribution for c in reply.contributions]
    assert len(parts) == 3 and reply.other_count == 2  # 5 rated movies the model covers
    assert sum(parts) + reply.other_contributions == pytest.approx(
        reply.predicted_preference, abs=1e-6
    )
    assert reply.global_mean + reply.item_mean + reply.user_mean + reply.predicted_preference == (
        pytest.approx(reply.predicted_rating)
    )
    predicted = stack.stub.PredictRatings(
        pb.PredictRatingsRequest(inline_ratings=inline(ratings), movie_ids=[13])
    )
    assert reply.predicted_rating == pytest.approx(
        predicted.predictions[0].predicted_rating, abs=1e-5
    )
    offline = stack.artifact.recommender.explain(ratings, 13, 3)
    assert [c.movie_id for c in reply.contributions] == [c.item_id for c in offline.contributions]
    assert reply.title.startswith("Synthetic Movie") and reply.contributions[0].title
    assert list(reply.ignored_movie_ids) == [99999]
    assert reply.model_version == stack.artifact.version


def test_explanation_of_a_stored_user_and_a_recommendation(stack):
    top = stack.stub.Recommend(pb.RecommendRequest(user_id=3, k=1)).items[0]
    reply = stack.stub.ExplainPrediction(
        pb.ExplainPredictionRequest(user_id=3, movie_id=top.movie_id)
    )
    assert reply.predicted_rating == pytest.approx(top.predicted_rating, abs=1e-5)
    offline = stack.artifact.recommender.explain(stored_ratings(stack, 3), top.movie_id)
    assert reply.predicted_rating == pytest.approx(offline.predicted_rating, abs=1e-4)
    assert len(reply.contributions) == min(10, len(stored_ratings(stack, 3)))


@pytest.mark.parametrize(
    ("request_message", "code", "field"),
    [
        (pb.ExplainPredictionRequest(user_id=3, movie_id=0), "INVALID_ARGUMENT", "movie_id"),
        (
            pb.ExplainPredictionRequest(user_id=3, movie_id=1, max_contributions=1001),
            "INVALID_ARGUMENT",
            "max_contributions",
        ),
        (pb.ExplainPredictionRequest(movie_id=1), "INVALID_ARGUMENT", "user"),
        (pb.ExplainPredictionRequest(user_id=-4, movie_id=1), "INVALID_ARGUMENT", "user_id"),
        (pb.ExplainPredictionRequest(user_id=987654, movie_id=1), "NOT_FOUND", None),
        (pb.ExplainPredictionRequest(user_id=3, movie_id=99999), "NOT_FOUND", None),
    ],
)
def test_explain_errors(stack, request_message, code, field):
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.ExplainPrediction(request_message, timeout=5)
    assert caught.value.code() == grpc.StatusCode[code], caught.value.details()
    if field:
        assert field_violations(caught.value)[0][0] == field


@pytest.mark.parametrize(
    ("rank_by", "mode"),
    [
        (pb.RANK_BY_UNSPECIFIED, "relevance"),
        (pb.RANK_BY_RATING, "rating"),
        (pb.RANK_BY_PREFERENCE, "preference"),
        (pb.RANK_BY_RELEVANCE, "relevance"),
    ],
)
def test_recommend_ranks_as_asked_relevance_by_default(stack, rank_by, mode):
    reply = stack.stub.Recommend(pb.RecommendRequest(user_id=3, k=5, rank_by=rank_by))
    offline = stack.artifact.recommender.recommend(stored_ratings(stack, 3), 5, rank_by=mode)
    assert [i.movie_id for i in reply.items] == [s.item_id for s in offline]
    assert [i.predicted_rating for i in reply.items] == pytest.approx(
        [s.value for s in offline], rel=1e-4
    )


def test_unknown_rank_by_is_refused(stack):
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.Recommend(pb.RecommendRequest(user_id=3, rank_by=7), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value)[0][0] == "rank_by"
