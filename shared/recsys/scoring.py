"""Inference without Keras on the request path: the trained kernels as NumPy matrices, a
user's ratings → de-normalized predictions, top-k ranking and item similarity.

Serving and offline evaluation both go through this module (DESIGN §7: `model.predict`
costs ≈ 92 ms a call; the same matmuls in NumPy cost ≈ 35 µs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.errors import FailedPrecondition, InvalidArgument, NotFound
from recsys.features import ItemIndex, Normalization, user_preferences
from recsys.ranking import ItemItemRanking, check_mode, default_mode, rank_scores
from recsys.rating_scale import DEFAULT_RATING_SCALE, check_rating

METRICS = ("euclidean", "cosine")
GRAM_MAX_ITEMS = 12_000  # the item kind keeps an item Gram matrix up to this many items


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

    @property
    def depth(self) -> int:
        return 1

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

    def contributions(self, columns: np.ndarray, values: np.ndarray, target: int) -> np.ndarray:
        """What each input entry adds to the predicted preference at column `target`:
        values[j] · (W_enc W_dec)[columns[j], target], (n,) float64. The network is linear
        without biases, so these add up to predict(x)[target] exactly (to rounding)."""
        weights = self.encoder_kernel[columns].astype(np.float64) @ self.decoder_kernel[
            :, target
        ].astype(np.float64)
        return np.asarray(values, dtype=np.float64) * weights


ACTIVATIONS = ("linear", "selu", "elu", "relu", "tanh", "sigmoid")
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def activate(values: np.ndarray, activation: str) -> np.ndarray:
    """The Keras activations the deep autoencoder may use, in NumPy (float32 in, float32 out)."""
    if activation == "linear":
        return values
    if activation == "relu":
        return np.maximum(values, 0)
    if activation == "tanh":
        return np.tanh(values)
    if activation == "sigmoid":
        return (0.5 * (1.0 + np.tanh(0.5 * values))).astype(np.float32)  # no exp overflow
    negative = np.expm1(np.minimum(values, 0))  # exp(x) - 1 where x < 0; no overflow above
    if activation == "elu":
        return np.where(values > 0, values, negative).astype(np.float32)
    if activation == "selu":
        return (SELU_SCALE * np.where(values > 0, values, SELU_ALPHA * negative)).astype(np.float32)
    raise ValueError(f"unknown activation {activation!r}; known: {ACTIVATIONS}")


@dataclass(frozen=True)
class DenseLayer:
    """One Keras Dense layer as NumPy: kernel (n_in, n_out) float32, bias (n_out,) float32 or
    None, activation name."""

    kernel: np.ndarray
    bias: np.ndarray | None
    activation: str

    def __call__(self, inputs) -> np.ndarray:
        out = np.asarray(inputs @ self.kernel, dtype=np.float32)
        if self.bias is not None:
            out = out + self.bias
        return activate(out, self.activation)


@dataclass(frozen=True)
class DeepAutoencoder:
    """A stack of dense layers: `encoder` layers end in the code layer (width k), `decoder`
    layers end in the output layer (width n_items, linear). The deeper option of Kuchaiev &
    Ginsburg ("Training Deep AutoEncoders for Collaborative Filtering"); input dropout is a
    training-time layer only, so inference is these matrix products.

    Same interface as LinearAutoencoder: encode, predict, predict_pairs, item_embeddings."""

    encoder: tuple[DenseLayer, ...]
    decoder: tuple[DenseLayer, ...]

    def __post_init__(self):
        if not self.encoder or not self.decoder:
            raise ValueError("a deep autoencoder needs at least one encoder and decoder layer")
        if self.decoder[-1].activation != "linear":
            raise ValueError("the output layer must be linear (preferences can be negative)")

    @property
    def n_items(self) -> int:
        return self.encoder[0].kernel.shape[0]

    @property
    def encoding_size(self) -> int:
        return self.encoder[-1].kernel.shape[1]

    @property
    def depth(self) -> int:
        """Dense layers on each side of the code (1: the article's shape)."""
        return len(self.encoder)

    def encode(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, k) codes."""
        values = preferences
        for layer in self.encoder:
            values = layer(values)
        return np.asarray(values, dtype=np.float32)

    def last_hidden(self, preferences) -> np.ndarray:
        """The input of the output layer: (batch, width of the last decoder hidden layer)."""
        values = self.encode(preferences)
        for layer in self.decoder[:-1]:
            values = layer(values)
        return values

    def predict(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, n_items) predicted preferences."""
        return self.decoder[-1](self.last_hidden(preferences))

    def predict_pairs(self, preferences, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Predicted preference of row `rows[j]` at column `columns[j]`. (n_pairs,) float32."""
        hidden = self.last_hidden(preferences)
        output = self.decoder[-1]
        values = np.einsum("pk,kp->p", hidden[rows], output.kernel[:, columns])
        if output.bias is not None:
            values = values + output.bias[columns]
        return values.astype(np.float32)

    @property
    def item_embeddings(self) -> np.ndarray:
        """(n_items, width): item j's embedding is column j of the last decoder kernel."""
        return self.decoder[-1].kernel.T


@dataclass(frozen=True)
class ItemAutoencoder:
    """The item-based autoencoder (I-AutoRec, Sedhain et al. 2015) in its serving form.

    Trained on the items' columns of the preference matrix, its code layer gives each item a
    code h_i (k numbers). A user is folded in at request time, whether they were in training
    or not: ridge regression of their preferences on the codes of the items they rated,

        w = argmin_w Σ_{j∈R} (p_j − h̃_j·w)² + λ‖w‖²,   h̃ = [h, 1],

    and predictions are h̃_i·w for every item. For a fixed set of rated items that is linear
    in the preferences, so a prediction is an exact sum over the rated items (explanations).
    The rated set R is a row's non-zero entries, dense or CSR alike (a dense vector cannot
    tell a rating whose preference is exactly 0 from no rating, so neither form counts one).

    item_codes: (n_items, k) float32; fold_in_l2: λ, chosen on the validation ratings."""

    item_codes: np.ndarray
    fold_in_l2: float

    def __post_init__(self):
        if self.item_codes.ndim != 2 or not np.isfinite(self.item_codes).all():
            raise ValueError("item codes must be a finite (n_items, k) matrix")
        if not self.fold_in_l2 > 0:
            raise ValueError("the fold-in λ must be positive")
        codes = np.asarray(self.item_codes, dtype=np.float64)
        features = np.hstack([codes, np.ones((len(codes), 1))])
        object.__setattr__(self, "_features", features)  # h̃, (n_items, k + 1) float64
        # h̃_i · h̃_j for every pair, (n_items, n_items) float64 (109 MB for 3,687 items),
        # made once: a user with at most k + 1 ratings is then folded in and predicted
        # without a product with the codes. Float64 because the fold-in solve amplifies the
        # rounding of its entries (float32 moved predictions by up to 3e-4 at λ = 3).
        # Without it (catalogs above GRAM_MAX_ITEMS) the same values come from the codes.
        gram = features @ features.T if len(features) <= GRAM_MAX_ITEMS else None
        object.__setattr__(self, "_gram", gram)

    @property
    def n_items(self) -> int:
        return self.item_codes.shape[0]

    @property
    def encoding_size(self) -> int:
        return self.item_codes.shape[1]

    @property
    def depth(self) -> int:
        return 1

    def _rows(self, preferences):
        """(rated columns, their preferences float64) of each row: its non-zero entries."""
        if sp.issparse(preferences):
            matrix = sp.csr_matrix(preferences)
            for row in range(matrix.shape[0]):
                start, end = matrix.indptr[row], matrix.indptr[row + 1]
                values = np.asarray(matrix.data[start:end], dtype=np.float64)
                rated = values != 0
                yield matrix.indices[start:end][rated], values[rated]
        else:
            for row in np.atleast_2d(np.asarray(preferences)):
                columns = np.flatnonzero(row)
                yield columns, row[columns].astype(np.float64)

    def _solve_dual(self, features: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(A Aᵀ + λI)⁻¹ target for A = `features` (|R|, k + 1), so that the user weights are
        w = Aᵀ (A Aᵀ + λI)⁻¹ p. Solved as it stands when |R| ≤ k + 1; otherwise through the
        (k + 1)-sized system of the Woodbury identity, (target − A (AᵀA + λI)⁻¹ Aᵀ target) / λ,
        so no system is ever larger than k + 1."""
        n, width = features.shape
        if n <= width:
            gram = features @ features.T
            gram[np.diag_indices_from(gram)] += self.fold_in_l2
            return np.linalg.solve(gram, target)
        gram = features.T @ features
        gram[np.diag_indices_from(gram)] += self.fold_in_l2
        inner = np.linalg.solve(gram, features.T @ target)
        return (target - features @ inner) / self.fold_in_l2

    def encode(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, k + 1) user weights w."""
        weights = []
        for columns, values in self._rows(preferences):
            if len(columns) == 0:
                weights.append(np.zeros(self._features.shape[1]))
                continue
            rated = self._features[columns]
            weights.append(rated.T @ self._solve_dual(rated, values))
        return np.array(weights, dtype=np.float64).reshape(-1, self._features.shape[1])

    def predict(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, n_items) float32 predictions."""
        rows = [self._predict_row(columns, values) for columns, values in self._rows(preferences)]
        return np.array(rows, dtype=np.float32).reshape(-1, self.n_items)

    def _predict_row(self, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        """h̃_i · w for every item i: K[:, R] (K_RR + λI)⁻¹ p with K the item Gram matrix
        when |R| ≤ k + 1 (no product with the codes at all), else h̃ (Aᵀ S)."""
        if len(columns) == 0:
            return np.zeros(self.n_items)
        if len(columns) > self._features.shape[1] or self._gram is None:
            rated = self._features[columns]
            return self._features @ (rated.T @ self._solve_dual(rated, values))
        rated_rows = self._gram[columns]  # K is symmetric: rows gather fast, columns do not
        gram = rated_rows[:, columns]
        gram[np.diag_indices_from(gram)] += self.fold_in_l2
        return np.linalg.solve(gram, values) @ rated_rows

    def predict_pairs(self, preferences, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Predicted preference of row `rows[j]` at column `columns[j]`. (n_pairs,) float32."""
        return self.predict(preferences)[rows, columns]

    @property
    def item_embeddings(self) -> np.ndarray:
        """(n_items, k): item j's embedding is its code."""
        return self.item_codes

    def contributions(self, columns: np.ndarray, values: np.ndarray, target: int) -> np.ndarray:
        """What each rated item adds to the predicted preference at column `target`:
        values[j] · [(A Aᵀ + λI)⁻¹ A h̃_target]_j with A the rated items' h̃; (n,) float64,
        adding up to predict(x)[target] (to rounding). An entry whose preference is 0 is no
        rating (as in predict) and contributes 0."""
        values = np.asarray(values, dtype=np.float64)
        parts = np.zeros(len(values))
        rated = values != 0
        if rated.any():
            features = self._features[np.asarray(columns)[rated]]
            weights = self._solve_dual(features, features @ self._features[target])
            parts[rated] = values[rated] * weights
        return parts


Network = LinearAutoencoder | DeepAutoencoder | ItemAutoencoder


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


@dataclass(frozen=True)
class Contribution:
    item_id: int
    preference: float  # the user's preference for the rated item (the input), stars
    contribution: float  # what it adds to the explained item's predicted preference, stars


@dataclass(frozen=True)
class Explanation:
    """predicted rating = μ + b_i + b_u + Σ contributions (listed + other)."""

    item_id: int
    predicted_rating: float
    global_mean: float
    item_mean: float
    user_mean: float
    predicted_preference: float
    contributions: list[Contribution]  # largest |contribution| first, at most the limit
    other_contribution: float  # sum of the ones not listed
    other_count: int


def explain_preferences(
    network: Network,
    index: ItemIndex,
    columns: np.ndarray,
    values: np.ndarray,
    item_id: int,
    limit: int,
) -> tuple[float, list[Contribution], float, int]:
    """(predicted preference, top `limit` contributions by |value|, sum of the others, how
    many others) of `item_id` for the input preferences `values` at `columns`.
    FailedPrecondition for a deep network: its predictions are no sum over rated items."""
    if isinstance(network, DeepAutoencoder):
        raise FailedPrecondition(
            "explanations need the linear network; this model is a deep autoencoder "
            f"(depth {network.depth}), whose predictions are not sums over rated items"
        )
    if item_id not in index:
        raise NotFound(f"movie {item_id} is not in the model")
    if limit <= 0:
        raise InvalidArgument("the number of contributions must be positive", field="limit")
    parts = network.contributions(columns, values, index.column(item_id))
    order = np.lexsort((columns, -np.abs(parts)))  # largest |contribution|, then by column
    shown, rest = order[:limit], order[limit:]
    listed = [
        Contribution(int(index.item_ids[columns[j]]), float(values[j]), float(parts[j]))
        for j in shown
    ]
    return float(parts.sum()), listed, float(parts[rest].sum()), len(rest)


class Recommender:
    """A trained model with the index and normalization it was trained with."""

    def __init__(
        self,
        network: Network,
        index: ItemIndex,
        normalization: Normalization,
        rating_scale: tuple[float, float] = DEFAULT_RATING_SCALE,
        ranking: ItemItemRanking | None = None,
    ):
        if network.n_items != len(index) or len(normalization.item_means) != len(index):
            raise ValueError("network, item index and normalization disagree on the item count")
        if ranking is not None and ranking.weights.shape != (len(index), len(index)):
            raise ValueError("the item-item ranking weights do not match the item count")
        self.ranking = ranking
        self.default_rank_by = default_mode(ranking)
        self.network = network
        self.index = index
        self.normalization = normalization
        self.rating_scale = rating_scale
        # item embeddings as a C-contiguous float64 copy, made once: distances are then one
        # matrix-vector product per query
        self.embeddings = ItemEmbeddings(network.item_embeddings)

    def user_vector(self, ratings: dict[int, float]) -> UserVector:
        """Normalize a user's {movie id: rating} with the trained μ and b_i and the user's b_u."""
        for item_id, rating in ratings.items():
            check_rating(item_id, rating, self.rating_scale, "ratings")
        user = user_preferences(ratings, self.index, self.normalization)
        vector = np.zeros(len(self.index), dtype=np.float32)
        vector[user.columns] = user.preferences
        return UserVector(vector, user.user_mean, user.columns, user.unknown_movie_ids)

    def predict_ratings(self, user: UserVector) -> np.ndarray:
        """(n_items,) float64 de-normalized predicted ratings, not clipped."""
        predicted = self.network.predict(user.preferences[None, :])[0]
        return self.normalization.denormalize(predicted.astype(np.float64), user.user_mean)

    def recommend(
        self, ratings: dict[int, float], k: int = 10, *, rank_by: str | None = None
    ) -> list[Scored]:
        """The k unrated items ranked by `rank_by` (recsys.ranking; default: the version's
        default, "relevance" when it has item-item weights), with their predicted ratings."""
        if k <= 0:
            raise InvalidArgument("k must be positive", field="k")
        mode = check_mode(rank_by or self.default_rank_by, self.ranking)
        user = self.user_vector(ratings)
        preferences = self.network.predict(user.preferences[None, :])
        predicted = self.normalization.denormalize(
            preferences[0].astype(np.float64), user.user_mean
        )
        scores = rank_scores(
            mode, preferences, self.normalization.item_means, [user.rated_columns], self.ranking
        )[0].astype(np.float64)
        scores[user.rated_columns] = -np.inf
        top = top_k(scores, min(k, len(self.index) - len(user.rated_columns)))
        return [Scored(int(self.index.item_ids[j]), float(predicted[j])) for j in top]

    def explain(self, ratings: dict[int, float], item_id: int, limit: int = 10) -> Explanation:
        """Why `item_id` gets its predicted rating from these ratings (linear network only)."""
        user = self.user_vector(ratings)
        columns = user.rated_columns
        preference, listed, other, other_count = explain_preferences(
            self.network, self.index, columns, user.preferences[columns], item_id, limit
        )
        column = self.index.column(item_id)
        item_mean = float(self.normalization.item_means[column])
        return Explanation(
            item_id=int(item_id),
            predicted_rating=self.normalization.global_mean
            + item_mean
            + user.user_mean
            + preference,
            global_mean=self.normalization.global_mean,
            item_mean=item_mean,
            user_mean=user.user_mean,
            predicted_preference=preference,
            contributions=listed,
            other_contribution=other,
            other_count=other_count,
        )

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


def top_k_rows(scores: np.ndarray, ks: np.ndarray) -> list[np.ndarray]:
    """top_k of each row of `scores` (m, n_items) with that row's k (ks: (m,) ≥ 1), without
    -inf entries: the same indices top_k gives row by row, found for all rows at once."""
    m, n_items = scores.shape
    if m == 0:
        return []
    deepest = int(min(ks.max(), n_items))
    part = np.argpartition(-scores, deepest - 1, axis=1)[:, :deepest]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    rows, columns = np.nonzero(scores >= kth[:, None])  # each row's top and its ties
    values = scores[rows, columns]
    order = np.lexsort((columns, -values, rows))
    rows, columns, values = rows[order], columns[order], values[order]
    starts = np.searchsorted(rows, np.arange(m + 1))
    rank = np.arange(len(rows)) - starts[rows]
    keep = (rank < np.asarray(ks)[rows]) & np.isfinite(values)
    kept_rows, kept_columns = rows[keep], columns[keep]
    bounds = np.searchsorted(kept_rows, np.arange(m + 1))
    return [kept_columns[bounds[j] : bounds[j + 1]] for j in range(m)]
