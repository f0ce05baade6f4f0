import numpy as np
import pandas as pd
import pytest

from recsys.errors import InvalidArgument
from recsys.features import ItemIndex, ItemSelection, Normalization, preference_matrix

# Hand-worked example. Ratings (user, item, rating):
#   u1: i1=5, i2=3    u2: i1=4    u3: i2=1, i3=2
# μ = (5+3+4+1+2)/5 = 3.0
# b_i1 = ((5-3)+(4-3))/2 = 1.5;  b_i2 = ((3-3)+(1-3))/2 = -1.0;  b_i3 = (2-3)/1 = -1.0
# b_u1 = ((5-3-1.5) + (3-3+1))/2 = (0.5 + 1.0)/2 = 0.75 → prefs i1 = 0.5-0.75 = -0.25,
#        i2 = 1.0-0.75 = 0.25
# b_u2 = 4-3-1.5 = -0.5 → pref i1 = 0
# b_u3 = ((1-3+1) + (2-3+1))/2 = (-1 + 0)/2 = -0.5 → prefs i2 = -0.5, i3 = 0.5
RATINGS = pd.DataFrame(
    {"user_id": [1, 1, 2, 3, 3], "item_id": [1, 2, 1, 2, 3], "rating": [5.0, 3, 4, 1, 2]}
)


def fitted():
    index = ItemIndex(np.array([1, 2, 3]))
    columns = index.columns(RATINGS["item_id"].to_numpy())
    return index, Normalization.fit(columns, RATINGS["rating"].to_numpy(), len(index))


def test_normalization_by_hand():
    _, norm = fitted()
    assert norm.global_mean == 3.0
    np.testing.assert_allclose(norm.item_means, [1.5, -1.0, -1.0])


def test_preference_matrix_by_hand():
    index, norm = fitted()
    prefs = preference_matrix(RATINGS, index, norm)
    assert prefs.user_ids.tolist() == [1, 2, 3]
    np.testing.assert_allclose(prefs.user_means, [0.75, -0.5, -0.5])
    np.testing.assert_allclose(
        prefs.matrix.toarray(), [[-0.25, 0.25, 0.0], [0.0, 0.0, 0.0], [0.0, -0.5, 0.5]]
    )


def test_single_user_preferences_match_the_matrix():
    _, norm = fitted()
    prefs, user_mean = norm.preferences(np.array([2, 1]), np.array([2.0, 1.0]))  # u3, reordered
    assert user_mean == -0.5
    np.testing.assert_allclose(prefs, [0.5, -0.5])
    np.testing.assert_allclose(norm.denormalize(prefs, user_mean, np.array([2, 1])), [2.0, 1.0])


def test_user_without_known_items_has_zero_mean_and_empty_row():
    index, norm = fitted()
    prefs = preference_matrix(RATINGS, index, norm, user_ids=np.array([1, 99]))
    assert prefs.user_means[1] == 0.0
    assert prefs.matrix[1].nnz == 0


def test_items_outside_the_index_are_ignored():
    index = ItemIndex(np.array([1, 2]))
    _, norm = fitted()
    norm2 = Normalization(norm.global_mean, norm.item_means[:2])
    prefs = preference_matrix(RATINGS, index, norm2)
    # u3 keeps only i2: b_u3 = 1-3+1 = -1, pref 0
    np.testing.assert_allclose(prefs.user_means, [0.75, -0.5, -1.0])


def test_item_selection():
    # counts: i1 2, i2 2, i3 1
    assert ItemSelection(top_n=2).select(RATINGS).tolist() == [1, 2]
    assert ItemSelection(min_ratings=2).select(RATINGS).tolist() == [1, 2]
    assert ItemSelection().select(RATINGS).tolist() == [1, 2, 3]
    with pytest.raises(InvalidArgument):
        ItemSelection(top_n=5, min_ratings=2)
    with pytest.raises(InvalidArgument, match="top_n"):
        ItemSelection(top_n=0)


def test_item_index_columns():
    index = ItemIndex(np.array([30, 10, 20]))
    assert index.columns(np.array([10, 99, 30])).tolist() == [1, -1, 0]
    assert 20 in index and 99 not in index
