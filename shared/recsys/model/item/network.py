"""The item kind's serving form in NumPy: the item codes of I-AutoRec, with each user folded
in at request time by ridge regression on the codes of the items they rated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.fold_in import FoldIn

GRAM_MAX_ITEMS = 12_000  # the item kind keeps an item Gram matrix up to this many items


@dataclass(frozen=True)
class ItemAutoencoder:
    """The item-based autoencoder (I-AutoRec, Sedhain et al. 2015) in its serving form.

    Trained on the items' columns of the preference matrix, its code layer gives each item a
    code h_i (k numbers). A user is folded in at request time, whether they were in training
    or not: ridge regression of their preferences on the codes of the items they rated,

        w = argmin_w Σ_{j∈R} (p_j − h̃_j·w)² + λ‖w‖²,   h̃ = [h, 1],

    and predictions are h̃_i·w for every item. For a fixed set of rated items that is linear
    in the preferences, so a prediction is an exact sum over the rated items (explanations).
    The rated set R is a row's non-zero entries, dense or CSR alike (a dense vector cannot
    tell a rating whose preference is exactly 0 from no rating, so neither form counts one).

    item_codes: (n_items, k) float32; fold_in_l2: λ, chosen on the validation ratings."""

    item_codes: np.ndarray
    fold_in_l2: float

    def __post_init__(self):
        # the ridge regression and the product with the codes (ValueError for bad codes)
        fold_in = FoldIn(self.item_codes, self.fold_in_l2)
        object.__setattr__(self, "fold_in", fold_in)
        features = fold_in.features  # h̃, (n_items, k + 1) float64
        object.__setattr__(self, "_features", features)
        # h̃_i · h̃_j for every pair, (n_items, n_items) float64 (109 MB for 3,687 items),
        # made once: a user with at most k + 1 ratings is then folded in and predicted
        # without a product with the codes. Float64 because the fold-in solve amplifies the
        # rounding of its entries (float32 moved predictions by up to 3e-4 at λ = 3).
        # Without it (catalogs above GRAM_MAX_ITEMS) the same values come from the codes.
        gram = features @ features.T if len(features) <= GRAM_MAX_ITEMS else None
        object.__setattr__(self, "_gram", gram)

    @property
    def n_items(self) -> int:
        return self.item_codes.shape[0]

    @property
    def encoding_size(self) -> int:
        return self.item_codes.shape[1]

    def _rows(self, preferences):
        """(rated columns, their preferences float64) of each row: its non-zero entries."""
        if sp.issparse(preferences):
            matrix = sp.csr_matrix(preferences)
            for row in range(matrix.shape[0]):
                start, end = matrix.indptr[row], matrix.indptr[row + 1]
                values = np.asarray(matrix.data[start:end], dtype=np.float64)
                rated = values != 0
                yield matrix.indices[start:end][rated], values[rated]
        else:
            for row in np.atleast_2d(np.asarray(preferences)):
                columns = np.flatnonzero(row)
                yield columns, row[columns].astype(np.float64)

    def encode(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, k + 1) user weights w."""
        weights = []
        for columns, values in self._rows(preferences):
            if len(columns) == 0:
                weights.append(np.zeros(self._features.shape[1]))
                continue
            rated = self._features[columns]
            weights.append(rated.T @ self.fold_in.solve_dual(rated, values))
        return np.array(weights, dtype=np.float64).reshape(-1, self._features.shape[1])

    def predict(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, n_items) float32 predictions."""
        rows = [self._predict_row(columns, values) for columns, values in self._rows(preferences)]
        return np.array(rows, dtype=np.float32).reshape(-1, self.n_items)

    def _predict_row(self, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        """h̃_i · w for every item i: K[:, R] (K_RR + λI)⁻¹ p with K the item Gram matrix
        when |R| ≤ k + 1 (no product with the codes at all), else h̃ (Aᵀ S)."""
        if len(columns) == 0:
            return np.zeros(self.n_items)
        if len(columns) > self._features.shape[1] or self._gram is None:
            rated = self._features[columns]
            return self._features @ (rated.T @ self.fold_in.solve_dual(rated, values))
        rated_rows = self._gram[columns]  # K is symmetric: rows gather fast, columns do not
        gram = rated_rows[:, columns]
        gram[np.diag_indices_from(gram)] += self.fold_in_l2
        return np.linalg.solve(gram, values) @ rated_rows

    def predict_coded(self, preferences, codes: np.ndarray) -> np.ndarray:
        """Rows of users whose code is stored (recsys.fold_in): the product with the item
        codes alone, no solve; `preferences` are not needed."""
        return self.fold_in.predict_codes(codes)

    def predict_pairs(self, preferences, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Predicted preference of row `rows[j]` at column `columns[j]`: h̃_column · w_row for
        the pairs only, each user folded in once, never a full (batch, n_items) row (choosing
        the fold-in λ scores every validation pair, 2.25 million at 25M's shape). Equal to
        predict()[rows, columns] to rounding. (n_pairs,) float32."""
        weights = self.encode(preferences)
        values = np.empty(len(rows), np.float64)
        for start in range(0, len(rows), 1 << 16):
            chunk = slice(start, start + (1 << 16))
            values[chunk] = np.einsum(
                "pk,pk->p", weights[rows[chunk]], self._features[columns[chunk]]
            )
        return values.astype(np.float32)

    @property
    def item_embeddings(self) -> np.ndarray:
        """(n_items, k): item j's embedding is its code."""
        return self.item_codes

    def check_explainable(self) -> None:
        """Always explainable: for a fixed set of rated items the fold-in is linear."""

    def contributions(self, columns: np.ndarray, values: np.ndarray, target: int) -> np.ndarray:
        """What each rated item adds to the predicted preference at column `target`:
        values[j] · [(A Aᵀ + λI)⁻¹ A h̃_target]_j with A the rated items' h̃; (n,) float64,
        adding up to predict(x)[target] (to rounding). An entry whose preference is 0 is no
        rating (as in predict) and contributes 0."""
        values = np.asarray(values, dtype=np.float64)
        parts = np.zeros(len(values))
        rated = values != 0
        if rated.any():
            features = self._features[np.asarray(columns)[rated]]
            weights = self.fold_in.solve_dual(features, features @ self._features[target])
            parts[rated] = values[rated] * weights
        return parts
