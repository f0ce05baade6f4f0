"""The evaluation split (docs/model.md): one seeded permutation of the ratings in file order,
test taken from its end, validation (for early stopping) from the end of what remains."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    """fit: what the model trains on; validation: held out of training for early stopping;
    test: held out of everything. train = fit + validation, the ratings a user "has"."""

    fit: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    @property
    def train(self) -> pd.DataFrame:
        return pd.concat([self.fit, self.validation], ignore_index=True)


def split_ratings(
    ratings: pd.DataFrame,
    *,
    seed: int = 0,
    test_fraction: float = 0.1,
    validation_fraction: float = 0.1,
) -> Split:
    """Permute with `numpy.random.default_rng(seed)`; the first (1 - test_fraction) is train,
    the rest test; the last `validation_fraction` of train is the validation part."""
    if not 0 <= test_fraction < 1 or not 0 <= validation_fraction < 1:
        raise ValueError("test_fraction and validation_fraction must be in [0, 1)")
    order = np.random.default_rng(seed).permutation(len(ratings))
    n_train = int(round(len(ratings) * (1 - test_fraction)))
    n_fit = int(round(n_train * (1 - validation_fraction)))
    take = ratings.iloc
    return Split(
        fit=take[order[:n_fit]].reset_index(drop=True),
        validation=take[order[n_fit:n_train]].reset_index(drop=True),
        test=take[order[n_train:]].reset_index(drop=True),
    )


def sample_positions(count: int, limit: int, seed: int) -> np.ndarray:
    """Positions 0 … count − 1, all of them when count ≤ limit, else `limit` of them drawn
    without replacement with `seed`; ascending, (≤ limit,) int64."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))
