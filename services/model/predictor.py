"""The model service's domain: a loaded model version answering predictions for sparse
preference vectors named by movie id. NumPy only on the request path (no gRPC here)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from recsys.artifacts import Artifact, load_artifact, resolve_version
from recsys.errors import InvalidArgument, NotFound, Unavailable, VersionMismatch
from recsys.ranking import rank_scores
from recsys.scoring import Contribution, explain_preferences, top_k

log = logging.getLogger(__name__)

MAX_K = 1000
MAX_GIVEN_ITEMS = 10_000


@dataclass(frozen=True, eq=False)  # holds arrays: compared and hashed by identity
class Output:
    """What to return: every item (kind "all"), the `movie_ids` given ("given"), or the top
    `k` not in `exclude` ("top_k") ranked by `rank_by`, a mode of recsys.ranking: "rating"
    (preference + b_i), "preference", "relevance" (EASE + weight × preference), or "" for
    the version's default (relevance when it has item-item weights, else rating).
    `rated_movie_ids`: the movies of the input vector (relevance ranks from them; a dense
    vector cannot say which of its zeros are ratings)."""

    kind: str
    movie_ids: tuple[int, ...] = ()
    k: int = 0
    exclude: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # movie ids
    rank_by: str = ""
    rated_movie_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


@dataclass(frozen=True)
class Prediction:
    movie_ids: np.ndarray  # (n,) int64
    preferences: np.ndarray  # (n,) float32 predicted preferences
    ignored_movie_ids: list[int]  # input items the model does not cover


@dataclass(frozen=True)
class Explained:
    predicted_preference: float
    contributions: list[Contribution]  # largest |contribution| first
    other_contribution: float
    other_count: int
    ignored_movie_ids: list[int]


class Predictor:
    """One loaded model version."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self.version = artifact.version
        model = artifact.recommender
        self.index = model.index
        self.network = model.network
        self.item_means = model.normalization.item_means.astype(np.float32)

    @classmethod
    def load(cls, model_dir: str, version: str | None = None) -> Predictor:
        started = time.perf_counter()
        predictor = cls(load_artifact(resolve_version(model_dir, version or None)))
        predictor.warm_up()
        log.info(
            "model loaded",
            extra={
                "model_version": predictor.version,
                "items": len(predictor.index),
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
        return predictor

    def warm_up(self) -> None:
        """Touch every code path once so the first request pays no first-call costs: a
        vector with one rating (an all-zero one would skip the item kind's solve)."""
        one_rating = np.zeros((1, len(self.index)), np.float32)
        one_rating[0, 0] = 1.0
        self.network.predict(one_rating)
        self.similar(int(self.index.item_ids[0]), 1)

    def vector(self, movie_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Dense (n_items,) float32 preference vector from a sparse one named by movie id."""
        columns = self.index.columns(movie_ids)
        known = columns >= 0
        dense = np.zeros(len(self.index), np.float32)
        dense[columns[known]] = values[known]
        return dense, sorted(int(i) for i in movie_ids[~known])

    def predict_many(
        self, vectors: list[tuple[np.ndarray, np.ndarray]], outputs: list[Output]
    ) -> list[Prediction]:
        """Several users in one matrix product; `vectors[j]` = (movie_ids, values)."""
        dense, ignored = zip(*(self.vector(ids, values) for ids, values in vectors), strict=True)
        predicted = self.network.predict(np.stack(dense))
        return [
            self.select(row, output, list(skipped))
            for row, output, skipped in zip(predicted, outputs, ignored, strict=True)
        ]

    def select(self, predicted: np.ndarray, output: Output, ignored: list[int]) -> Prediction:
        ids = self.index.item_ids
        if output.kind == "all":
            return Prediction(ids, predicted, ignored)
        if output.kind == "given":
            wanted = np.array(output.movie_ids, dtype=np.int64)
            columns = self.index.columns(wanted)
            if (columns < 0).any():
                unknown = sorted({int(i) for i in wanted[columns < 0]})[:10]
                raise NotFound(f"movie ids not in model {self.version}: {unknown}")
            return Prediction(wanted, predicted[columns], ignored)
        model = self.artifact.recommender
        rated = self.index.columns(np.asarray(output.rated_movie_ids, dtype=np.int64))
        scores = rank_scores(
            output.rank_by or model.default_rank_by,
            predicted[None, :],
            self.item_means,
            [rated[rated >= 0]],
            model.ranking,
        )[0]
        if len(output.exclude):
            excluded = self.index.columns(np.asarray(output.exclude, dtype=np.int64))
            scores[excluded[excluded >= 0]] = -np.inf
        best = top_k(scores, output.k)
        best = best[np.isfinite(scores[best])]
        return Prediction(ids[best], predicted[best], ignored)

    def similar(self, movie_id: int, k: int, metric: str = "euclidean", farthest=False):
        return self.artifact.recommender.similar(movie_id, k, metric=metric, farthest=farthest)

    def explain(
        self, movie_ids: np.ndarray, values: np.ndarray, movie_id: int, limit: int
    ) -> Explained:
        """The predicted preference of `movie_id` as a sum over the input's items (the linear
        network and the item kind: FailedPrecondition for a deep one; NotFound for a movie
        not in it)."""
        columns = self.index.columns(movie_ids)
        known = columns >= 0
        preference, listed, other, other_count = explain_preferences(
            self.network, self.index, columns[known], values[known], movie_id, limit
        )
        return Explained(
            preference, listed, other, other_count, sorted(int(i) for i in movie_ids[~known])
        )


class PredictorHolder:
    """The versions a server answers with: the current one (empty until the model has
    loaded) and the one it replaced, kept so that requests naming the previous version
    (sent before a swap, or by a gateway whose features of the new version are not loaded
    yet) are still answered. Swapped on the event loop, so a reader never sees half a swap."""

    def __init__(self, predictor: Predictor | None = None):
        self.predictor = predictor
        self.previous: Predictor | None = None

    def get(self, version: str = "") -> Predictor:
        """The predictor of `version`, or the current one when `version` is empty."""
        current = self.predictor
        if current is None:
            raise Unavailable("model not loaded yet")
        if not version or version == current.version:
            return current
        if self.previous is not None and version == self.previous.version:
            return self.previous
        raise VersionMismatch(
            f"model version {current.version} is loaded, the request is for {version}"
        )

    def swap(self, predictor: Predictor) -> Predictor | None:
        """Serve `predictor` from now on; returns the version it replaced."""
        replaced, self.predictor = self.predictor, predictor
        self.previous = replaced
        return replaced


def check_k(k: int, field: str = "k") -> int:
    if not 1 <= k <= MAX_K:
        raise InvalidArgument(f"{field} must be between 1 and {MAX_K}, got {k}", field=field)
    return k
