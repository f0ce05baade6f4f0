"""The blend kind's serving form: a weighted sum of other kinds' networks, all on the same
items and normalization. Weights add up to 1, so the blend of predicted preferences is the
blend of predicted ratings too (μ + b_i + b_u is the same for every part)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.errors import FailedPrecondition
from recsys.fold_in import fold_in_of
from recsys.network import Network


@dataclass(frozen=True)
class BlendNetwork:
    """parts: the component networks; weights: one per part, adding up to 1. At most one
    part folds users in (the item kind): its fold-in is the blend's, so the feature store
    keeps that part's code for each stored user. Item embeddings (SimilarItems) and the
    encoding size are the first part's."""

    parts: tuple[Network, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        if len(self.parts) < 2 or len(self.weights) != len(self.parts):
            raise ValueError("a blend has two or more parts and one weight for each")
        if not np.isfinite(self.weights).all() or abs(sum(self.weights) - 1.0) > 1e-6:
            raise ValueError(f"blend weights must be finite and add up to 1: {self.weights}")
        if len({part.n_items for part in self.parts}) != 1:
            raise ValueError("the parts of a blend must cover the same items")
        folding = [fold_in_of(part) for part in self.parts if fold_in_of(part) is not None]
        if len(folding) > 1:
            raise ValueError("at most one part of a blend may fold users in")
        object.__setattr__(self, "fold_in", folding[0] if folding else None)

    @property
    def n_items(self) -> int:
        return self.parts[0].n_items

    @property
    def encoding_size(self) -> int:
        return self.parts[0].encoding_size

    @property
    def item_embeddings(self) -> np.ndarray:
        return self.parts[0].item_embeddings

    def _sum(self, outputs) -> np.ndarray:
        total = None
        for weight, out in zip(self.weights, outputs, strict=True):
            term = np.float32(weight) * np.asarray(out, dtype=np.float32)
            total = term if total is None else total + term
        return total

    def predict(self, preferences) -> np.ndarray:
        return self._sum(part.predict(preferences) for part in self.parts)

    def predict_pairs(self, preferences, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        return self._sum(part.predict_pairs(preferences, rows, columns) for part in self.parts)

    def predict_coded(self, preferences, codes: np.ndarray) -> np.ndarray:
        """Rows whose users have a stored code (of the part that folds users in): that part
        predicts from the code, with no solve; the others from `preferences`."""
        return self._sum(
            part.predict_coded(preferences, codes)
            if fold_in_of(part) is not None
            else part.predict(preferences)
            for part in self.parts
        )

    def check_explainable(self) -> None:
        """Explainable when every part is: the blend's contributions are the weighted sums
        of the parts'."""
        for part in self.parts:
            try:
                part.check_explainable()
            except FailedPrecondition as exc:
                raise FailedPrecondition(f"a part of this blend is not: {exc}") from exc

    def contributions(self, columns: np.ndarray, values: np.ndarray, target: int) -> np.ndarray:
        parts = [part.contributions(columns, values, target) for part in self.parts]
        return np.sum(
            [w * np.asarray(c, np.float64) for w, c in zip(self.weights, parts, strict=True)], 0
        )


def blend_weights(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least-squares weights adding up to 1 of the parts' predictions (pairs, parts) of
    `targets` (pairs,): with the last weight 1 − Σ the others, the others solve an
    unconstrained least squares on the differences to the last part. (parts,) float64."""
    predictions = np.asarray(predictions, dtype=np.float64)
    last = predictions[:, -1]
    others, *_ = np.linalg.lstsq(
        predictions[:, :-1] - last[:, None], np.asarray(targets, np.float64) - last, rcond=None
    )
    return np.append(others, 1.0 - others.sum())
