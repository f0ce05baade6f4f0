"""ModelService RPCs: protobuf ↔ the predictor's domain objects, and input validation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import grpc
import numpy as np

from recsys.api.model.v1 import model_pb2, model_pb2_grpc
from recsys.errors import InvalidArgument, NotFound
from recsys.limits import MAX_MOVIE_ID
from recsys.packed import INT32, Codes, Rows
from recsys.serving import metrics
from recsys.serving.enums import DIRECTION, METRIC, RANK_BY
from services.model.batching import Batcher
from services.model.predictor import (
    ALL_ITEMS,
    MAX_GIVEN_ITEMS,
    MAX_K,
    Outputs,
    Predictor,
    PredictorHolder,
    RowPredictions,
    check_k,
)

MAX_BATCH = 256
MAX_PREFERENCES = 20_000
MAX_ABS_PREFERENCE = 100.0  # stars; real preferences lie within a few stars of 0
DEFAULT_CONTRIBUTIONS = 10  # Explain's max_contributions when 0
_NO_IDS = np.empty(0, np.int64)


def sparse_vector(request: model_pb2.PredictRequest, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(movie_ids int64, values float32) of a request's preferences, validated."""
    vector = request.preferences
    if len(vector.movie_ids) != len(vector.values):
        raise InvalidArgument("movie_ids and values differ in length", field=field)
    if len(vector.movie_ids) > MAX_PREFERENCES:
        raise InvalidArgument(f"at most {MAX_PREFERENCES} preferences", field=field)
    movie_ids = np.array(vector.movie_ids, dtype=np.int64)
    values = np.array(vector.values, dtype=np.float32)
    if ((movie_ids <= 0) | (movie_ids > MAX_MOVIE_ID)).any():
        raise InvalidArgument(f"movie ids must be in 1..{MAX_MOVIE_ID}", field=f"{field}.movie_ids")
    if not (np.abs(values) <= MAX_ABS_PREFERENCE).all():  # also refuses NaN and infinities
        raise InvalidArgument(
            f"preference values must be finite and within ±{MAX_ABS_PREFERENCE:g}",
            field=f"{field}.values",
        )
    ascending = (movie_ids[1:] > movie_ids[:-1]).all()  # as the feature service sends them
    if not ascending and len(np.unique(movie_ids)) != len(movie_ids):
        raise InvalidArgument("a movie id appears twice", field=f"{field}.movie_ids")
    return movie_ids, values


@dataclass(frozen=True, eq=False)
class RowOutput:
    """One request's output oneof: its Outputs.k, rank mode, excluded and given ids."""

    k: int
    rank_by: str = ""
    exclude: np.ndarray = field(default_factory=lambda: _NO_IDS)
    given: np.ndarray = field(default_factory=lambda: _NO_IDS)


def output_of(request: model_pb2.PredictRequest, field: str) -> RowOutput:
    which = request.WhichOneof("output")
    if which is None or which == "all_items":
        return RowOutput(ALL_ITEMS)
    if which == "given_items":
        ids = np.array(request.given_items.movie_ids, dtype=np.int64)
        if not 1 <= len(ids) <= MAX_GIVEN_ITEMS:
            raise InvalidArgument(
                f"give 1 to {MAX_GIVEN_ITEMS} movie ids", field=f"{field}given_items.movie_ids"
            )
        if ((ids <= 0) | (ids > MAX_MOVIE_ID)).any():
            raise InvalidArgument(
                f"movie ids must be in 1..{MAX_MOVIE_ID}", field=f"{field}given_items.movie_ids"
            )
        return RowOutput(0, given=ids)
    top = request.top_k
    return RowOutput(
        check_k(top.k, f"{field}top_k.k"),
        RANK_BY.name(top.rank_by, f"{field}top_k.rank_by"),
        exclude=np.array(  # an id beyond int32 is in no model: nothing to exclude
            [m for m in top.exclude_movie_ids if 0 < m <= MAX_MOVIE_ID], dtype=np.int64
        ),
    )


def rows_of(vectors: list[tuple[np.ndarray, np.ndarray]], outputs: list[RowOutput]):
    """(preferences Rows, Outputs) of requests read one by one."""
    ids, values = zip(*vectors, strict=True)
    return Rows.from_lists(ids, values), Outputs(
        np.array([o.k for o in outputs], np.int64),
        tuple(o.rank_by for o in outputs),
        Rows.from_lists([o.exclude for o in outputs]),
        Rows.from_lists([o.given for o in outputs]),
    )


