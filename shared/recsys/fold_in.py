"""Folding a user in on item codes: the ridge regression that turns a user's preferences into
their code w (k + 1 numbers), and the product that turns a code into predictions. The item
kind predicts this way (recsys.model.item.network); the feature service stores each user's
code with their preference vector, so the model service can serve a stored user with the
product alone (docs/architecture.md, "Stored user codes"). NumPy only.

    w = argmin_w Σ_{j∈R} (p_j − h̃_j·w)² + λ‖w‖²,   h̃ = [h, 1],   predictions h̃ w."""

from __future__ import annotations

from functools import cached_property

import numpy as np


class FoldIn:
    """item_codes: (n_items, k) float32 codes h in column order; l2: λ > 0."""

    def __init__(self, item_codes: np.ndarray, l2: float):
        codes = np.asarray(item_codes)
        if codes.ndim != 2 or not np.isfinite(codes).all():
            raise ValueError("item codes must be a finite (n_items, k) matrix")
        if not l2 > 0:
            raise ValueError("the fold-in λ must be positive")
        self.item_codes = codes
        self.l2 = float(l2)
        codes64 = codes.astype(np.float64)
        # h̃, (n_items, k + 1) float64: the solve amplifies rounding (float32 h̃ moved
        # predictions by up to 3e-4 stars at λ = 3)
        self.features = np.hstack([codes64, np.ones((len(codes64), 1))])

    @cached_property
    def _features32(self) -> np.ndarray:
        """h̃ in float32 for the serving product, made on first use: the feature service,
        which only folds users in, never holds it."""
        return self.features.astype(np.float32)

    @property
    def n_items(self) -> int:
        return self.features.shape[0]

    @property
    def code_size(self) -> int:
        """k + 1: numbers per user code."""
        return self.features.shape[1]

    def solve_dual(self, features: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(A Aᵀ + λI)⁻¹ target for A = `features` (|R|, k + 1), so that a user's code is
        w = Aᵀ (A Aᵀ + λI)⁻¹ p. Solved as it stands when |R| ≤ k + 1; otherwise through the
        (k + 1)-sized system of the Woodbury identity, (target − A (AᵀA + λI)⁻¹ Aᵀ target) / λ,
        so no system is ever larger than k + 1."""
        n, width = features.shape
        if n <= width:
            gram = features @ features.T
            gram[np.diag_indices_from(gram)] += self.l2
            return np.linalg.solve(gram, target)
        gram = features.T @ features
        gram[np.diag_indices_from(gram)] += self.l2
        inner = np.linalg.solve(gram, features.T @ target)
        return (target - features @ inner) / self.l2

    def code(self, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The code w of one user who rated `columns` (n,) with preferences `values` (n,):
        (k + 1,) float64; zeros for no ratings. Entries whose preference is 0 count as no
        rating (a dense vector cannot tell them apart)."""
        values = np.asarray(values, dtype=np.float64)
        rated = values != 0
        if not rated.any():
            return np.zeros(self.code_size)
        features = self.features[np.asarray(columns)[rated]]
        return features.T @ self.solve_dual(features, values[rated])

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        """(batch, k + 1) codes → (batch, n_items) float32 predicted preferences h̃ w: one
        float32 product (the stored code is float32 already)."""
        codes = np.asarray(codes, dtype=np.float32).reshape(-1, self.code_size)
        return codes @ self._features32.T

    def check_code(self, code: np.ndarray) -> str | None:
        """What is wrong with a code sent for this model (None: nothing)."""
        if len(code) != self.code_size:
            return f"a user code has {len(code)} numbers, this model's have {self.code_size}"
        if not np.isfinite(code).all():
            return "a user code must be finite"
        return None


def fold_in_of(network) -> FoldIn | None:
    """The fold-in a network predicts with (the item kind's, or a blend's with an item-kind
    part), else None. A network that has one also has predict_coded(preferences, codes)."""
    return getattr(network, "fold_in", None)
