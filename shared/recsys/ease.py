"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form
item-item linear autoencoder on who rated what, the ranking baseline the autoencoder's
Recommend lists are measured against.

    B = argmin ‖X − XB‖² + λ‖B‖²  subject to diag(B) = 0
      = I − P · diag(1 / diag(P)),  P = (XᵀX + λI)⁻¹

X is the binary (n_users, n_items) matrix of training ratings; a user's scores are x_u B.
Pure NumPy: one (n_items, n_items) inversion, a few seconds for ML-1M's 3,706 items. Above
DENSE_MAX_ITEMS items the weights are fitted sparse instead (recsys.sparse_ease: each item's
top-m neighbours), since the dense Gram and inverse would not fit in memory."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.sparse_ease import DEFAULT_NEIGHBORS, DEFAULT_ROW_LIMIT, fit_sparse_ease

AUTO_NEIGHBORS = -1  # dense weights up to DENSE_MAX_ITEMS items, DEFAULT_NEIGHBORS above
DENSE_MAX_ITEMS = 12_000  # a 12k² float64 Gram matrix and its inverse: 2.3 GB
DEFAULT_L2 = 1000.0  # best of 100, 300, 1000, 3000 on the validation part of ML-1M (docs/model.md)


def interactions(preferences: sp.csr_matrix) -> sp.csr_matrix:
    """The binary who-rated-what matrix of a CSR preference matrix (a stored entry is a
    rating, whatever its preference value, even 0)."""
    binary = preferences.copy().astype(np.float32)
    binary.data[:] = 1.0
    return binary


def fit_ease(matrix: sp.spmatrix, l2: float = DEFAULT_L2) -> np.ndarray:
    """The item-item weights B of the binary (n_users, n_items) `matrix`: (n_items, n_items)
    float32 with a zero diagonal."""
    if l2 <= 0:
        raise ValueError("EASE needs a positive λ")
    gram = np.asarray((matrix.T @ matrix).todense(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += l2
    precision = np.linalg.inv(gram)
    weights = precision / -np.diag(precision)[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)


def neighbors_for(n_items: int, neighbors: int = AUTO_NEIGHBORS) -> int:
    """The neighbours per item a fit keeps: 0 means dense weights (every other item)."""
    if neighbors == AUTO_NEIGHBORS:
        return 0 if n_items <= DENSE_MAX_ITEMS else DEFAULT_NEIGHBORS
    if neighbors < 0:
        raise ValueError(f"neighbours must be ≥ 0 or {AUTO_NEIGHBORS} (auto), got {neighbors}")
    return 0 if neighbors >= n_items - 1 else neighbors


class Ease:
    """Fitted EASE weights — dense (n_items, n_items) float32, or float32 CSR with
    `neighbors` entries per column and at most `row_limit` per row (0: none) — and `scores`
    ranking items for users given as rows of who-rated-what."""

    def __init__(
        self,
        weights: np.ndarray | sp.csr_matrix,
        l2: float,
        neighbors: int = 0,
        row_limit: int = 0,
    ):
        self.weights = weights
        self.l2 = l2
        self.neighbors = neighbors
        self.row_limit = row_limit

    @classmethod
    def fit(
        cls,
        rated: sp.spmatrix,
        l2: float = DEFAULT_L2,
        neighbors: int = AUTO_NEIGHBORS,
        row_limit: int = DEFAULT_ROW_LIMIT,
    ) -> Ease:
        """EASE of the users' rows of `rated`; only which entries are stored counts (a
        preference matrix is made binary first). `neighbors`: see neighbors_for;
        `row_limit` bounds the rows of sparse weights only (dense weights keep every row)."""
        binary = interactions(sp.csr_matrix(rated))
        kept = neighbors_for(binary.shape[1], neighbors)
        if kept:
            weights = fit_sparse_ease(binary, l2, kept, row_limit=row_limit)
            return cls(weights, l2, kept, row_limit)
        return cls(fit_ease(binary, l2), l2)

    def scores(self, rated: sp.spmatrix) -> np.ndarray:
        """(batch, n_items) binary or preference rows (only which entries are stored counts)
        → (batch, n_items) float32 scores."""
        product = interactions(sp.csr_matrix(rated)) @ self.weights
        if sp.issparse(product):
            product = product.toarray()
        return np.asarray(product, dtype=np.float32)
