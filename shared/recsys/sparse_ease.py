"""EASE with sparse item-item weights, for catalogs whose dense (n_items, n_items) weights do
not fit in memory: each item's column of weights is the ridge regression of that item on its
top `neighbors` items only, instead of on all other items.

EASE's column j is exactly the ridge regression of item j on every other item (the diagonal
constraint removes j from its own regression):

    B[:, j] = argmin_w ‖X_j − X_{−j} w‖² + λ‖w‖²  =  (G_{−j,−j} + λI)⁻¹ G_{−j,j},  G = XᵀX

Restricting the regressors to N(j), the `neighbors` items most similar to j by cosine of
co-occurrence (G_ij / √(G_ii G_jj)), gives B[N(j), j] = (G_NN + λI)⁻¹ G_Nj and zeros elsewhere:
memory O(n_items × neighbors), and exact EASE again when N(j) is every other item. On a large
catalog the candidates are the `pool` most rated items (the only columns of G held densely);
a tail item is then explained by popular ones, never the reverse.

The columns alone do not bound a row: a popular item is among the neighbours of tens of
thousands of items, and a user's scores sum the rows of their rated items, so serving cost
follows the row lengths. `row_limit` keeps the largest |weights| of each row only (the
weights kept are not refitted), bounding a user's scores at rated × row_limit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

DEFAULT_NEIGHBORS = 300  # within 1% of the dense Recall@10 and NDCG@10 on ML-1M (docs/model.md)
DEFAULT_ROW_LIMIT = 1000  # see docs/model.md for the measured choice
DEFAULT_POOL = 8192  # most rated items whose Gram columns are held: 8192² float32 = 256 MiB
BLOCK = 256  # target items solved together
THREADS = 2  # blocks solved at once


def fit_sparse_ease(
    matrix: sp.spmatrix,
    l2: float,
    neighbors: int = DEFAULT_NEIGHBORS,
    *,
    row_limit: int = 0,
    pool: int = DEFAULT_POOL,
) -> sp.csr_matrix:
    """The weights of the binary (n_users, n_items) `matrix`: (n_items, n_items) float32 CSR,
    row = the rated item, column = the scored item, at most `neighbors` entries per column,
    at most `row_limit` per row (0: no limit) and none on the diagonal. A user's scores are
    x_u @ weights, as with dense EASE."""
    if l2 <= 0:
        raise ValueError("EASE needs a positive λ")
    if neighbors < 1:
        raise ValueError("give at least one neighbour per item")
    if row_limit < 0:
        raise ValueError(f"the row limit must be ≥ 0 (0: none), got {row_limit}")
    ratings = sp.csc_matrix(matrix, dtype=np.float32)
    n_items = ratings.shape[1]
    counts = np.asarray(ratings.sum(axis=0), dtype=np.float64).ravel()
    candidates = np.sort(np.argsort(-counts, kind="stable")[: min(pool, n_items)])
    at_candidate = np.full(n_items, -1, np.int64)
    at_candidate[candidates] = np.arange(len(candidates))
    by_candidates = ratings[:, candidates]
    gram = np.asarray((by_candidates.T @ by_candidates).todense(), dtype=np.float64)
    norms = np.sqrt(np.maximum(counts[candidates], 1.0))
    m = min(neighbors, len(candidates) - 1) if len(candidates) > 1 else 0
    if m == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)

    def solve(block: np.ndarray):
        """Column weights of the target items `block`: (block × m) rows, columns, values."""
        own = at_candidate[block]
        if (own >= 0).all():  # a candidate's co-occurrences are its column of the Gram matrix
            cooccurrence = gram[:, own]
        else:  # G[candidates, block], from the ratings
            cooccurrence = np.asarray((by_candidates.T @ ratings[:, block]).todense(), np.float64)
        cosine = cooccurrence / norms[:, None] / np.sqrt(np.maximum(counts[block], 1.0))[None, :]
        inside = own >= 0
        cosine[own[inside], np.flatnonzero(inside)] = -np.inf  # an item is not its own regressor
        # (block, m) candidate positions; sorted, so the gather below reads the Gram in order
        chosen = np.sort(np.argpartition(-cosine, m - 1, axis=0)[:m].T, axis=1)
        systems = gram[chosen[:, :, None], chosen[:, None, :]]  # (block, m, m)
        systems[:, np.arange(m), np.arange(m)] += l2
        rhs = np.take_along_axis(cooccurrence.T, chosen, axis=1)  # (block, m)
        weights = np.linalg.solve(systems, rhs[:, :, None])[:, :, 0]
        return candidates[chosen].ravel(), np.repeat(block, m), weights.astype(np.float32).ravel()

    # candidates and the other items in blocks of their own (a candidate needs no product);
    # the blocks are solved on THREADS threads of one BLAS thread each, which on this
    # machine's two cores is faster than one thread of a two-threaded BLAS
    others = np.flatnonzero(at_candidate < 0)
    blocks = [
        group[start : start + BLOCK]
        for group in (candidates, others)
        for start in range(0, len(group), BLOCK)
    ]
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(THREADS) as workers:
        rows, cols, values = (
            np.concatenate(part) for part in zip(*workers.map(solve, blocks), strict=True)
        )
    if row_limit:
        rows, cols, values = _largest_per_row(rows, cols, values, row_limit)
    return sp.csr_matrix((values, (rows, cols)), shape=(n_items, n_items), dtype=np.float32)


def _largest_per_row(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, limit: int):
    """The entries (rows, cols, values) of a matrix less all but the `limit` largest |values|
    of each row (ties: the lower column first)."""
    order = np.lexsort((cols, -np.abs(values), rows))  # by row, then |value| descending
    by_row = rows[order]
    rank = np.arange(len(order)) - np.searchsorted(by_row, by_row, side="left")
    kept = order[rank < limit]
    return rows[kept], cols[kept], values[kept]
