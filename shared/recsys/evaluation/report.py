"""Score a trained model and the baselines on the same held-out pairs: RMSE and MAE of
de-normalized ratings clipped to the rating scale, Recall@k and NDCG@k of top-k lists."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from recsys.evaluation.metrics import mae, ndcg_at_k, recall_at_k, rmse
from recsys.features import ItemIndex, Normalization, preference_matrix
from recsys.scoring import LinearAutoencoder, top_k

RELEVANT_RATING = 4.0
USERS_PER_CHUNK = 512


@dataclass(frozen=True)
class Scores:
    name: str
    rmse: float
    mae: float
    recall_at_10: float | None
    ndcg_at_10: float | None
    test_pairs: int  # test ratings scored (those of items the model covers)
    coverage: float  # share of all test ratings scored

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_all(
    network: LinearAutoencoder,
    index: ItemIndex,
    normalization: Normalization,
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    model_name: str = "autoencoder",
    k: int = 10,
) -> list[Scores]:
    """The model and the global-mean and bias (μ + b_i + b_u) baselines, on the test ratings
    of covered items. A user's input is their `train` ratings only: a test rating is never
    part of any input (`leakage_free` checks this)."""
    columns = index.columns(test["item_id"].to_numpy())
    covered = test[columns >= 0]
    coverage = len(covered) / max(len(test), 1)
    users = np.unique(covered["user_id"].to_numpy())
    inputs = preference_matrix(train, index, normalization, user_ids=users)
    assert leakage_free(train, test), "a test rating is also a training rating"
    rows = pd.Index(inputs.user_ids).get_indexer(covered["user_id"].to_numpy())
    cols = index.columns(covered["item_id"].to_numpy())
    actual = covered["rating"].to_numpy(np.float64)
    low, high = rating_scale

    def clipped(values):
        return np.clip(values, low, high)

    user_means = inputs.user_means[rows]
    bias = normalization.denormalize(np.zeros(len(rows)), user_means, cols)
    model = normalization.denormalize(
        network.predict_pairs(inputs.matrix, rows, cols).astype(np.float64), user_means, cols
    )
    relevant = _relevant_items(covered, index)
    model_rank = _ranking_scores(inputs, relevant, normalization, network.predict, k)
    bias_rank = _ranking_scores(inputs, relevant, normalization, lambda m: np.zeros(m.shape), k)
    n, total = len(covered), coverage
    mean = np.full(n, normalization.global_mean)
    return [
        Scores(
            "global mean",
            rmse(clipped(mean), actual),
            mae(clipped(mean), actual),
            None,
            None,
            n,
            total,
        ),
        Scores(
            "bias baseline",
            rmse(clipped(bias), actual),
            mae(clipped(bias), actual),
            *bias_rank,
            n,
            total,
        ),
        Scores(
            model_name,
            rmse(clipped(model), actual),
            mae(clipped(model), actual),
            *model_rank,
            n,
            total,
        ),
    ]


def leakage_free(train: pd.DataFrame, test: pd.DataFrame) -> bool:
    """True when no (user, item) pair of `test` is also in `train`."""
    pairs = pd.MultiIndex.from_frame(train[["user_id", "item_id"]])
    return not pairs.isin(pd.MultiIndex.from_frame(test[["user_id", "item_id"]])).any()


def _relevant_items(covered: pd.DataFrame, index: ItemIndex) -> dict[int, set[int]]:
    liked = covered[covered["rating"] >= RELEVANT_RATING]
    cols = index.columns(liked["item_id"].to_numpy())
    relevant: dict[int, set[int]] = {}
    for user, col in zip(liked["user_id"].to_numpy(), cols, strict=True):
        relevant.setdefault(int(user), set()).add(int(col))
    return relevant


def _ranking_scores(inputs, relevant, normalization, predict, k):
    """Mean Recall@k and NDCG@k over users with relevant test items. Ranks every covered item
    the user did not rate in train by predicted rating; b_u is constant per user, so ranking
    by predicted preference + b_i gives the same order."""
    row_of = {int(u): r for r, u in enumerate(inputs.user_ids)}
    users = [u for u in sorted(relevant) if u in row_of]
    if not users:
        return None, None
    recalls, ndcgs = [], []
    for start in range(0, len(users), USERS_PER_CHUNK):
        chunk = users[start : start + USERS_PER_CHUNK]
        rated = inputs.matrix[[row_of[u] for u in chunk]]
        scores = predict(rated) + normalization.item_means[None, :]
        for r, user in enumerate(chunk):
            row = scores[r]
            row[rated.indices[rated.indptr[r] : rated.indptr[r + 1]]] = -np.inf
            ranked = top_k(row, k)
            recalls.append(recall_at_k(ranked, relevant[user], k))
            ndcgs.append(ndcg_at_k(ranked, relevant[user], k))
    return float(np.mean(recalls)), float(np.mean(ndcgs))
