import math

import numpy as np
import pandas as pd
import pytest

from recsys.data.split import split_ratings
from recsys.evaluation.metrics import mae, ndcg_at_k, recall_at_k, rmse
from recsys.evaluation.report import leakage_free


def test_rmse_and_mae_by_hand():
    # errors 1, -1, 2 → RMSE sqrt((1+1+4)/3) = sqrt(2); MAE (1+1+2)/3 = 4/3
    assert rmse([4, 2, 5], [3, 3, 3]) == pytest.approx(math.sqrt(2))
    assert mae([4, 2, 5], [3, 3, 3]) == pytest.approx(4 / 3)


def test_recall_and_ndcg_by_hand():
    # ranked [3, 1, 2], relevant {1, 5}, k = 2: one hit (item 1) at rank 2
    # Recall@2 = 1 / min(2, 2) = 0.5
    # DCG = 1/log2(3) = 0.6309; IDCG = 1/log2(2) + 1/log2(3) = 1.6309; NDCG = 0.3869
    assert recall_at_k([3, 1, 2], {1, 5}, 2) == 0.5
    assert ndcg_at_k([3, 1, 2], {1, 5}, 2) == pytest.approx(0.63093 / 1.63093, rel=1e-4)
    # a single relevant item at rank 1: both 1
    assert recall_at_k([7, 1], {7}, 10) == 1.0
    assert ndcg_at_k([7, 1], {7}, 10) == 1.0
    with pytest.raises(ValueError):
        recall_at_k([1], set(), 10)


def test_split_is_the_design_permutation():
    ratings = pd.DataFrame(
        {"user_id": np.arange(1000), "item_id": np.arange(1000) % 7, "rating": np.ones(1000)}
    )
    split = split_ratings(ratings, seed=0)
    order = np.random.default_rng(0).permutation(1000)
    assert split.test["user_id"].tolist() == order[900:].tolist()
    assert split.fit["user_id"].tolist() == order[:810].tolist()
    assert split.validation["user_id"].tolist() == order[810:900].tolist()
    assert len(split.train) == 900
    assert split_ratings(ratings, seed=0).test.equals(split.test)


def test_leakage_check():
    train = pd.DataFrame({"user_id": [1, 1], "item_id": [1, 2]})
    assert leakage_free(train, pd.DataFrame({"user_id": [1, 2], "item_id": [3, 1]}))
    assert not leakage_free(train, pd.DataFrame({"user_id": [1], "item_id": [2]}))
