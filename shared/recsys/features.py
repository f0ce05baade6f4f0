"""Item selection, the article's normalization (μ, b_i, b_u) and users' preference vectors.

Pure NumPy / pandas: training, offline evaluation and the services all use this module, so a
preference means the same thing everywhere:
    pref(u, i) = r(u, i) - μ - b_i - b_u,   unrated = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import InvalidArgument


@dataclass(frozen=True)
class ItemSelection:
    """Which items the model covers: the `top_n` most rated, or every item with at least
    `min_ratings` ratings, or (both None) every rated item."""

    top_n: int | None = None
    min_ratings: int | None = None

    def __post_init__(self):
        if self.top_n is not None and self.min_ratings is not None:
            raise InvalidArgument("give top_n or min_ratings, not both", field="items")
        if self.top_n is not None and self.top_n <= 0:
            raise InvalidArgument("top_n must be positive", field="top_n")
        if self.min_ratings is not None and self.min_ratings <= 0:
            raise InvalidArgument("min_ratings must be positive", field="min_ratings")

    def select(self, ratings: pd.DataFrame) -> np.ndarray:
        """Item ids, most rated first (ties by id), as int64."""
        counts = ratings.groupby("item_id").size()
        order = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
        ids = np.array([item for item, _ in order], dtype=np.int64)
        sizes = np.array([size for _, size in order], dtype=np.int64)
        if self.top_n is not None:
            return ids[: self.top_n]
        if self.min_ratings is not None:
            return ids[sizes >= self.min_ratings]
        return ids

    def describe(self) -> str:
        if self.top_n is not None:
            return f"top {self.top_n} most rated"
        if self.min_ratings is not None:
            return f"items with >= {self.min_ratings} ratings"
        return "all rated items"


DENSE_LOOKUP_LIMIT = 10_000_000  # largest movie id served by a dense lookup array


class ItemIndex:
    """Movie ids ↔ model columns. Column j of every vector is item `item_ids[j]`."""

    def __init__(self, item_ids: np.ndarray):
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self._index = pd.Index(self.item_ids)
        if not self._index.is_unique:
            raise ValueError("item ids must be unique")
        self._column = {int(item): j for j, item in enumerate(self.item_ids)}
        # movie id → column as one array when ids are small (MovieLens: < 300,000): a lookup
        # is then a single NumPy take, microseconds on the request path
        top = int(self.item_ids.max()) if len(self.item_ids) else -1
        self._dense = None
        if len(self.item_ids) and self.item_ids.min() >= 0 and top < DENSE_LOOKUP_LIMIT:
            self._dense = np.full(top + 1, -1, dtype=np.int64)
            self._dense[self.item_ids] = np.arange(len(self.item_ids))

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: int) -> bool:
        return int(item_id) in self._column

    def column(self, item_id: int) -> int:
        return self._column[int(item_id)]

    def columns(self, item_ids: np.ndarray) -> np.ndarray:
        """Column of each id, -1 where the model does not know the item. int64."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if self._dense is None:
            return self._index.get_indexer(item_ids).astype(np.int64)
        inside = (item_ids >= 0) & (item_ids < len(self._dense))
        return np.where(inside, self._dense[np.where(inside, item_ids, 0)], -1)