def codes_of(requests, predictor: Predictor, field: str) -> Codes:
    """The requests' user codes (PredictRequest.user_code), checked against the version."""
    codes = Codes.from_lists(
        [np.array(r.user_code, np.float32) if len(r.user_code) else None for r in requests]
    )
    predictor.check_codes(codes, field)
    return codes


def packed_rows(request: model_pb2.PackedPredictRequest):
    """(preferences Rows, Outputs) of a packed batch, checked; errors name `packed.<field>`."""
    preferences = _rows(request.preferences, "packed.preferences", with_values=True)
    n = len(preferences)
    if not 1 <= n <= MAX_BATCH:
        raise InvalidArgument(f"give 1 to {MAX_BATCH} rows", field="packed.preferences")
    if len(preferences.movie_ids) > MAX_BATCH * MAX_PREFERENCES:
        raise InvalidArgument("too many preferences", field="packed.preferences")
    if not (np.abs(preferences.values) <= MAX_ABS_PREFERENCE).all():
        raise InvalidArgument(
            f"preference values must be finite and within ±{MAX_ABS_PREFERENCE:g}",
            field="packed.preferences.values",
        )
    twice = preferences.duplicate_row()
    if twice is not None:
        raise InvalidArgument(
            f"row {twice} holds a movie id twice", field="packed.preferences.movie_ids"
        )
    k = _per_row(request.k, n, "packed.k")
    if ((k < 0) | (k > MAX_K)).any():
        raise InvalidArgument(f"k must be 0 to {MAX_K} per row", field="packed.k")
    modes = RANK_BY.names(_per_row(request.rank_by, n, "packed.rank_by").tolist(), "packed.rank_by")
    exclude = _rows(request.exclude_movie_ids, "packed.exclude_movie_ids", rows=n)
    given = _rows(request.given_movie_ids, "packed.given_movie_ids", rows=n)
    given_count = given.lengths()
    if ((k == 0) & ((given_count < 1) | (given_count > MAX_GIVEN_ITEMS))).any():
        raise InvalidArgument(
            f"a row with k = 0 needs 1 to {MAX_GIVEN_ITEMS} given movie ids",
            field="packed.given_movie_ids",
        )
    return preferences, Outputs(k.astype(np.int64), modes, exclude, given)


def _rows(message, field: str, *, with_values=False, rows: int | None = None) -> Rows:
    if rows is not None and not message.offsets:  # an absent list: every row empty
        return Rows.empty(rows)
    parsed = Rows.from_bytes(message.offsets, message.movie_ids, message.values, field)
    if with_values and parsed.values is None and len(parsed.movie_ids):
        raise InvalidArgument("values are missing", field=f"{field}.values")
    if with_values and parsed.values is None:
        parsed = Rows(parsed.offsets, parsed.movie_ids, np.empty(0, np.float32))
    if not with_values and parsed.values is not None:
        raise InvalidArgument("this list holds movie ids only", field=f"{field}.values")
    if rows is not None and len(parsed) != rows:
        raise InvalidArgument(f"{len(parsed)} rows, the batch has {rows}", field=field)
    return parsed


def _per_row(raw: bytes, n: int, field: str) -> np.ndarray:
    if len(raw) != 4 * n:
        raise InvalidArgument(f"give one int32 per row ({n} rows), {len(raw)} bytes", field=field)
    return np.frombuffer(raw, INT32)


def predict_response(
    predictor: Predictor, predictions: RowPredictions, row: int
) -> model_pb2.PredictResponse:
    """Row `row` of `predictions` as a PredictResponse; the row's own error raised."""
    if row in predictions.errors:
        raise predictions.errors[row]
    return model_pb2.PredictResponse(
        model_version=predictor.version,
        predictions=model_pb2.SparseVector(
            movie_ids=predictions.predictions.ids(row).tolist(),
            values=predictions.predictions.row_values(row).tolist(),
        ),
        ignored_movie_ids=predictions.ignored.ids(row).tolist(),
    )


def packed_message(rows: Rows) -> model_pb2.PackedRows:
    offsets, movie_ids, values = rows.to_bytes()
    return model_pb2.PackedRows(offsets=offsets, movie_ids=movie_ids, values=values)


def packed_response(
    predictor: Predictor, predictions: RowPredictions
) -> model_pb2.PackedPredictResponse:
    return model_pb2.PackedPredictResponse(
        model_version=predictor.version,
        predictions=packed_message(predictions.predictions),
        ignored_movie_ids=packed_message(predictions.ignored),
        errors=[row_error(row, error) for row, error in sorted(predictions.errors.items())],
    )


