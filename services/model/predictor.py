"""The model service's domain: a loaded model version answering predictions for sparse
preference vectors named by movie id. NumPy only on the request path (no gRPC here)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.artifacts import Artifact, load_artifact, resolve_version
from recsys.errors import InvalidArgument, NotFound, RecsysError, Unavailable, VersionMismatch
from recsys.explain import Contribution, explain_preferences
from recsys.fold_in import fold_in_of
from recsys.packed import Codes, Rows
from recsys.ranking import rank_scores
from recsys.topk import top_k_rows

log = logging.getLogger(__name__)

MAX_K = 1000
MAX_GIVEN_ITEMS = 10_000
_NO_IDS = np.empty(0, np.int64)
_NO_VALUES = np.empty(0, np.float32)


ALL_ITEMS = -1  # Outputs.k of a row that wants every item


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Outputs:
    """What to return for each of n rows: k[j] > 0, the top k[j] items not among the row's
    `exclude` ids, ranked by rank_by[j], a mode of recsys.ranking ("" for the version's
    default); k[j] == 0, the predictions at the row's `given` ids, in their order;
    k[j] == ALL_ITEMS, every item in column order. Relevance ranks from the row's input items
    (a dense vector cannot say which of its zeros are ratings)."""

    k: np.ndarray  # (n,) int64
    rank_by: tuple[str, ...]
    exclude: Rows  # movie ids only
    given: Rows  # movie ids only

    @classmethod
    def single(cls, k: int, rank_by: str = "", exclude=(), given=()) -> Outputs:
        """One row's outputs."""
        return cls(
            np.array([k], np.int64),
            (rank_by,),
            Rows.from_lists([np.asarray(exclude, np.int64)]),
            Rows.from_lists([np.asarray(given, np.int64)]),
        )


