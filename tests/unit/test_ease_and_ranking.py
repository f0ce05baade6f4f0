"""EASE in closed form and the ranking modes, by hand."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.ease import Ease, fit_ease
from recsys.errors import FailedPrecondition, InvalidArgument
from recsys.evaluation.metrics import ndcg_at_k, recall_at_k
from recsys.evaluation.report import (
    leaked_pairs,
    ranked_users,
    ranking_qualities,
    ranking_quality,
    relevant_items,
)
from recsys.features import ItemIndex, PreferenceMatrix
from recsys.ranking import ItemItemRanking, available_modes, default_mode, rank_scores
from recsys.topk import top_k


def test_ease_by_hand():
    # X = [[1, 1], [1, 0]], λ = 1: G = XᵀX + I = [[3, 1], [1, 2]], P = G⁻¹ = [[2, -1], [-1, 3]] / 5
    # B_ij = -P_ij / P_jj: B_01 = (1/5) / (3/5) = 1/3, B_10 = (1/5) / (2/5) = 1/2, diagonal 0
    weights = fit_ease(sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0]])), l2=1.0)
    np.testing.assert_allclose(weights, [[0.0, 1 / 3], [1 / 2, 0.0]], rtol=1e-6)
    with pytest.raises(ValueError):
        fit_ease(sp.csr_matrix(np.eye(2)), l2=0)


def test_ease_uses_who_rated_what_not_the_values():
    rng = np.random.default_rng(0)
    binary = (rng.random((30, 8)) < 0.4).astype(np.float32)
    preferences = binary * rng.normal(0, 1, binary.shape).astype(np.float32)
    preferences[binary > 0] += 10  # no stored zeros: the structure is the binary one
    a = Ease.fit(sp.csr_matrix(binary), 5.0)
    b = Ease.fit(sp.csr_matrix(preferences), 5.0)
    np.testing.assert_allclose(a.weights, b.weights)
    np.testing.assert_allclose(a.scores(sp.csr_matrix(preferences[:3])), binary[:3] @ a.weights)


def test_rank_modes_by_hand():
    predicted = np.array([[1.0, -1.0, 0.5]], np.float32)
    item_means = np.array([0.0, 3.0, 0.0])
    weights = np.array([[0, 2, 1], [0, 0, 0], [1, 1, 0]], np.float32)
    ranking = ItemItemRanking(weights, l2=1.0, preference_weight=0.5)
    rated = [np.array([0])]  # the user rated item 0
    np.testing.assert_allclose(
        rank_scores("preference", predicted, item_means, rated, None), predicted
    )
    # rating: pref + b_i = [1, 2, 0.5]
    np.testing.assert_allclose(
        rank_scores("rating", predicted, item_means, rated, None), [[1, 2, 0.5]]
    )
    # relevance: row 0 of B + 0.5 × pref = [0 + 0.5, 2 - 0.5, 1 + 0.25]
    np.testing.assert_allclose(
        rank_scores("relevance", predicted, item_means, rated, ranking), [[0.5, 1.5, 1.25]]
    )
    # the same with the rated items as the stored entries of a sparse row
    np.testing.assert_allclose(
        rank_scores("relevance", predicted, item_means, sp.csr_matrix([[0.0, 0, 0]]), ranking),
        [[0.5, -0.5, 0.25]],  # a row with nothing stored: only 0.5 × pref
    )
    assert default_mode(ranking) == "relevance" and default_mode(None) == "rating"
    assert available_modes(ranking) == ("rating", "preference", "relevance")
    assert available_modes(None) == ("rating", "preference")  # relevance needs item-item weights
    with pytest.raises(FailedPrecondition):
        rank_scores("relevance", predicted, item_means, rated, None)
    with pytest.raises(InvalidArgument):
        rank_scores("popularity", predicted, item_means, rated, ranking)


def test_ranking_quality_by_hand():
    # two users over 4 items; user 1 rated item 0 (excluded), user 2 rated nothing
    matrix = sp.csr_matrix(np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]], np.float32))
    matrix.eliminate_zeros()
    inputs = PreferenceMatrix(np.array([1, 2]), matrix, np.zeros(2))
    scores = np.array([[9.0, 3, 2, 1], [4.0, 3, 2, 1]])
    # k = 2. user 1: ranked [1, 2], relevant {2} → recall 1, NDCG 1/log2(3) / 1
    # user 2: ranked [0, 1], relevant {3} → 0, 0
    recall, ndcg = ranking_quality(
        inputs, {1: {2}, 2: {3}}, lambda rows: scores[: rows.shape[0]], 2
    )
    assert recall == pytest.approx(0.5)
    assert ndcg == pytest.approx(0.5 / np.log2(3))


def test_ranking_qualities_score_each_ranking_in_one_pass_per_chunk(monkeypatch):
    import recsys.evaluation.report as report

    monkeypatch.setattr(report, "USERS_PER_CHUNK", 3)  # chunks of 3, 3 and 1 users
    rng = np.random.default_rng(1)
    matrix = sp.csr_matrix((rng.random((7, 12)) < 0.3).astype(np.float32))
    inputs = PreferenceMatrix(np.arange(10, 17), matrix, np.zeros(7))
    relevant = {int(u): set(rng.choice(12, 2, replace=False).tolist()) for u in range(10, 17)}
    scores = {key: rng.normal(size=(7, 12)) for key in ("a", "b")}
    scores["ties"] = np.round(scores["a"])  # ties are broken by the lower column
    chunks = []

    def rankings(rated):
        first = sum(chunks)
        chunks.append(rated.shape[0])
        for key, values in scores.items():
            yield key, values[first : first + rated.shape[0]]

    together = ranking_qualities(inputs, relevant, rankings, 3)
    assert chunks == [3, 3, 1]  # each chunk's rankings come from one call
    for key, values in scores.items():  # user by user, as a reader would rank them
        recalls, ndcgs = [], []
        for row, user in enumerate(range(10, 17)):
            ranked = values[row].copy()
            ranked[matrix[row].indices] = -np.inf  # what the user rated in train
            top = top_k(ranked, 3)
            recalls.append(recall_at_k(top, relevant[user], 3))
            ndcgs.append(ndcg_at_k(top, relevant[user], 3))
        assert together[key] == (pytest.approx(np.mean(recalls)), pytest.approx(np.mean(ndcgs)))
    assert ranking_qualities(inputs, {}, rankings) == {}
    assert ranking_quality(inputs, {}, lambda rated: scores["a"]) == (None, None)


def test_relevant_items_are_each_users_held_out_columns_rated_4_or_more():
    import pandas as pd

    index = ItemIndex(np.array([10, 20, 30]))  # movie 10 is column 0, 20 is 1, 30 is 2
    held_out = pd.DataFrame(
        {"user_id": [2, 1, 2, 3, 1], "item_id": [10, 30, 20, 10, 10], "rating": [4, 5, 4.5, 3, 1]}
    )
    # user 1: movie 30 (5 stars); user 2: movies 10 and 20; user 3's 3 stars are not relevant
    assert relevant_items(held_out, index) == {1: {2}, 2: {0, 1}}
    assert relevant_items(held_out.iloc[:0], index) == {}


def test_above_the_limit_a_seeded_sample_of_users_is_ranked():
    users = list(range(100, 200))
    assert ranked_users(users, limit=100) is users
    sample = ranked_users(users, limit=7)
    assert len(set(sample)) == 7 and sample == sorted(sample) and set(sample) <= set(users)
    assert ranked_users(users, limit=7) == sample  # the same users for every ranking


def test_leaked_pairs_counts_test_ratings_in_the_inputs():
    import pandas as pd

    train = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 20, 10]})
    test = pd.DataFrame({"user_id": [1, 2, 2], "item_id": [30, 10, 20]})
    assert leaked_pairs(train, test) == 1
    assert leaked_pairs(train, test.iloc[[0, 2]]) == 0
