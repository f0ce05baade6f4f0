"""Fitting the "relevance" ranking that ships with a model version: EASE on the training
ratings plus the weight of the model's predicted preference, chosen on the validation part."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.data.split import Split
from recsys.ease import AUTO_NEIGHBORS, DEFAULT_L2, DEFAULT_ROW_LIMIT, Ease
from recsys.evaluation.report import ranking_qualities, relevant_items
from recsys.features import ItemIndex, Normalization, preference_matrix
from recsys.network import Network
from recsys.ranking import PREFERENCE_WEIGHTS, ItemItemRanking, relevance_blend


@dataclass(frozen=True)
class RankingFit:
    ranking: ItemItemRanking  # EASE on train (fit + validation) and the chosen weight
    validation: dict[float, tuple[float, float]]  # weight → (Recall@10, NDCG@10) on validation

    def to_dict(self) -> dict:
        return {
            "l2": self.ranking.l2,
            "neighbors": self.ranking.neighbors,
            "row_limit": self.ranking.row_limit,
            "preference_weight": self.ranking.preference_weight,
            "validation": [
                {"preference_weight": w, "recall_at_10": r, "ndcg_at_10": n}
                for w, (r, n) in self.validation.items()
            ],
        }


def fit_relevance_ranking(
    network: Network,
    index: ItemIndex,
    normalization: Normalization,
    split: Split,
    *,
    l2: float = DEFAULT_L2,
    neighbors: int = AUTO_NEIGHBORS,
    row_limit: int = DEFAULT_ROW_LIMIT,
    weights: tuple[float, ...] = PREFERENCE_WEIGHTS,
    easier: dict | None = None,
    serving: tuple[ItemIndex, Normalization] | None = None,
) -> RankingFit:
    """Choose the preference weight by NDCG@10 on the validation part (EASE fitted on the fit
    part, users' fit ratings as input), then refit EASE on train for serving. Test ratings
    are never read. `neighbors`, `row_limit`: dense EASE or its sparse form (recsys.ease.Ease.fit).
    `easier` caches EASE fits by (part, items, λ, neighbours, row limit) across calls (the
    sweep). `serving`: the items and normalization of the network that serves when it is
    not `network` (a refit on train), which the served EASE weights then cover."""
    cache = easier if easier is not None else {}

    def ease_on(part: str, ratings: pd.DataFrame, items: ItemIndex, norm) -> Ease:
        key = (part, items.item_ids.tobytes(), l2, neighbors, row_limit)
        if key not in cache:
            matrix = preference_matrix(ratings, items, norm).matrix
            cache[key] = Ease.fit(matrix, l2, neighbors, row_limit)
        return cache[key]

    held_out = split.validation[index.columns(split.validation["item_id"].to_numpy()) >= 0]
    relevant = relevant_items(held_out, index)
    inputs = preference_matrix(
        split.fit, index, normalization, user_ids=np.array(sorted(relevant), dtype=np.int64)
    )
    on_fit = ease_on("fit", split.fit, index, normalization)

    def blends(rated):
        predicted = network.predict(rated)  # once per chunk, for every weight
        item_scores = on_fit.scores(rated)
        for weight in weights:
            yield weight, relevance_blend(item_scores, predicted, weight)

    results = ranking_qualities(inputs, relevant, blends)
    best = max(results, key=lambda w: (results[w][1] or 0.0, -w))
    on_train = ease_on("train", split.train, *(serving or (index, normalization)))
    ranking = ItemItemRanking(on_train.weights, l2, best, on_train.neighbors, on_train.row_limit)
    return RankingFit(ranking, results)