@dataclass(frozen=True, eq=False)
class RowPredictions:
    """predictions: per row, movie ids and predicted preferences (best first, or in the given
    order); ignored: per row, input movie ids the model does not cover, ascending; errors: the
    rows that failed on their own (their predictions are empty)."""

    predictions: Rows
    ignored: Rows
    errors: dict[int, RecsysError]


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
        vector with one rating (an all-zero one may skip work, as the item kind's solve)."""
        first = np.array([self.index.item_ids[0]])
        one_rating = Rows.from_lists([first], [np.ones(1, np.float32)])
        self.predict_rows(one_rating, Outputs.single(1))
        fold_in = fold_in_of(self.network)
        if fold_in is not None:  # and a stored user's code
            self.predict_rows(
                one_rating, Outputs.single(1), Codes.from_lists([np.zeros(fold_in.code_size)])
            )
        self.similar(int(self.index.item_ids[0]), 1)

    def predict_rows(
        self, preferences: Rows, outputs: Outputs, codes: Codes | None = None
    ) -> RowPredictions:
        """Predictions for n users at once: one (n, n_items) network pass, the ranking scores
        of every row of one mode in one go, top k on the matrix. A row's answer depends only
        on that row, never on the others in the batch. A row with a user code (`codes`,
        checked by check_codes) is predicted from it, with no fold-in."""
        n = len(preferences)
        columns = self.index.columns(preferences.movie_ids.astype(np.int64))
        known = columns >= 0
        entry_rows = preferences.entry_rows()
        rated_columns = columns[known]  # grouped by row, as the entries are
        rated_bounds = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(entry_rows[known], minlength=n), out=rated_bounds[1:])
        # CSR: the first layer costs the rated entries × its width, not n_items × its width;
        # the networks compute each row on its own (a row's answer is the same in any batch)
        inputs = sp.csr_matrix(
            (preferences.values[known].astype(np.float32), rated_columns, rated_bounds),
            shape=(n, len(self.index)),
        )
        predicted = self._predicted(inputs, codes)
        ids = [_NO_IDS] * n
        values = [_NO_VALUES] * n
        errors: dict[int, RecsysError] = {}
        ranked = np.flatnonzero(outputs.k > 0)
        model = self.artifact.recommender
        modes = [outputs.rank_by[j] or model.default_rank_by for j in ranked]
        for mode in dict.fromkeys(modes):
            rows = ranked[[m == mode for m in modes]]
            try:
                rated = [rated_columns[rated_bounds[j] : rated_bounds[j + 1]] for j in rows]
                scores = rank_scores(mode, predicted[rows], self.item_means, rated, model.ranking)
            except RecsysError as error:
                errors.update(dict.fromkeys(rows.tolist(), error))
                continue
            self._exclude(scores, rows, outputs.exclude)
            for j, best in zip(rows, top_k_rows(scores, outputs.k[rows]), strict=True):
                ids[j], values[j] = self.index.item_ids[best], predicted[j, best]
        for j in np.flatnonzero(outputs.k == 0):
            wanted = outputs.given.ids(j).astype(np.int64)
            wanted_columns = self.index.columns(wanted)
            if (wanted_columns < 0).any():
                unknown = sorted({int(i) for i in wanted[wanted_columns < 0]})[:10]
                errors[int(j)] = NotFound(f"movie ids not in model {self.version}: {unknown}")
                continue
            ids[j], values[j] = wanted, predicted[j, wanted_columns]
        for j in np.flatnonzero(outputs.k == ALL_ITEMS):
            ids[j], values[j] = self.index.item_ids, predicted[j]
        return RowPredictions(
            predictions=Rows.from_lists(ids, values),
            ignored=Rows.from_entries(entry_rows[~known], preferences.movie_ids[~known], n),
            errors=errors,
        )

    def _predicted(self, inputs: sp.csr_matrix, codes: Codes | None) -> np.ndarray:
        """(n, n_items) float32 predicted preferences: the network's from `inputs`, but from
        the code of each row that has one where the network folds users in (predict_coded:
        the item kind's product with the item codes, a blend's parts summed)."""
        coded = np.flatnonzero(np.diff(codes.offsets) > 0) if codes is not None else _NO_IDS
        if not len(coded):
            return self.network.predict(inputs)
        predicted = np.empty(inputs.shape, np.float32)
        stacked = np.stack([codes.code(j) for j in coded.tolist()])
        predicted[coded] = self.network.predict_coded(inputs[coded], stacked)
        plain = np.setdiff1d(np.arange(inputs.shape[0]), coded)
        if len(plain):
            predicted[plain] = self.network.predict(inputs[plain])
        return predicted

    def check_codes(self, codes: Codes, field: str) -> None:
        """InvalidArgument naming `field` when a row's code does not fit this version: a
        version whose model folds no users in takes none, the item kind's take k + 1
        finite numbers."""
        if not len(codes.values):
            return
        fold_in = fold_in_of(self.network)
        if fold_in is None:
            raise InvalidArgument(
                f"model version {self.version} keeps no user codes: leave user codes empty",
                field=field,
            )
        for j in np.flatnonzero(np.diff(codes.offsets) > 0).tolist():
            problem = fold_in.check_code(codes.code(j))
            if problem is not None:
                raise InvalidArgument(problem, field=field)

    def _exclude(self, scores: np.ndarray, rows: np.ndarray, exclude: Rows) -> None:
        """Set to -inf, in `scores` (one line per row of `rows`), each row's excluded items."""
        position = np.full(len(exclude), -1, np.int64)
        position[rows] = np.arange(len(rows))
        lines = position[exclude.entry_rows()]
        columns = self.index.columns(exclude.movie_ids.astype(np.int64))
        hit = (lines >= 0) & (columns >= 0)
        scores[lines[hit], columns[hit]] = -np.inf

    def similar(self, movie_id: int, k: int, metric: str = "euclidean", farthest=False):
        return self.artifact.recommender.similar(movie_id, k, metric=metric, farthest=farthest)

    def explain(
        self, movie_ids: np.ndarray, values: np.ndarray, movie_id: int, limit: int
    ) -> Explained:
        """The predicted preference of `movie_id` as a sum over the input's items
        (FailedPrecondition for a network whose predictions are no such sums, as the deep
        one; NotFound for a movie not in it)."""
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
