"""What every model kind serves with: the `Network` protocol, a trained model as NumPy
matrices. Evaluation, explanations and the recommender depend on this protocol only, never on
a kind (recsys.model); each kind's network.py implements it."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Network(Protocol):
    """A trained model as NumPy matrices: what serving and offline evaluation call (Keras's
    `model.predict` costs milliseconds a call, the same products in NumPy microseconds).

    Preferences are (batch, n_items) dense or CSR rows of normalized ratings, 0 where a user
    rated nothing (a stored 0 in CSR is treated as no rating too)."""

    @property
    def n_items(self) -> int: ...

    @property
    def encoding_size(self) -> int:
        """The width of the code layer, k (GetModelInfo)."""
        ...

    @property
    def item_embeddings(self) -> np.ndarray:
        """(n_items, d): the vectors SimilarItems measures distances between."""
        ...

    def predict(self, preferences) -> np.ndarray:
        """(batch, n_items) preferences → (batch, n_items) float32 predicted preferences; a
        row's answer depends on that row alone, an empty batch gives (0, n_items)."""
        ...

    def predict_pairs(self, preferences, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Predicted preference of row `rows[j]` at column `columns[j]`: (n_pairs,) float32."""
        ...

    def check_explainable(self) -> None:
        """FailedPrecondition, saying why, when predictions are no sums over rated items."""
        ...

    def contributions(self, columns: np.ndarray, values: np.ndarray, target: int) -> np.ndarray:
        """What each input entry (preference `values[j]` at column `columns[j]`) adds to the
        predicted preference at column `target`: (n,) float64 adding up to predict(x)[target]
        to rounding. Only called once check_explainable has passed."""
        ...
