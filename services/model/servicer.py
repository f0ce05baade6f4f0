"""ModelService RPCs: protobuf ↔ the predictor's domain objects, and input validation."""

from __future__ import annotations

import json

import numpy as np

from recsys.api.model.v1 import model_pb2, model_pb2_grpc
from recsys.errors import InvalidArgument
from recsys.serving import metrics
from services.model.batching import Batcher
from services.model.predictor import (
    MAX_GIVEN_ITEMS,
    Output,
    Prediction,
    Predictor,
    PredictorHolder,
    check_k,
)

MAX_BATCH = 256
MAX_PREFERENCES = 20_000
MAX_ABS_PREFERENCE = 100.0  # stars; real preferences lie within a few stars of 0
DEFAULT_CONTRIBUTIONS = 10  # Explain's max_contributions when 0
METRICS = {
    model_pb2.METRIC_UNSPECIFIED: "euclidean",
    model_pb2.METRIC_EUCLIDEAN: "euclidean",
    model_pb2.METRIC_COSINE: "cosine",
}


def sparse_vector(request: model_pb2.PredictRequest, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(movie_ids int64, values float32) of a request's preferences, validated."""
    vector = request.preferences
    if len(vector.movie_ids) != len(vector.values):
        raise InvalidArgument("movie_ids and values differ in length", field=field)
    if len(vector.movie_ids) > MAX_PREFERENCES:
        raise InvalidArgument(f"at most {MAX_PREFERENCES} preferences", field=field)
    movie_ids = np.array(vector.movie_ids, dtype=np.int64)
    values = np.array(vector.values, dtype=np.float32)
    if (movie_ids <= 0).any():
        raise InvalidArgument("movie ids must be positive", field=f"{field}.movie_ids")
    if not (np.abs(values) <= MAX_ABS_PREFERENCE).all():  # also refuses NaN and infinities
        raise InvalidArgument(
            f"preference values must be finite and within ±{MAX_ABS_PREFERENCE:g}",
            field=f"{field}.values",
        )
    ascending = (movie_ids[1:] > movie_ids[:-1]).all()  # as the feature service sends them
    if not ascending and len(np.unique(movie_ids)) != len(movie_ids):
        raise InvalidArgument("a movie id appears twice", field=f"{field}.movie_ids")
    return movie_ids, values


def output_of(
    request: model_pb2.PredictRequest, field: str, movie_ids: np.ndarray | None = None
) -> Output:
    """The request's output oneof; `movie_ids`: its preferences' movie ids when already read."""
    which = request.WhichOneof("output")
    if which is None or which == "all_items":
        return Output("all")
    if which == "given_items":
        ids = tuple(request.given_items.movie_ids)
        if not 1 <= len(ids) <= MAX_GIVEN_ITEMS:
            raise InvalidArgument(
                f"give 1 to {MAX_GIVEN_ITEMS} movie ids", field=f"{field}given_items.movie_ids"
            )
        return Output("given", movie_ids=ids)
    top = request.top_k
    return Output(
        "top_k",
        k=check_k(top.k, f"{field}top_k.k"),
        exclude=np.array(top.exclude_movie_ids, dtype=np.int64),
        rank_by=rank_mode(top.rank_by, f"{field}top_k.rank_by"),
        rated_movie_ids=(
            np.array(request.preferences.movie_ids, dtype=np.int64)
            if movie_ids is None
            else movie_ids
        ),
    )


RANK_MODES = {
    model_pb2.RANK_BY_UNSPECIFIED: "",  # the version's default
    model_pb2.RANK_BY_RATING: "rating",
    model_pb2.RANK_BY_PREFERENCE: "preference",
    model_pb2.RANK_BY_RELEVANCE: "relevance",
}


def rank_mode(rank_by: int, field: str) -> str:
    if rank_by not in RANK_MODES:
        raise InvalidArgument(f"unknown rank_by {rank_by}", field=field)
    return RANK_MODES[rank_by]


def predict_response(predictor: Predictor, prediction: Prediction) -> model_pb2.PredictResponse:
    return model_pb2.PredictResponse(
        model_version=predictor.version,
        predictions=model_pb2.SparseVector(
            movie_ids=prediction.movie_ids.tolist(), values=prediction.preferences.tolist()
        ),
        ignored_movie_ids=prediction.ignored_movie_ids,
    )


class ModelServicer(model_pb2_grpc.ModelServiceServicer):
    """`batcher` answers Predict; BatchPredict is already one matrix product."""

    def __init__(self, holder: PredictorHolder, batcher: Batcher | None = None):
        self.holder = holder
        self.batcher = batcher or Batcher(max_size=1, max_wait_us=0, queue_limit=1)

    async def Predict(self, request, context):
        predictor = self.holder.get(request.model_version)
        movie_ids, values = sparse_vector(request, "preferences")
        output = output_of(request, "", movie_ids)
        dense, ignored = predictor.vector(movie_ids, values)
        prediction = await self.batcher.predict(predictor, dense, ignored, output)
        return predict_response(predictor, prediction)

    async def BatchPredict(self, request, context):
        if not 1 <= len(request.requests) <= MAX_BATCH:
            raise InvalidArgument(f"give 1 to {MAX_BATCH} requests", field="requests")
        versions = {r.model_version for r in request.requests}
        if len(versions) > 1:
            raise InvalidArgument(
                f"all requests of a batch must name the same model version, got {sorted(versions)}",
                field="requests.model_version",
            )
        predictor = self.holder.get(versions.pop())
        vectors, outputs = [], []
        for n, one in enumerate(request.requests):
            field = f"requests[{n}]."
            vectors.append(sparse_vector(one, f"{field}preferences"))
            outputs.append(output_of(one, field))
        metrics.BATCH_SIZE.labels("BatchPredict").observe(len(request.requests))
        predictions = predictor.predict_many(vectors, outputs)
        return model_pb2.BatchPredictResponse(
            responses=[predict_response(predictor, p) for p in predictions]
        )

    async def SimilarItems(self, request, context):
        predictor = self.holder.get(request.model_version)
        if request.movie_id <= 0:
            raise InvalidArgument("movie_id must be positive", field="movie_id")
        if request.metric not in METRICS:
            raise InvalidArgument(f"unknown metric {request.metric}", field="metric")
        if request.direction not in model_pb2.Direction.values():
            raise InvalidArgument(f"unknown direction {request.direction}", field="direction")
        items = predictor.similar(
            request.movie_id,
            check_k(request.k),
            METRICS[request.metric],
            farthest=request.direction == model_pb2.DIRECTION_FARTHEST,
        )
        return model_pb2.SimilarItemsResponse(
            model_version=predictor.version,
            items=[model_pb2.ScoredItem(movie_id=s.item_id, distance=s.value) for s in items],
        )

    async def GetModelInfo(self, request, context):
        predictor = self.holder.get()
        artifact = predictor.artifact
        metrics = {
            f"{model}/{name}": float(value)
            for model, scores in artifact.metrics.items()
            for name, value in scores.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        return model_pb2.GetModelInfoResponse(
            model_version=predictor.version,
            item_count=len(predictor.index),
            encoding_size=predictor.network.encoding_size,
            metrics=metrics,
            config_json=json.dumps(artifact.config, sort_keys=True),
            created=artifact.metadata.get("created", ""),
        )

    async def Explain(self, request, context):
        predictor = self.holder.get(request.model_version)
        if request.movie_id <= 0:
            raise InvalidArgument("movie_id must be positive", field="movie_id")
        limit = check_k(request.max_contributions or DEFAULT_CONTRIBUTIONS, "max_contributions")
        movie_ids, values = sparse_vector(request, "preferences")
        explained = predictor.explain(movie_ids, values, request.movie_id, limit)
        return model_pb2.ExplainResponse(
            model_version=predictor.version,
            predicted_preference=explained.predicted_preference,
            contributions=[
                model_pb2.Contribution(
                    movie_id=c.item_id, preference=c.preference, contribution=c.contribution
                )
                for c in explained.contributions
            ],
            other_contributions=explained.other_contribution,
            other_count=explained.other_count,
            ignored_movie_ids=explained.ignored_movie_ids,
        )
