import numpy as np
import pytest

from recsys.embeddings import ItemEmbeddings, item_distances
from recsys.errors import InvalidArgument, NotFound
from recsys.features import ItemIndex, Normalization
from recsys.model.user.network import LinearAutoencoder
from recsys.ranking import ItemItemRanking
from recsys.recommender import Recommender
from recsys.topk import top_k, top_k_rows


def tiny_recommender():
    # 3 items (ids 10, 20, 30), k = 1. encoder [[1], [0], [0]], decoder [[0, 2, -1]]:
    # the code is the preference for item 10; predictions = code × [0, 2, -1].
    network = LinearAutoencoder(
        np.array([[1.0], [0.0], [0.0]], np.float32), np.array([[0.0, 2.0, -1.0]], np.float32)
    )
    # μ = 3, b_i = [0.5, 0, -0.5]
    return Recommender(
        network, ItemIndex(np.array([10, 20, 30])), Normalization(3.0, np.array([0.5, 0.0, -0.5]))
    )


def test_recommend_by_hand():
    model = tiny_recommender()
    # user rates 10 with 5 and 30 with 2: residuals 5-3-0.5 = 1.5, 2-3+0.5 = -0.5 → b_u = 0.5
    # prefs: 10 → 1.0, 30 → -1.0; code = 1.0; predicted prefs [0, 2, -1]
    # ratings = pref + b_u + b_i + μ: item 20 → 2 + 0.5 + 0 + 3 = 5.5
    user = model.user_vector({10: 5, 30: 2})
    assert user.user_mean == pytest.approx(0.5)
    np.testing.assert_allclose(user.preferences, [1.0, 0.0, -1.0])
    np.testing.assert_allclose(model.predict_ratings(user), [4.0, 5.5, 2.0])
    picks = model.recommend({10: 5, 30: 2}, k=5)
    assert [(p.item_id, p.value) for p in picks] == [(20, pytest.approx(5.5))]


def test_recommend_ignores_unknown_items_and_checks_input():
    model = tiny_recommender()
    assert model.user_vector({10: 5, 999: 4}).unknown_item_ids == [999]
    with pytest.raises(InvalidArgument, match="outside"):
        model.user_vector({10: 6})
    with pytest.raises(InvalidArgument, match="k must be positive"):
        model.recommend({10: 5}, k=0)
    # nobody rated anything known: b_u = 0, prefs 0 → ratings are μ + b_i
    np.testing.assert_allclose(model.predict_ratings(model.user_vector({})), [3.5, 3.0, 2.5])


def test_similar_items():
    model = tiny_recommender()
    # embeddings (decoder columns): 10 → 0, 20 → 2, 30 → -1
    near = model.similar(10, k=2)
    assert [(p.item_id, p.value) for p in near] == [(30, 1.0), (20, 2.0)]
    far = model.similar(10, k=1, farthest=True)
    assert far[0].item_id == 20
    with pytest.raises(NotFound):
        model.similar(99)
    with pytest.raises(InvalidArgument, match="metric"):
        model.similar(10, metric="manhattan")


def test_prepared_embeddings_give_the_same_distances():
    emb = np.random.default_rng(1).normal(size=(50, 6))
    emb[7] = 0
    prepared = ItemEmbeddings(emb)
    for metric in ("euclidean", "cosine"):
        for column in (0, 7, 49):
            np.testing.assert_allclose(
                prepared.distances(column, metric),
                item_distances(emb, column, metric),
                atol=1e-9,
            )


def test_distances():
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(item_distances(emb, 0), [0.0, np.sqrt(5), 1.0, 1.0])
    # cosine: same direction 0, orthogonal 1, zero vector 1
    np.testing.assert_allclose(item_distances(emb, 0, "cosine"), [0.0, 1.0, 0.0, 1.0])


def test_top_k_breaks_ties_at_the_cut_off_by_index():
    scores = np.zeros(40)
    scores[[3, 30]] = 1.0  # two winners, then 38 items tied at 0
    assert top_k(scores, 5).tolist() == [3, 30, 0, 1, 2]
    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.integers(0, 4, 60).astype(float)
        k = int(rng.integers(1, 60))
        assert top_k(scores, k).tolist() == np.lexsort((np.arange(60), -scores))[:k].tolist()


def test_top_k_order_and_ties():
    scores = np.array([1.0, 3.0, -np.inf, 3.0, 2.0])
    assert top_k(scores, 3).tolist() == [1, 3, 4]
    assert top_k(scores, 0).tolist() == []
    assert top_k(scores, 10).tolist() == [1, 3, 4, 0, 2]


def test_explain_by_hand():
    model = tiny_recommender()
    # W_enc W_dec = [[0, 2, -1], [0, 0, 0], [0, 0, 0]]; prefs 10 → 1.0, 30 → -1.0 (as above)
    # item 20: 1.0 × 2 (from 10) + (-1.0) × 0 (from 30) = 2; rating 3 + 0 + 0.5 + 2 = 5.5
    e = model.explain({10: 5, 30: 2}, 20, limit=1)
    assert e.predicted_preference == pytest.approx(2.0)
    assert e.predicted_rating == pytest.approx(5.5)
    assert [(c.item_id, c.contribution) for c in e.contributions] == [(10, pytest.approx(2.0))]
    assert (e.other_contribution, e.other_count) == (pytest.approx(0.0), 1)
    with pytest.raises(NotFound):
        model.explain({10: 5}, 99)
    with pytest.raises(InvalidArgument):
        model.explain({10: 5}, 20, limit=0)


def test_relevance_ranking_by_hand():
    base = tiny_recommender()
    weights = np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]], np.float32)  # 10 ↔ 30
    model = Recommender(
        base.network, base.index, base.normalization, ranking=ItemItemRanking(weights, 1.0, 0.5)
    )
    # one rating: 10 → 5, b_u = 5 - 3 - 0.5 = 1.5, pref 0, so every predicted pref is 0.
    # relevance = row of 10 in B + 0.5 × 0 = [0, 0, 1]: 30 before 20.
    # rating = pref + b_i = [0.5, 0, -0.5]: 20 before 30. Ratings: 20 → 4.5, 30 → 4.0.
    assert model.default_rank_by == "relevance"
    picks = model.recommend({10: 5}, k=2)
    assert [(p.item_id, p.value) for p in picks] == [
        (30, pytest.approx(4.0)),
        (20, pytest.approx(4.5)),
    ]
    assert [p.item_id for p in model.recommend({10: 5}, k=2, rank_by="rating")] == [20, 30]
    assert base.default_rank_by == "rating"


def test_top_k_rows_gives_top_k_of_each_row():
    """Ties (at the cut-off too), -inf entries, k beyond the finite entries, k per row."""
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, size=(40, 30)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[5] = -np.inf  # nothing finite
    ks = rng.integers(1, 35, size=40)
    for j, best in enumerate(top_k_rows(scores, ks)):
        want = top_k(scores[j], int(ks[j]))
        assert best.tolist() == want[np.isfinite(scores[j][want])].tolist()
    assert top_k_rows(np.empty((0, 5), np.float32), np.empty(0, np.int64)) == []
