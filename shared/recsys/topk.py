"""Top-k selection over score vectors and matrices, with ties broken by the lower column: the
one ordering Recommend, SimilarItems and offline evaluation all rank by."""

from __future__ import annotations

import numpy as np


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
