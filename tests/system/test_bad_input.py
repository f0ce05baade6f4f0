"""Every RPC's invalid inputs and the status each gets, one test per row, through the real
stack. The "Bad input" table of docs/api.md is rendered from ROWS (a test checks it is there
verbatim), so the documentation cannot drift from what is tested. A refused write changes
nothing in Redis."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import grpc
import numpy as np
import pytest
import redis

from recsys.api.feature.v1 import feature_pb2 as fpb
from recsys.api.feature.v1 import feature_pb2_grpc
from recsys.api.gateway.v1 import gateway_pb2 as gpb
from recsys.api.model.v1 import model_pb2 as mpb
from recsys.api.model.v1 import model_pb2_grpc
from recsys.serving.auth import WRITE_METHODS
from recsys.serving.errors import field_violations
from tests.support.redis_snapshot import snapshot
from tests.support.stack import running_stack

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
KNOWN_USER = 3
UNKNOWN_USER = 999_999
UNKNOWN_MOVIE = 99_999  # not in the synthetic catalog or the model
TOO_BIG_ID = 2**31  # beyond the int32 the packed vectors store
NOT_LOADED = "20000101T000000000000Z"  # a well-formed version that was never loaded
PACKAGES = {
    "gateway": "recsys.gateway.v1.GatewayService",
    "feature": "recsys.feature.v1.FeatureService",
    "model": "recsys.model.v1.ModelService",
}


class Row(NamedTuple):
    service: str  # gateway, feature, model
    rpc: str
    invalid: str  # what is wrong, as docs/api.md says it
    request: object
    code: str
    field: str | None  # the BadRequest field violation, for INVALID_ARGUMENT

    @property
    def method(self) -> str:
        return f"/{PACKAGES[self.service]}/{self.rpc}"

    def markdown(self) -> str:
        field = f"`{self.field}`" if self.field else "–"
        return f"| {self.service} | `{self.rpc}` | {self.invalid} | `{self.code}` | {field} |"


def packed_rows(offsets, movie_ids, values) -> mpb.PackedRows:
    return mpb.PackedRows(
        offsets=np.array(offsets, "<i4").tobytes(),
        movie_ids=np.array(movie_ids, "<i4").tobytes(),
        values=np.array(values, "<f4").tobytes(),
    )


def grating(movie_id=1, rating=4.0):
    return gpb.Rating(movie_id=movie_id, rating=rating)


def frating(movie_id=1, rating=4.0):
    return fpb.Rating(movie_id=movie_id, rating=rating)


def inline(*ratings):
    return gpb.InlineRatings(ratings=list(ratings))


def prefs(movie_ids, values):
    return mpb.SparseVector(movie_ids=movie_ids, values=values)


GOOD_PREFS = prefs([1, 2], [0.5, -0.5])
IA, NF, FP = "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"

ROWS = [
    # gateway
    Row(
        "gateway",
        "Recommend",
        "no user (neither `user_id` nor `inline_ratings`)",
        gpb.RecommendRequest(k=3),
        IA,
        "user",
    ),
    Row("gateway", "Recommend", "`user_id` ≤ 0", gpb.RecommendRequest(user_id=-1), IA, "user_id"),
    Row(
        "gateway",
        "Recommend",
        "`user_id` with no stored ratings",
        gpb.RecommendRequest(user_id=UNKNOWN_USER),
        NF,
        None,
    ),
    Row("gateway", "Recommend", "`k` < 0", gpb.RecommendRequest(user_id=KNOWN_USER, k=-1), IA, "k"),
    Row(
        "gateway",
        "Recommend",
        "`k` > 1000",
        gpb.RecommendRequest(user_id=KNOWN_USER, k=1001),
        IA,
        "k",
    ),
    Row(
        "gateway",
        "Recommend",
        "`inline_ratings` empty",
        gpb.RecommendRequest(inline_ratings=inline()),
        IA,
        "inline_ratings.ratings",
    ),
    Row(
        "gateway",
        "Recommend",
        "more than 10,000 inline ratings",
        gpb.RecommendRequest(inline_ratings=inline(*[grating(m) for m in range(1, 10_002)])),
        IA,
        "inline_ratings.ratings",
    ),
    Row(
        "gateway",
        "Recommend",
        "an inline rating off the rating scale (6, NaN)",
        gpb.RecommendRequest(inline_ratings=inline(grating(rating=float("nan")))),
        IA,
        "inline_ratings.ratings.rating",
    ),
    Row(
        "gateway",
        "Recommend",
        "an inline `movie_id` ≤ 0 or ≥ 2³¹",
        gpb.RecommendRequest(inline_ratings=inline(grating(TOO_BIG_ID))),
        IA,
        "inline_ratings.ratings.movie_id",
    ),
    Row(
        "gateway",
        "PredictRatings",
        "no `movie_ids`",
        gpb.PredictRatingsRequest(user_id=KNOWN_USER),
        IA,
        "movie_ids",
    ),
    Row(
        "gateway",
        "PredictRatings",
        "more than 10,000 `movie_ids`",
        gpb.PredictRatingsRequest(user_id=KNOWN_USER, movie_ids=range(1, 10_002)),
        IA,
        "movie_ids",
    ),
    Row(
        "gateway",
        "PredictRatings",
        "a `movie_id` ≤ 0",
        gpb.PredictRatingsRequest(user_id=KNOWN_USER, movie_ids=[1, 0]),
        IA,
        "movie_ids",
    ),
    Row(
        "gateway",
        "PredictRatings",
        "a movie the model does not cover",
        gpb.PredictRatingsRequest(user_id=KNOWN_USER, movie_ids=[UNKNOWN_MOVIE]),
        NF,
        None,
    ),
    Row(
        "gateway", "PredictRatings", "no user", gpb.PredictRatingsRequest(movie_ids=[1]), IA, "user"
    ),
    Row(
        "gateway",
        "SimilarItems",
        "`movie_id` ≤ 0",
        gpb.SimilarItemsRequest(movie_id=0),
        IA,
        "movie_id",
    ),
    Row(
        "gateway",
        "SimilarItems",
        "`k` < 0 or > 1000",
        gpb.SimilarItemsRequest(movie_id=1, k=5000),
        IA,
        "k",
    ),
    Row(
        "gateway",
        "SimilarItems",
        "an unknown `metric` (e.g. 7)",
        gpb.SimilarItemsRequest(movie_id=1, metric=7),
        IA,
        "metric",
    ),
    Row(
        "gateway",
        "SimilarItems",
        "a movie the model does not cover",
        gpb.SimilarItemsRequest(movie_id=UNKNOWN_MOVIE),
        NF,
        None,
    ),
    Row("gateway", "SearchMovies", "an empty `query`", gpb.SearchMoviesRequest(), IA, "query"),
    Row(
        "gateway",
        "SearchMovies",
        "a `query` over 200 characters",
        gpb.SearchMoviesRequest(query="x" * 201),
        IA,
        "query",
    ),
    Row(
        "gateway",
        "SearchMovies",
        "`page_size` < 0 or > 100",
        gpb.SearchMoviesRequest(query="movie", page_size=101),
        IA,
        "page_size",
    ),
    Row(
        "gateway",
        "SearchMovies",
        "a `page_token` it did not give, or of another query",
        gpb.SearchMoviesRequest(query="movie", page_token="bm90IGEgdG9rZW4"),
        IA,
        "page_token",
    ),
    Row(
        "gateway",
        "RateItems",
        "`user_id` ≤ 0",
        gpb.RateItemsRequest(user_id=0, ratings=[grating()]),
        IA,
        "user_id",
    ),
    Row(
        "gateway",
        "RateItems",
        "no `ratings`",
        gpb.RateItemsRequest(user_id=KNOWN_USER),
        IA,
        "ratings",
    ),
    Row(
        "gateway",
        "RateItems",
        "more than 1000 `ratings`",
        gpb.RateItemsRequest(user_id=KNOWN_USER, ratings=[grating(m) for m in range(1, 1002)]),
        IA,
        "ratings",
    ),
    Row(
        "gateway",
        "RateItems",
        "a rating off the scale (0.5 on 1–5, ∞, NaN)",
        gpb.RateItemsRequest(user_id=KNOWN_USER, ratings=[grating(), grating(2, 0.5)]),
        IA,
        "ratings.rating",
    ),
    Row(
        "gateway",
        "RateItems",
        "a `movie_id` ≤ 0 or ≥ 2³¹",
        gpb.RateItemsRequest(user_id=KNOWN_USER, ratings=[grating(-5)]),
        IA,
        "ratings.movie_id",
    ),
    Row(
        "gateway",
        "DeleteRatings",
        "`user_id` ≤ 0",
        gpb.DeleteRatingsRequest(user_id=-3, movie_ids=[1]),
        IA,
        "user_id",
    ),
    Row(
        "gateway",
        "DeleteRatings",
        "no `movie_ids`, or more than 1000",
        gpb.DeleteRatingsRequest(user_id=KNOWN_USER),
        IA,
        "movie_ids",
    ),
    Row(
        "gateway",
        "DeleteRatings",
        "a `movie_id` ≤ 0 or ≥ 2³¹",
        gpb.DeleteRatingsRequest(user_id=KNOWN_USER, movie_ids=[TOO_BIG_ID]),
        IA,
        "movie_ids",
    ),
    Row(
        "gateway",
        "DeleteRatings",
        "a user with no stored ratings",
        gpb.DeleteRatingsRequest(user_id=UNKNOWN_USER, movie_ids=[1]),
        NF,
        None,
    ),
    Row("gateway", "DeleteUser", "`user_id` ≤ 0", gpb.DeleteUserRequest(user_id=0), IA, "user_id"),
    Row(
        "gateway",
        "DeleteUser",
        "a user with no stored ratings",
        gpb.DeleteUserRequest(user_id=UNKNOWN_USER),
        NF,
        None,
    ),
    # feature service
    Row(
        "feature",
        "GetUserFeatures",
        "`user_id` ≤ 0",
        fpb.GetUserFeaturesRequest(user_id=0),
        IA,
        "user_id",
    ),
    Row(
        "feature",
        "GetUserFeatures",
        "a user with no stored ratings",
        fpb.GetUserFeaturesRequest(user_id=UNKNOWN_USER),
        NF,
        None,
    ),
    Row(
        "feature",
        "GetUserFeatures",
        "a malformed `model_version` (e.g. `a:b`)",
        fpb.GetUserFeaturesRequest(user_id=KNOWN_USER, model_version="a:b"),
        IA,
        "model_version",
    ),
    Row(
        "feature",
        "GetUserFeatures",
        "a `model_version` never loaded",
        fpb.GetUserFeaturesRequest(user_id=KNOWN_USER, model_version=NOT_LOADED),
        NF,
        None,
    ),
    Row(
        "feature",
        "BatchGetUserFeatures",
        "no `user_ids`, or more than 1000",
        fpb.BatchGetUserFeaturesRequest(),
        IA,
        "user_ids",
    ),
    Row(
        "feature",
        "BatchGetUserFeatures",
        "a user id ≤ 0",
        fpb.BatchGetUserFeaturesRequest(user_ids=[1, -1]),
        IA,
        "user_ids",
    ),
    Row(
        "feature",
        "GetNormalization",
        "a `model_version` never loaded",
        fpb.GetNormalizationRequest(model_version=NOT_LOADED),
        NF,
        None,
    ),
    Row(
        "feature",
        "GetItems",
        "no `movie_ids`, or more than 1000",
        fpb.GetItemsRequest(),
        IA,
        "movie_ids",
    ),
    Row(
        "feature", "GetItems", "a movie id ≤ 0", fpb.GetItemsRequest(movie_ids=[0]), IA, "movie_ids"
    ),
    Row(
        "feature",
        "ListItems",
        "`page_size` < 0 or > 1000",
        fpb.ListItemsRequest(page_size=-1),
        IA,
        "page_size",
    ),
    Row(
        "feature",
        "ListItems",
        "a `page_token` the service did not issue",
        fpb.ListItemsRequest(page_token="bm90LWEtdG9rZW4"),
        IA,
        "page_token",
    ),
    Row(
        "feature",
        "UpsertRatings",
        "`user_id` ≤ 0",
        fpb.UpsertRatingsRequest(user_id=0, ratings=[frating()]),
        IA,
        "user_id",
    ),
    Row(
        "feature",
        "UpsertRatings",
        "no `ratings`, or more than 1000",
        fpb.UpsertRatingsRequest(user_id=KNOWN_USER),
        IA,
        "ratings",
    ),
    Row(
        "feature",
        "UpsertRatings",
        "a `movie_id` ≤ 0 or ≥ 2³¹",
        fpb.UpsertRatingsRequest(user_id=KNOWN_USER, ratings=[frating(), frating(TOO_BIG_ID)]),
        IA,
        "ratings.movie_id",
    ),
    Row(
        "feature",
        "UpsertRatings",
        "a rating off the version's scale",
        fpb.UpsertRatingsRequest(user_id=KNOWN_USER, ratings=[frating(rating=float("inf"))]),
        IA,
        "ratings.rating",
    ),
    Row(
        "feature",
        "DeleteRatings",
        "no `movie_ids`",
        fpb.DeleteRatingsRequest(user_id=KNOWN_USER),
        IA,
        "movie_ids",
    ),
    Row(
        "feature",
        "DeleteRatings",
        "a user with no stored ratings",
        fpb.DeleteRatingsRequest(user_id=UNKNOWN_USER, movie_ids=[1]),
        NF,
        None,
    ),
    Row("feature", "DeleteUser", "`user_id` ≤ 0", fpb.DeleteUserRequest(user_id=-1), IA, "user_id"),
    Row(
        "feature",
        "DeleteUser",
        "a user with no stored ratings",
        fpb.DeleteUserRequest(user_id=UNKNOWN_USER),
        NF,
        None,
    ),
    # model service
    Row(
        "model",
        "Predict",
        "`movie_ids` and `values` of different lengths",
        mpb.PredictRequest(preferences=prefs([1, 2], [0.5])),
        IA,
        "preferences",
    ),
    Row(
        "model",
        "Predict",
        "a movie id ≤ 0",
        mpb.PredictRequest(preferences=prefs([0], [0.5])),
        IA,
        "preferences.movie_ids",
    ),
    Row(
        "model",
        "Predict",
        "a movie id twice",
        mpb.PredictRequest(preferences=prefs([1, 1], [0.5, 0.5])),
        IA,
        "preferences.movie_ids",
    ),
    Row(
        "model",
        "Predict",
        "a movie id twice, out of order",
        mpb.PredictRequest(preferences=prefs([3, 1, 3], [0.5, 0.5, 0.5])),
        IA,
        "preferences.movie_ids",
    ),
    Row(
        "model",
        "Predict",
        "a value not finite or beyond ±100",
        mpb.PredictRequest(preferences=prefs([1], [float("nan")])),
        IA,
        "preferences.values",
    ),
    Row(
        "model",
        "Predict",
        "more than 20,000 preferences",
        mpb.PredictRequest(preferences=prefs(list(range(1, 20_002)), [0.0] * 20_001)),
        IA,
        "preferences",
    ),
    Row(
        "model",
        "Predict",
        "`top_k.k` < 1 or > 1000",
        mpb.PredictRequest(preferences=GOOD_PREFS, top_k=mpb.TopK(k=0)),
        IA,
        "top_k.k",
    ),
    Row(
        "model",
        "Predict",
        "`given_items` empty",
        mpb.PredictRequest(preferences=GOOD_PREFS, given_items=mpb.GivenItems()),
        IA,
        "given_items.movie_ids",
    ),
    Row(
        "model",
        "Predict",
        "a given movie the model does not cover",
        mpb.PredictRequest(
            preferences=GOOD_PREFS, given_items=mpb.GivenItems(movie_ids=[UNKNOWN_MOVIE])
        ),
        NF,
        None,
    ),
    Row(
        "model",
        "Predict",
        "a `model_version` other than the loaded one",
        mpb.PredictRequest(preferences=GOOD_PREFS, model_version=NOT_LOADED),
        FP,
        None,
    ),
    Row(
        "model",
        "BatchPredict",
        "no `requests`, or more than 256",
        mpb.BatchPredictRequest(),
        IA,
        "requests",
    ),
    Row(
        "model",
        "BatchPredict",
        "an invalid request (fields prefixed `requests[i].`)",
        mpb.BatchPredictRequest(
            requests=[
                mpb.PredictRequest(preferences=GOOD_PREFS),
                mpb.PredictRequest(preferences=prefs([1], [1e9])),
            ]
        ),
        IA,
        "requests[1].preferences.values",
    ),
    Row(
        "model",
        "BatchPredict",
        "`packed` offsets that do not end at the number of movie ids",
        mpb.BatchPredictRequest(
            packed=mpb.PackedPredictRequest(
                preferences=packed_rows([0, 3], [1, 2], [0.5, 0.5]),
                k=np.array([5], "<i4").tobytes(),
                rank_by=np.zeros(1, "<i4").tobytes(),
            )
        ),
        IA,
        "packed.preferences.offsets",
    ),
    Row(
        "model",
        "BatchPredict",
        "`packed`: a movie id twice in one row",
        mpb.BatchPredictRequest(
            packed=mpb.PackedPredictRequest(
                preferences=packed_rows([0, 2], [7, 7], [0.5, 0.5]),
                k=np.array([5], "<i4").tobytes(),
                rank_by=np.zeros(1, "<i4").tobytes(),
            )
        ),
        IA,
        "packed.preferences.movie_ids",
    ),
    Row(
        "model",
        "BatchPredict",
        "`packed` with no `k` per row",
        mpb.BatchPredictRequest(
            packed=mpb.PackedPredictRequest(preferences=packed_rows([0, 1], [1], [0.5]))
        ),
        IA,
        "packed.k",
    ),
    Row(
        "model",
        "BatchSimilarItems",
        "no `requests`, or more than 256",
        mpb.BatchSimilarItemsRequest(),
        IA,
        "requests",
    ),
    Row(
        "model",
        "BatchSimilarItems",
        "an invalid request (fields prefixed `requests[i].`)",
        mpb.BatchSimilarItemsRequest(
            requests=[
                mpb.SimilarItemsRequest(movie_id=1, k=3),
                mpb.SimilarItemsRequest(movie_id=1, k=5000),
            ]
        ),
        IA,
        "requests[1].k",
    ),
    Row(
        "model",
        "SimilarItems",
        "`movie_id` ≤ 0",
        mpb.SimilarItemsRequest(movie_id=-1, k=5),
        IA,
        "movie_id",
    ),
    Row("model", "SimilarItems", "`k` < 1 or > 1000", mpb.SimilarItemsRequest(movie_id=1), IA, "k"),
    Row(
        "model",
        "SimilarItems",
        "an unknown `metric` or `direction`",
        mpb.SimilarItemsRequest(movie_id=1, k=5, direction=9),
        IA,
        "direction",
    ),
    Row(
        "model",
        "SimilarItems",
        "a movie the model does not cover",
        mpb.SimilarItemsRequest(movie_id=UNKNOWN_MOVIE, k=5),
        NF,
        None,
    ),
    Row(
        "gateway",
        "Recommend",
        "an unknown `rank_by`",
        gpb.RecommendRequest(user_id=KNOWN_USER, rank_by=7),
        IA,
        "rank_by",
    ),
    Row(
        "gateway",
        "ExplainPrediction",
        "no user (neither `user_id` nor `inline_ratings`)",
        gpb.ExplainPredictionRequest(movie_id=1),
        IA,
        "user",
    ),
    Row(
        "gateway",
        "ExplainPrediction",
        "`user_id` with no stored ratings",
        gpb.ExplainPredictionRequest(user_id=UNKNOWN_USER, movie_id=1),
        NF,
        None,
    ),
    Row(
        "gateway",
        "ExplainPrediction",
        "`movie_id` ≤ 0",
        gpb.ExplainPredictionRequest(user_id=KNOWN_USER, movie_id=0),
        IA,
        "movie_id",
    ),
    Row(
        "gateway",
        "ExplainPrediction",
        "a movie the model does not cover",
        gpb.ExplainPredictionRequest(user_id=KNOWN_USER, movie_id=UNKNOWN_MOVIE),
        NF,
        None,
    ),
    Row(
        "gateway",
        "ExplainPrediction",
        "`max_contributions` < 0 or > 1000",
        gpb.ExplainPredictionRequest(user_id=KNOWN_USER, movie_id=1, max_contributions=1001),
        IA,
        "max_contributions",
    ),
    Row(
        "model",
        "Predict",
        "an unknown `top_k.rank_by`",
        mpb.PredictRequest(top_k=mpb.TopK(k=5, rank_by=9)),
        IA,
        "top_k.rank_by",
    ),
    Row("model", "Explain", "`movie_id` ≤ 0", mpb.ExplainRequest(movie_id=0), IA, "movie_id"),
    Row(
        "model",
        "Explain",
        "`max_contributions` < 0 or > 1000",
        mpb.ExplainRequest(movie_id=1, max_contributions=-1),
        IA,
        "max_contributions",
    ),
    Row(
        "model",
        "Explain",
        "a movie the model does not cover",
        mpb.ExplainRequest(movie_id=UNKNOWN_MOVIE),
        NF,
        None,
    ),
    Row(
        "model",
        "Explain",
        "a version not loaded",
        mpb.ExplainRequest(movie_id=1, model_version=NOT_LOADED),
        FP,
        None,
    ),
]


def row_id(row: Row) -> str:
    return f"{row.service}.{row.rpc}:{row.invalid}"


@pytest.fixture(scope="module")
def stack(trained_run, redis_server):
    with running_stack(trained_run, redis_server.url) as running:
        yield running


def stub_of(stack, service: str):
    if service == "gateway":
        return stack.stub, None
    channel = grpc.insecure_channel(
        stack.features.address if service == "feature" else stack.model.address
    )
    if service == "feature":
        return feature_pb2_grpc.FeatureServiceStub(channel), channel
    return model_pb2_grpc.ModelServiceStub(channel), channel


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_invalid_input(stack, row):
    stub, channel = stub_of(stack, row.service)
    try:
        with redis.Redis.from_url(stack.redis_url) as client:
            before = snapshot(client) if row.method in WRITE_METHODS else None
            with pytest.raises(grpc.RpcError) as caught:
                getattr(stub, row.rpc)(row.request, timeout=20)
            if before is not None:
                assert snapshot(client) == before, "a refused write changed Redis"
    finally:
        if channel is not None:
            channel.close()
    error = caught.value
    assert error.code() == grpc.StatusCode[row.code], error.details()
    assert "Traceback" not in (error.details() or "")
    if row.field:
        assert field_violations(error)[0][0] == row.field, error.details()


def test_the_api_doc_table_is_the_tested_one():
    text = API_DOC.read_text()
    missing = [row.markdown() for row in ROWS if row.markdown() not in text]
    assert not missing, "docs/api.md's bad-input table lacks:\n" + "\n".join(missing)


def test_every_rpc_has_a_row():
    from recsys.api.feature.v1 import feature_pb2
    from recsys.api.gateway.v1 import gateway_pb2
    from recsys.api.model.v1 import model_pb2

    covered = {row.method for row in ROWS}
    every = {
        f"/{service.full_name}/{method.name}"
        for module in (gateway_pb2, feature_pb2, model_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    # GetModelInfo takes no input: nothing in it can be invalid
    assert every - covered == {"/recsys.model.v1.ModelService/GetModelInfo"}


@pytest.mark.slow
@pytest.mark.parametrize("service", sorted(PACKAGES))
def test_undecodable_request_bytes_are_invalid_argument(stack, service):
    """Bytes that are not a protobuf message: INVALID_ARGUMENT (grpc itself would answer
    UNKNOWN with the parser's exception text)."""
    rpc = {"gateway": "RateItems", "feature": "UpsertRatings", "model": "Predict"}[service]
    address = {
        "gateway": stack.gateway.address,
        "feature": stack.features.address,
        "model": stack.model.address,
    }[service]
    with grpc.insecure_channel(address) as channel, redis.Redis.from_url(stack.redis_url) as r:
        before = snapshot(r)
        call = channel.unary_unary(f"/{PACKAGES[service]}/{rpc}")  # raw bytes both ways
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\xff\xff\xff\x0f", timeout=10)
        assert snapshot(r) == before
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid message" in caught.value.details()