@dataclass(frozen=True)
class Normalization:
    """μ (mean of the kept training ratings) and b_i (per item, mean of r - μ); float64."""

    global_mean: float
    item_means: np.ndarray  # (n_items,) float64, 0 for an item with no training rating

    @classmethod
    def fit(cls, columns: np.ndarray, ratings: np.ndarray, n_items: int) -> Normalization:
        """columns: (n,) int item columns (all ≥ 0); ratings: (n,) float."""
        ratings = np.asarray(ratings, dtype=np.float64)
        if len(ratings) == 0:
            raise InvalidArgument("no ratings to normalize", field="ratings")
        global_mean = float(ratings.mean())
        sums = np.bincount(columns, weights=ratings - global_mean, minlength=n_items)
        counts = np.bincount(columns, minlength=n_items)
        item_means = np.divide(sums, counts, out=np.zeros(n_items), where=counts > 0)
        return cls(global_mean, item_means)

    def user_mean(self, columns: np.ndarray, ratings: np.ndarray) -> float:
        """b_u: the mean of r - μ - b_i over a user's ratings of known items; 0 if none."""
        if len(columns) == 0:
            return 0.0
        residual = np.asarray(ratings, np.float64) - self.global_mean - self.item_means[columns]
        return float(residual.mean())

    def preferences(self, columns: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """A user's preferences at `columns` and their b_u: (prefs float64, b_u)."""
        user_mean = self.user_mean(columns, ratings)
        prefs = np.asarray(ratings, np.float64) - self.global_mean - self.item_means[columns]
        return prefs - user_mean, user_mean

    def denormalize(self, preferences: np.ndarray, user_mean: float, columns=None) -> np.ndarray:
        """Ratings from predicted preferences: pref + b_u + b_i + μ (all columns or some)."""
        item_means = self.item_means if columns is None else self.item_means[columns]
        return preferences + user_mean + item_means + self.global_mean


@dataclass(frozen=True)
class UserPreferences:
    """One user's preferences over the items an index covers."""

    movie_ids: np.ndarray  # (n,) int64 rated movies the index covers, ascending
    columns: np.ndarray  # (n,) int64 their columns
    preferences: np.ndarray  # (n,) float64 r − μ − b_i − b_u
    user_mean: float  # b_u
    unknown_movie_ids: list[int]  # rated movies the index does not cover, ascending


def user_preferences(
    ratings: dict[int, float], index: ItemIndex, normalization: Normalization
) -> UserPreferences:
    """Normalize one user's {movie id: stars}: the single-user form of `preference_matrix`,
    used wherever a user's ratings arrive one at a time (online writes, inline ratings,
    offline `recommend`)."""
    movie_ids = np.array(sorted(ratings), dtype=np.int64)
    columns = index.columns(movie_ids)
    known = columns >= 0
    values = np.array([ratings[m] for m in movie_ids[known].tolist()], dtype=np.float64)
    prefs, user_mean = normalization.preferences(columns[known], values)
    return UserPreferences(
        movie_ids[known], columns[known], prefs, user_mean, movie_ids[~known].tolist()
    )


@dataclass(frozen=True)
class PreferenceMatrix:
    """Many users' preferences as a sparse matrix.

    matrix: (n_users, n_items) float32 CSR, one row per entry of `user_ids`.
    user_means: (n_users,) float64 b_u.
    """

    user_ids: np.ndarray
    matrix: sp.csr_matrix
    user_means: np.ndarray


def preference_matrix(
    ratings: pd.DataFrame,
    index: ItemIndex,
    normalization: Normalization,
    user_ids: np.ndarray | None = None,
) -> PreferenceMatrix:
    """Normalize every user's ratings of the indexed items; rows follow `user_ids` (default:
    the sorted users in `ratings`). A user with no ratings of indexed items has an empty row
    and b_u = 0. Memory grows with the number of ratings, not users × items."""
    columns = index.columns(ratings["item_id"].to_numpy())
    known = columns >= 0
    users = ratings["user_id"].to_numpy()[known]
    columns = columns[known]
    values = ratings["rating"].to_numpy(np.float64)[known]
    if user_ids is None:
        user_ids = np.unique(ratings["user_id"].to_numpy())
    user_ids = np.asarray(user_ids, dtype=np.int64)
    row_of = pd.Index(user_ids).get_indexer(users)
    keep = row_of >= 0
    rows, columns, values = row_of[keep], columns[keep], values[keep]
    n_users = len(user_ids)
    residual = values - normalization.global_mean - normalization.item_means[columns]
    sums = np.bincount(rows, weights=residual, minlength=n_users)
    counts = np.bincount(rows, minlength=n_users)
    user_means = np.divide(sums, counts, out=np.zeros(n_users), where=counts > 0)
    prefs = (residual - user_means[rows]).astype(np.float32)
    matrix = sp.csr_matrix((prefs, (rows, columns)), shape=(n_users, len(index)))
    matrix.sum_duplicates()
    matrix.sort_indices()
    return PreferenceMatrix(user_ids=user_ids, matrix=matrix, user_means=user_means)
