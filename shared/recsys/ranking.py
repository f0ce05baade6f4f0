"""How Recommend orders the items a user has not rated (NumPy; serving and evaluation). One
entry of RANK_BY per mode; the proto enums name each mode RANK_BY_<MODE> (recsys.serving.enums).

- "rating": by predicted rating, pref + b_i (b_u and μ are the same for all of a user's
  items). Surfaces rarely rated movies with a high b_i: poor Recall@10 on the whole catalog.
- "preference": by predicted preference alone.
- "relevance": EASE item-item scores (who rated what; Steck 2019, fitted in closed form on
  the same training ratings as the model and saved with it) plus `preference_weight` × the
  predicted preference: the item-item part says what the user is likely to rate at all, the
  autoencoder's part which of those they will like more than the item's average.
  `preference_weight` is chosen on the validation part at training time. (Blending the predicted
  rating pref + b_i instead measured worse: b_i favours rarely rated movies again.)

Evaluation measures every mode against EASE on the held-out split (docs/model.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.errors import FailedPrecondition, InvalidArgument

PREFERENCE_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)  # blend weights tried on the validation part


@dataclass(frozen=True)
class ItemItemRanking:
    """EASE weights with a zero diagonal — dense (n_items, n_items) float32, or float32 CSR
    keeping `neighbors` entries per column (recsys.sparse_ease; 0: dense) and at most
    `row_limit` per row (0: no limit) — their λ, and the weight of the predicted preference in
    the "relevance" blend."""

    weights: np.ndarray | sp.csr_matrix
    l2: float
    preference_weight: float
    neighbors: int = 0
    row_limit: int = 0

    def item_scores(self, rated: sp.spmatrix | list[np.ndarray]) -> np.ndarray:
        """Σ_j∈rated B[j, :] per user: rows of a (batch, n_items) matrix whose stored entries
        are the rated items (values ignored), or one array of rated columns per user."""
        if isinstance(rated, list):
            if not sp.issparse(self.weights):
                return np.stack([self.weights[columns].sum(axis=0) for columns in rated])
            n_items = self.weights.shape[0]
            offsets = np.cumsum([0, *(len(columns) for columns in rated)])
            columns = np.concatenate(rated) if rated else np.zeros(0, np.int64)
            values = np.ones(len(columns), np.float32)
            rated = sp.csr_matrix((values, columns, offsets), shape=(len(offsets) - 1, n_items))
        binary = sp.csr_matrix(rated, dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        product = binary @ self.weights
        if sp.issparse(product):
            product = product.toarray()
        return np.asarray(product, dtype=np.float32)


@dataclass(frozen=True)
class RankMode:
    """`score(predicted, item_means, rated, ranking)` → (batch, n_items) scores, larger
    first: `predicted` the predicted preferences (batch, n_items), `item_means` b_i float32,
    `rated` the users' rated items as ItemItemRanking.item_scores takes them, `ranking` the
    version's item-item weights (None unless `needs_item_item`)."""

    name: str
    score: Callable[..., np.ndarray]
    needs_item_item: bool = False


def _by_rating(predicted, item_means, rated, ranking) -> np.ndarray:
    return predicted + item_means[None, :].astype(np.float32)


def _by_preference(predicted, item_means, rated, ranking) -> np.ndarray:
    return np.array(predicted, dtype=np.float32, copy=True)


def relevance_blend(item_scores: np.ndarray, predicted: np.ndarray, weight: float) -> np.ndarray:
    """The "relevance" scores: item-item scores (batch, n_items) + `weight` × the predicted
    preferences (batch, n_items), float32."""
    return item_scores + np.float32(weight) * predicted


def _by_relevance(predicted, item_means, rated, ranking) -> np.ndarray:
    return relevance_blend(ranking.item_scores(rated), predicted, ranking.preference_weight)


RANK_BY: dict[str, RankMode] = {
    mode.name: mode
    for mode in (
        RankMode("rating", _by_rating),
        RankMode("preference", _by_preference),
        RankMode("relevance", _by_relevance, needs_item_item=True),
    )
}
RANK_MODES = tuple(RANK_BY)


def check_mode(mode: str, ranking: ItemItemRanking | None) -> str:
    if mode not in RANK_BY:
        raise InvalidArgument(f"rank_by must be one of {RANK_MODES}", field="rank_by")
    if RANK_BY[mode].needs_item_item and ranking is None:
        raise FailedPrecondition(f"this model version has no item-item weights for {mode}")
    return mode


def available_modes(ranking: ItemItemRanking | None) -> tuple[str, ...]:
    """The modes a version with (or without) item-item weights can rank by, in RANK_MODES
    order."""
    return tuple(m for m in RANK_MODES if ranking is not None or not RANK_BY[m].needs_item_item)


def default_mode(ranking: ItemItemRanking | None) -> str:
    """What Recommend uses unless asked otherwise: relevance when the version has item-item
    weights (every version trained since issue 8), else rating."""
    return "relevance" if ranking is not None else "rating"


def rank_scores(
    mode: str,
    predicted: np.ndarray,
    item_means: np.ndarray,
    rated,
    ranking: ItemItemRanking | None,
) -> np.ndarray:
    """(batch, n_items) scores to rank by, larger first; `predicted` are predicted
    preferences (batch, n_items), `rated` the users' rated items as ItemItemRanking takes
    them. Rated items are not excluded here."""
    return RANK_BY[check_mode(mode, ranking)].score(predicted, item_means, rated, ranking)