def check_similar_request(request: model_pb2.SimilarItemsRequest, field: str) -> tuple[str, bool]:
    """(metric, farthest) of a valid request."""
    if request.movie_id <= 0:
        raise InvalidArgument("movie_id must be positive", field=f"{field}movie_id")
    metric = METRIC.name(request.metric, f"{field}metric")
    farthest = DIRECTION.name(request.direction, f"{field}direction") == "farthest"
    check_k(request.k, f"{field}k")
    return metric, farthest


def similar_response(
    predictor: Predictor, request: model_pb2.SimilarItemsRequest, field: str
) -> model_pb2.SimilarItemsResponse:
    metric, farthest = check_similar_request(request, field)
    items = predictor.similar(request.movie_id, request.k, metric, farthest=farthest)
    return model_pb2.SimilarItemsResponse(
        model_version=predictor.version,
        items=[model_pb2.ScoredItem(movie_id=s.item_id, distance=s.value) for s in items],
    )


def row_error(row: int, error) -> model_pb2.RowError:
    """A row's own failure in a batch answer."""
    return model_pb2.RowError(
        row=row,
        code=grpc.StatusCode[error.status].value[0],
        message=str(error),
        field=getattr(error, "field", None) or "",
    )


class ModelServicer(model_pb2_grpc.ModelServiceServicer):
    """`batcher` answers Predict; BatchPredict is already one matrix product."""

    def __init__(self, holder: PredictorHolder, batcher: Batcher | None = None):
        self.holder = holder
        self.batcher = batcher or Batcher(max_size=1, max_wait_us=0, queue_limit=1)

    def batch_predictor(self, requests) -> Predictor:
        """The predictor of a batch of 1 to MAX_BATCH requests, which all name one version."""
        if not 1 <= len(requests) <= MAX_BATCH:
            raise InvalidArgument(f"give 1 to {MAX_BATCH} requests", field="requests")
        versions = {r.model_version for r in requests}
        if len(versions) > 1:
            raise InvalidArgument(
                f"all requests of a batch must name the same model version, got {sorted(versions)}",
                field="requests.model_version",
            )
        return self.holder.get(versions.pop())

    async def Predict(self, request, context):
        predictor = self.holder.get(request.model_version)
        preferences, outputs = rows_of(
            [sparse_vector(request, "preferences")], [output_of(request, "")]
        )
        codes = codes_of([request], predictor, "user_code")
        predictions, row = await self.batcher.predict(predictor, preferences, outputs, codes)
        return predict_response(predictor, predictions, row)

    async def BatchPredict(self, request, context):
        if request.HasField("packed"):
            if request.requests:
                raise InvalidArgument("give requests or packed, not both", field="packed")
            predictor = self.holder.get(request.packed.model_version)
            preferences, outputs = packed_rows(request.packed)
            codes = Codes.from_bytes(
                request.packed.code_offsets,
                request.packed.code_values,
                len(preferences),
                "packed.code_offsets",
            )
            predictor.check_codes(codes, "packed.code_values")
            metrics.BATCH_SIZE.labels("BatchPredict").observe(len(preferences))
            predictions = predictor.predict_rows(preferences, outputs, codes)
            return model_pb2.BatchPredictResponse(packed=packed_response(predictor, predictions))
        predictor = self.batch_predictor(request.requests)
        vectors, outputs = [], []
        for n, one in enumerate(request.requests):
            field = f"requests[{n}]."
            vectors.append(sparse_vector(one, f"{field}preferences"))
            outputs.append(output_of(one, field))
        codes = codes_of(request.requests, predictor, "requests.user_code")
        metrics.BATCH_SIZE.labels("BatchPredict").observe(len(request.requests))
        predictions = predictor.predict_rows(*rows_of(vectors, outputs), codes)
        return model_pb2.BatchPredictResponse(
            responses=[predict_response(predictor, predictions, j) for j in range(len(vectors))]
        )

    async def SimilarItems(self, request, context):
        predictor = self.holder.get(request.model_version)
        return similar_response(predictor, request, "")

    async def BatchSimilarItems(self, request, context):
        predictor = self.batch_predictor(request.requests)
        for n, one in enumerate(request.requests):  # bad input fails the call, as in BatchPredict
            check_similar_request(one, f"requests[{n}].")
        responses, errors = [], []
        for n, one in enumerate(request.requests):
            try:
                responses.append(similar_response(predictor, one, f"requests[{n}]."))
            except NotFound as error:  # an anchor not in the model: that row's own failure
                responses.append(model_pb2.SimilarItemsResponse(model_version=predictor.version))
                errors.append(row_error(n, error))
        metrics.BATCH_SIZE.labels("BatchSimilarItems").observe(len(request.requests))
        return model_pb2.BatchSimilarItemsResponse(responses=responses, errors=errors)

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
