"""A trained model with the item index and normalization it was trained with: a user's
ratings in, de-normalized predictions, top-k recommendations, explanations and similar items
out (the offline commands and the tests; the model service serves the same network)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.embeddings import ItemEmbeddings
from recsys.errors import InvalidArgument, NotFound
from recsys.explain import Explanation, explain_preferences
from recsys.features import ItemIndex, Normalization, user_preferences
from recsys.network import Network
from recsys.ranking import ItemItemRanking, check_mode, default_mode, rank_scores
from recsys.rating_scale import DEFAULT_RATING_SCALE, check_rating
from recsys.topk import top_k


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
        """Why `item_id` gets its predicted rating from these ratings (FailedPrecondition for
        a network that cannot be explained)."""
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
        """Items nearest to (or farthest from) `item_id` among the network's item embeddings."""
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
