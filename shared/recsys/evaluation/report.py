"""Score a trained model and the baselines on the same held-out pairs: RMSE and MAE of
de-normalized ratings clipped to the rating scale, Recall@k and NDCG@k of top-k lists (the
model's in each ranking mode, EASE's as the ranking baseline)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from recsys.data.split import sample_positions
from recsys.ease import Ease
from recsys.evaluation.metrics import mae, ndcg_at_k, recall_at_k, rmse
from recsys.features import ItemIndex, Normalization, PreferenceMatrix, preference_matrix
from recsys.network import Network
from recsys.ranking import ItemItemRanking, available_modes, default_mode, rank_scores
from recsys.rating_scale import DEFAULT_RATING_SCALE
from recsys.topk import top_k_rows

RELEVANT_RATING = 4.0
USERS_PER_CHUNK = 512
# Recall@k and NDCG@k rank at most this many users with relevant items: a seeded sample of
# them above it (MovieLens 25M's shape has 160k; ML-1M's 6,040 are all ranked)
RANKED_USERS = 20_000
SAMPLE_SEED = 0


@dataclass(frozen=True)
class Scores:
    name: str
    rmse: float | None  # None for a ranking-only row (EASE, the model's other rankings)
    mae: float | None
    recall_at_10: float | None
    ndcg_at_10: float | None
    test_pairs: int  # test ratings scored (those of items the model covers)
    coverage: float  # share of all test ratings scored

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_all(
    network: Network,
    index: ItemIndex,
    normalization: Normalization,
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    rating_scale: tuple[float, float] = DEFAULT_RATING_SCALE,
    model_name: str = "autoencoder",
    k: int = 10,
    ranking: ItemItemRanking | None = None,
    ease: Ease | None = None,
) -> list[Scores]:
    """The model and the baselines on the test ratings of covered items: global mean, bias
    (μ + b_i + b_u), EASE (ranking only; fitted here on `train` unless given). The model's
    row ranks as Recommend does by default; one more row per other ranking mode
    ("<model> by rating", ...). A user's input is their `train` ratings only: a test rating
    is never part of any input (`leaked_pairs` counts those, and must find none)."""
    columns = index.columns(test["item_id"].to_numpy())
    covered = test[columns >= 0]
    coverage = len(covered) / max(len(test), 1)
    users = np.unique(covered["user_id"].to_numpy())
    inputs = preference_matrix(train, index, normalization, user_ids=users)
    assert leaked_pairs(train, test) == 0, "a test rating is also a training rating"
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
    relevant = relevant_items(covered, index)
    if ease is None:
        ease = Ease.fit(preference_matrix(train, index, normalization).matrix)
    item_means = normalization.item_means.astype(np.float32)

    default = default_mode(ranking)
    modes = [default, *(m for m in available_modes(ranking) if m != default)]

    def rankings(rated):
        yield "bias", np.tile(item_means, (rated.shape[0], 1))
        yield "EASE", ease.scores(rated)
        predicted = network.predict(rated)  # once per chunk, for every mode
        for mode in modes:
            yield mode, rank_scores(mode, predicted, item_means, rated, ranking)

    quality = ranking_qualities(inputs, relevant, rankings, k)

    def quality_of(key):
        return quality.get(key, (None, None))

    n, total = len(covered), coverage
    mean = np.full(n, normalization.global_mean)
    scores = [
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
            *quality_of("bias"),
            n,
            total,
        ),
        Scores("EASE", None, None, *quality_of("EASE"), n, total),
        Scores(
            model_name,
            rmse(clipped(model), actual),
            mae(clipped(model), actual),
            *quality_of(default),
            n,
            total,
        ),
    ]
    for mode in modes[1:]:
        scores.append(Scores(f"{model_name} by {mode}", None, None, *quality_of(mode), n, total))
    return scores


def leaked_pairs(train: pd.DataFrame, test: pd.DataFrame) -> int:
    """How many (user, item) pairs of `test` are also in `train` (the inputs): must be 0."""
    pairs = pd.MultiIndex.from_frame(train[["user_id", "item_id"]])
    return int(pairs.isin(pd.MultiIndex.from_frame(test[["user_id", "item_id"]])).sum())


def leakage_free(train: pd.DataFrame, test: pd.DataFrame) -> bool:
    """True when no (user, item) pair of `test` is also in `train`."""
    return leaked_pairs(train, test) == 0


def relevant_items(covered: pd.DataFrame, index: ItemIndex) -> dict[int, set[int]]:
    """user → columns of their held-out ratings ≥ 4, the relevant ones (docs/model.md)."""
    liked = covered[covered["rating"] >= RELEVANT_RATING]
    users = liked["user_id"].to_numpy()
    order = np.argsort(users, kind="stable")
    users, cols = users[order], index.columns(liked["item_id"].to_numpy())[order]
    if not len(users):
        return {}
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = [*starts[1:], len(users)]
    return {int(users[s]): set(cols[s:e].tolist()) for s, e in zip(starts, ends, strict=True)}


def ranking_quality(inputs: PreferenceMatrix, relevant, scores_of, k: int = 10):
    """Mean Recall@k and NDCG@k over users with relevant test items. `scores_of` maps CSR
    rows of `inputs.matrix` (a user's train ratings) to (batch, n_items) scores; every
    covered item the user did not rate in train is ranked, larger score first."""
    qualities = ranking_qualities(inputs, relevant, lambda rated: [(None, scores_of(rated))], k)
    return qualities.get(None, (None, None))


def ranking_qualities(inputs: PreferenceMatrix, relevant, scores_of, k: int = 10) -> dict:
    """ranking_quality of several rankings in one pass over the users: `scores_of(rated)`
    yields (key, (batch, n_items) scores) pairs for the same CSR rows, so what the rankings
    share (the network's pass over a chunk, EASE's item scores) is computed once per chunk.
    Returns key → (Recall@k, NDCG@k); empty when no user has relevant items. Above
    RANKED_USERS such users, a seeded sample of that many is ranked (ranked_users)."""
    row_of = {int(u): r for r, u in enumerate(inputs.user_ids)}
    users = ranked_users([u for u in sorted(relevant) if u in row_of])
    sums: dict = {}
    for start in range(0, len(users), USERS_PER_CHUNK):
        chunk = users[start : start + USERS_PER_CHUNK]
        rated = inputs.matrix[[row_of[u] for u in chunk]]
        rated_rows = np.repeat(np.arange(len(chunk)), np.diff(rated.indptr))
        for key, scores in scores_of(rated):
            scores = np.array(scores, copy=True)  # its own dtype: float32 stays float32
            scores[rated_rows, rated.indices] = -np.inf
            ranked = top_k_rows(scores, np.full(len(chunk), k))
            recall, ndcg = sums.setdefault(key, ([], []))
            for user, top in zip(chunk, ranked, strict=True):
                recall.append(recall_at_k(top, relevant[user], k))
                ndcg.append(ndcg_at_k(top, relevant[user], k))
    return {key: (float(np.mean(r)), float(np.mean(n))) for key, (r, n) in sums.items()}


def ranked_users(users: list[int], limit: int = RANKED_USERS) -> list[int]:
    """`users` (sorted) when at most `limit`, else `limit` of them drawn without replacement
    with SAMPLE_SEED, in sorted order: the same sample for every ranking of one split."""
    if len(users) <= limit:
        return users
    return [users[i] for i in sample_positions(len(users), limit, SAMPLE_SEED)]
