"""Explanations: a predicted preference as the sum of what each of the user's rated items
contributes to it, for networks whose predictions are such sums (recsys.model.kind.Network
.check_explainable says which)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.errors import InvalidArgument, NotFound
from recsys.features import ItemIndex
from recsys.network import Network


@dataclass(frozen=True)
class Contribution:
    item_id: int
    preference: float  # the user's preference for the rated item (the input), stars
    contribution: float  # what it adds to the explained item's predicted preference, stars


@dataclass(frozen=True)
class Explanation:
    """predicted rating = μ + b_i + b_u + Σ contributions (listed + other)."""

    item_id: int
    predicted_rating: float
    global_mean: float
    item_mean: float
    user_mean: float
    predicted_preference: float
    contributions: list[Contribution]  # largest |contribution| first, at most the limit
    other_contribution: float  # sum of the ones not listed
    other_count: int


def explain_preferences(
    network: Network,
    index: ItemIndex,
    columns: np.ndarray,
    values: np.ndarray,
    item_id: int,
    limit: int,
) -> tuple[float, list[Contribution], float, int]:
    """(predicted preference, top `limit` contributions by |value|, sum of the others, how
    many others) of `item_id` for the input preferences `values` at `columns`.
    FailedPrecondition for a network whose predictions are no sums over rated items."""
    network.check_explainable()
    if item_id not in index:
        raise NotFound(f"movie {item_id} is not in the model")
    if limit <= 0:
        raise InvalidArgument("the number of contributions must be positive", field="limit")
    parts = network.contributions(columns, values, index.column(item_id))
    order = np.lexsort((columns, -np.abs(parts)))  # largest |contribution|, then by column
    shown, rest = order[:limit], order[limit:]
    listed = [
        Contribution(int(index.item_ids[columns[j]]), float(values[j]), float(parts[j]))
        for j in shown
    ]
    return float(parts.sum()), listed, float(parts[rest].sum()), len(rest)
