"""The gateway's two coalesced upstream calls, packed in and packed out: many stored users'
features in one `BatchGetUserFeatures`, many users' predictions in one `BatchPredict`. Each
takes the members' items and returns one result (or error) per item, for
recsys.serving.coalesce.Coalescer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.api.feature.v1 import feature_pb2
from recsys.api.model.v1 import model_pb2
from recsys.errors import NotFound, RecsysError, VersionMismatch
from recsys.packed import FLOAT64, INT32, INT64, Codes, Rows
from services.gateway.upstream import Upstreams, row_error


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class UserInput:
    """A user's preference vector by movie id, b_u, and the movies they rated."""

    movie_ids: np.ndarray  # (n,) ints, items the model covers
    preferences: np.ndarray  # (n,) float32
    user_mean: float
    rated_movie_ids: np.ndarray  # (m,) ints: what Recommend excludes
    ignored_movie_ids: list[int]  # rated, but not covered by the model
    code: np.ndarray | None = None  # (k + 1,) float32: a stored user's code (item kind)


@dataclass(frozen=True, eq=False)
class PredictRow:
    """One request's row of a BatchPredict: its preference vector and what it wants back:
    the top `k` (≥ 1) by `rank_by` (a model RankBy) without `exclude`, or (k = 0) the
    predictions at `given`."""

    movie_ids: np.ndarray
    preferences: np.ndarray
    k: int
    rank_by: int = 0
    exclude: np.ndarray | None = None
    given: np.ndarray | None = None
    code: np.ndarray | None = None  # the user's stored code: predicted with no fold-in


_NONE = np.empty(0, np.int64)


class Batches:
    """The two batch calls on the gateway's upstreams."""

    def __init__(self, upstreams: Upstreams):
        self.upstreams = upstreams

    async def users(
        self, version: str, user_ids: list[int], timeout_s: float, request_ids: list
    ) -> list[UserInput | RecsysError]:
        """Stored users' features under `version`; NotFound for a user with no ratings."""
        request = feature_pb2.BatchGetUserFeaturesRequest(
            user_ids=list(dict.fromkeys(user_ids)), model_version=version, packed=True
        )
        reply = await self.upstreams.call_batch(
            "feature", self.upstreams.feature.BatchGetUserFeatures, request, timeout_s, request_ids
        )
        if reply.model_version != version:
            mismatch = VersionMismatch(
                f"features of version {reply.model_version}, model {version}"
            )
            return [mismatch] * len(user_ids)
        packed = reply.packed
        found = np.frombuffer(packed.user_ids, INT64).tolist()
        means = np.frombuffer(packed.user_means, FLOAT64).tolist()
        preferences = _rows(
            packed.preference_offsets, packed.preference_movie_ids, packed.preference_values
        )
        unused = _rows(packed.unused_offsets, packed.unused_movie_ids)
        codes = _codes(packed.code_offsets, packed.code_values, len(found))
        row_of = {user_id: j for j, user_id in enumerate(found)}
        results: list[UserInput | RecsysError] = []
        for user_id in user_ids:
            j = row_of.get(user_id)
            if j is None:
                results.append(NotFound(f"user {user_id} has no stored ratings"))
                continue
            ids = preferences.ids(j)
            results.append(
                UserInput(
                    ids,
                    preferences.row_values(j),
                    means[j],
                    ids,
                    unused.ids(j).tolist(),
                    codes.code(j),
                )
            )
        return results

    async def predictions(
        self, version: str, rows: list[PredictRow], timeout_s: float, request_ids: list
    ) -> list[tuple[np.ndarray, np.ndarray] | RecsysError]:
        """(movie ids, predicted preferences) of each row, from model version `version`."""
        code_offsets, code_values = Codes.from_lists([r.code for r in rows]).to_bytes()
        request = model_pb2.BatchPredictRequest(
            packed=model_pb2.PackedPredictRequest(
                model_version=version,
                preferences=_message(
                    Rows.from_lists([r.movie_ids for r in rows], [r.preferences for r in rows])
                ),
                k=np.array([r.k for r in rows], INT32).tobytes(),
                rank_by=np.array([r.rank_by for r in rows], INT32).tobytes(),
                exclude_movie_ids=_ids_message([r.exclude for r in rows]),
                given_movie_ids=_ids_message([r.given for r in rows]),
                code_offsets=code_offsets,
                code_values=code_values,
            )
        )
        reply = await self.upstreams.call_batch(
            "model", self.upstreams.model.BatchPredict, request, timeout_s, request_ids
        )
        packed = reply.packed
        predictions = _rows(
            packed.predictions.offsets, packed.predictions.movie_ids, packed.predictions.values
        )
        errors = {e.row: row_error(e.code, e.message, e.field) for e in packed.errors}
        return [
            errors[j] if j in errors else (predictions.ids(j), predictions.row_values(j))
            for j in range(len(rows))
        ]

    async def similar(
        self,
        version: str,
        requests: list[model_pb2.SimilarItemsRequest],
        timeout_s: float,
        request_ids: list,
    ) -> list[model_pb2.SimilarItemsResponse | RecsysError]:
        """Each request's SimilarItems answer from model version `version`."""
        reply = await self.upstreams.call_batch(
            "model",
            self.upstreams.model.BatchSimilarItems,
            model_pb2.BatchSimilarItemsRequest(requests=requests),
            timeout_s,
            request_ids,
        )
        errors = {e.row: row_error(e.code, e.message, e.field) for e in reply.errors}
        return [errors.get(j, answer) for j, answer in enumerate(reply.responses)]


def _rows(offsets: bytes, movie_ids: bytes, values: bytes = b"") -> Rows:
    """Rows of an upstream's packed answer (trusted: no checks beyond the sizes)."""
    return Rows(
        np.frombuffer(offsets, INT32).astype(np.int64),
        np.frombuffer(movie_ids, INT32),
        np.frombuffer(values, np.dtype("<f4")) if values else None,
    )


def _codes(offsets: bytes, values: bytes, n: int) -> Codes:
    """Users' codes of the feature service's packed answer (trusted: no checks)."""
    if not offsets:
        return Codes.none(n)
    return Codes(np.frombuffer(offsets, INT32).astype(np.int64), np.frombuffer(values, "<f4"))


def _message(rows: Rows) -> model_pb2.PackedRows:
    offsets, movie_ids, values = rows.to_bytes()
    return model_pb2.PackedRows(offsets=offsets, movie_ids=movie_ids, values=values)


def _ids_message(lists: list[np.ndarray | None]) -> model_pb2.PackedRows:
    if all(ids is None for ids in lists):
        return model_pb2.PackedRows()  # absent: every row empty
    return _message(Rows.from_lists([_NONE if ids is None else ids for ids in lists]))
