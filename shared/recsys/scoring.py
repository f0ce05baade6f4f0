"""Inference without Keras on the request path: the trained kernels as NumPy matrices, a
user's ratings → de-normalized predictions, top-k ranking and item similarity.

Serving and offline evaluation both go through this module (DESIGN §7: `model.predict`
costs ≈ 92 ms a call; the same matmuls in NumPy cost ≈ 35 µs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.errors import InvalidArgument, NotFound
from recsys.features import ItemIndex, Normalization, user_preferences

METRICS = ("euclidean", "cosine")


@dataclass(frozen=True)
class LinearAutoencoder:
    """encoder_kernel: (n_items, k) float32; decoder_kernel: (k, n_items) float32."""

    encoder_kernel: np.ndarray
    decoder_kernel: np.ndarray

    @property
    def n_items(self) -> int:
        return self.encoder_kernel.shape[0]

    @property
    def encoding_size(self) -> int:
        return self.encoder_kernel.shape[1]

    def encode(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, k) codes."""
        code = preferences @ self.encoder_kernel
        return np.asarray(code, dtype=np.float32)

    def predict(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, n_items) predicted preferences."""
        return self.encode(preferences) @ self.decoder_kernel

    def predict_pairs(self, preferences, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Predicted preference of row `rows[j]` at column `columns[j]`, without the full
        (batch, n_items) product. (n_pairs,) float32."""
        code = self.encode(preferences)
        return np.einsum("pk,kp->p", code[rows], self.decoder_kernel[:, columns])

    @property
    def item_embeddings(self) -> np.ndarray:
        """(n_items, k): item j's embedding is column j of the decoder kernel (the article)."""
        return self.decoder_kernel.T


@dataclass(frozen=True)
class Scored:
    item_id: int
    value: float  # a predicted rating, or a distance for similar items


@dataclass(frozen=True)
class UserVector:
    """One user's preferences over the model's items."""

    preferences: np.ndarray  # (n_items,) float32, 0 where unrated
    user_mean: float  # b_u
    rated_columns: np.ndarray  # columns the user rated, int64
    unknown_item_ids: list[int]  # rated items the model does not cover (not used)


class Recommender:
    """A trained model with the index and normalization it was trained with."""

    def __init__(
        self,
        network: LinearAutoencoder,
        index: ItemIndex,
        normalization: Normalization,
        rating_scale: tuple[float, float] = (1.0, 5.0),
    ):
        if network.n_items != len(index) or len(normalization.item_means) != len(index):
            raise ValueError("network, item index and normalization disagree on the item count")
        self.network = network
        self.index = index
        self.normalization = normalization
        self.rating_scale = rating_scale
        # item embeddings as a C-contiguous float64 copy, made once: distances are then one
        # matrix-vector product per query
        self.embeddings = ItemEmbeddings(network.item_embeddings)

    def user_vector(self, ratings: dict[int, float]) -> UserVector:
        """Normalize a user's {movie id: rating} with the trained μ and b_i and the user's b_u."""
        low, high = self.rating_scale
        for item_id, rating in ratings.items():
            if not low <= rating <= high:
                raise InvalidArgument(
                    f"rating {rating} for item {item_id} is outside [{low}, {high}]",
                    field="ratings",
                )
        user = user_preferences(ratings, self.index, self.normalization)
        vector = np.zeros(len(self.index), dtype=np.float32)
        vector[user.columns] = user.preferences
        return UserVector(vector, user.user_mean, user.columns, user.unknown_movie_ids)

    def predict_ratings(self, user: UserVector) -> np.ndarray:
        """(n_items,) float64 de-normalized predicted ratings, not clipped."""
        predicted = self.network.predict(user.preferences[None, :])[0]
        return self.normalization.denormalize(predicted.astype(np.float64), user.user_mean)

    def recommend(self, ratings: dict[int, float], k: int = 10) -> list[Scored]:
        """The k items with the highest predicted rating that the user has not rated."""
        if k <= 0:
            raise InvalidArgument("k must be positive", field="k")
        user = self.user_vector(ratings)
        predicted = self.predict_ratings(user)
        predicted[user.rated_columns] = -np.inf
        top = top_k(predicted, min(k, len(self.index) - len(user.rated_columns)))
        return [Scored(int(self.index.item_ids[j]), float(predicted[j])) for j in top]

    def similar(
        self, item_id: int, k: int = 10, *, metric: str = "euclidean", farthest: bool = False
    ) -> list[Scored]:
        """Items nearest to (or farthest from) `item_id` in decoder-embedding space."""
        if item_id not in self.index:
            raise NotFound(f"item {item_id} is not in the model")
        if k <= 0:
            raise InvalidArgument("k must be positive", field="k")
        column = self.index.column(item_id)
        distances = self.embeddings.distances(column, metric)
        ranking = distances.copy() if farthest else -distances  # top_k takes the largest
        ranking[column] = -np.inf  # never the anchor itself
        order = top_k(ranking, min(k, len(self.index) - 1))
        return [Scored(int(self.index.item_ids[j]), float(distances[j])) for j in order]


class ItemEmbeddings:
    """(n_items, k) item embeddings prepared for repeated distance queries."""

    def __init__(self, embeddings: np.ndarray):
        self.vectors = np.ascontiguousarray(embeddings, dtype=np.float64)
        self.squared_norms = np.einsum("ij,ij->i", self.vectors, self.vectors)
        self.norms = np.sqrt(self.squared_norms)

    def distances(self, column: int, metric: str = "euclidean") -> np.ndarray:
        """Same values as item_distances (to rounding), in O(n·k) multiply-adds."""
        if metric not in METRICS:
            raise InvalidArgument(f"metric must be one of {METRICS}", field="metric")
        dots = self.vectors @ self.vectors[column]
        if metric == "euclidean":
            squared = self.squared_norms + self.squared_norms[column] - 2 * dots
            return np.sqrt(np.maximum(squared, 0.0))
        norms = self.norms * self.norms[column]
        return 1.0 - np.divide(dots, norms, out=np.zeros(len(dots)), where=norms > 0)


def item_distances(embeddings: np.ndarray, column: int, metric: str = "euclidean") -> np.ndarray:
    """Distance from item `column` to every item: (n_items,) float64. Cosine distance is
    1 - cos(angle); an all-zero embedding is at distance 1 from everything."""
    if metric not in METRICS:
        raise InvalidArgument(f"metric must be one of {METRICS}", field="metric")
    emb = embeddings.astype(np.float64)
    anchor = emb[column]
    if metric == "euclidean":
        return np.sqrt(((emb - anchor) ** 2).sum(axis=1))
    norms = np.linalg.norm(emb, axis=1) * np.linalg.norm(anchor)
    cos = np.divide(emb @ anchor, norms, out=np.zeros(len(emb)), where=norms > 0)
    return 1.0 - cos


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first, ties broken by the lower index — also at
    the cut-off. -inf entries never win over finite ones."""
    k = max(0, min(k, len(scores)))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    kth = scores[part].min()
    candidates = np.flatnonzero(scores >= kth)  # the top k and every item tied with the k-th
    return candidates[np.lexsort((candidates, -scores[candidates]))][:k]
