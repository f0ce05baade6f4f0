"""Accuracy and ranking metrics on plain arrays.

Recall@k = hits in the top k / min(k, number of relevant items); NDCG@k uses binary gains
and the ideal DCG of min(k, relevant) hits. Users with no relevant held-out item are skipped.
"""

from __future__ import annotations

import numpy as np


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(actual)) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted) - np.asarray(actual))))


def recall_at_k(ranked: list[int] | np.ndarray, relevant: set[int], k: int) -> float:
    if not relevant:
        raise ValueError("recall needs at least one relevant item")
    hits = sum(1 for item in list(ranked)[:k] if item in relevant)
    return hits / min(k, len(relevant))


def ndcg_at_k(ranked: list[int] | np.ndarray, relevant: set[int], k: int) -> float:
    if not relevant:
        raise ValueError("NDCG needs at least one relevant item")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.array([1.0 if item in relevant else 0.0 for item in list(ranked)[:k]])
    dcg = float((gains * discounts[: len(gains)]).sum())
    ideal = float(discounts[: min(k, len(relevant))].sum())
    return dcg / ideal
