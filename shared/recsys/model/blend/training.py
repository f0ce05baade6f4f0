"""Training the blend kind: each part (a preset) trained on the fit part as it would be alone,
then the weights fitted on the validation ratings, which no part trained on."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.errors import InvalidArgument
from recsys.model.blend.network import BlendNetwork, blend_weights
from recsys.model.training import TrainedModel, ValidationSet

if TYPE_CHECKING:
    from recsys.model.config import TrainConfig
    from recsys.model.kind import ModelKind

log = logging.getLogger(__name__)


def same_items(parts: list[TrainedModel]) -> None:
    """InvalidArgument (field "components") unless every part has the first's items and
    normalization: the blend adds their predicted preferences column by column."""
    first = parts[0]
    for part in parts[1:]:
        if not (
            np.array_equal(part.index.item_ids, first.index.item_ids)
            and part.normalization.global_mean == first.normalization.global_mean
            and np.array_equal(part.normalization.item_means, first.normalization.item_means)
        ):
            raise InvalidArgument(
                "the parts of a blend must keep the same items (top_n, min_ratings)",
                field="components",
            )


def blended(parts: list[TrainedModel], weights, config, started, metadata) -> TrainedModel:
    """The blend's TrainedModel: `model` holds the parts' TrainedModels (what save writes)."""
    network = BlendNetwork(tuple(p.network for p in parts), tuple(float(w) for w in weights))
    first = parts[0]
    return TrainedModel(
        model=tuple(parts),
        network=network,
        index=first.index,
        normalization=first.normalization,
        config=config,
        rating_scale=first.rating_scale,
        seconds=time.perf_counter() - started,
        metadata=metadata,
    )


def train_blend(
    fit: pd.DataFrame,
    validation: pd.DataFrame | None,
    config: TrainConfig,
    parts_to_train: list[tuple[str, ModelKind, TrainConfig]],
    *,
    rating_scale: tuple[float, float],
    progress: bool = False,
) -> TrainedModel:
    """Train each part — (preset name, its kind, its configuration with refit off: the
    blend's refit applies to all of them) — on `fit`, then the weights, adding up to 1, that
    minimize the squared error of the blended preferences on the `validation` ratings."""
    if validation is None or not len(validation):
        raise ValueError("a blend needs validation ratings to fit its weights")
    started = time.perf_counter()
    parts = []
    for name, kind, part_config in parts_to_train:
        log.info("blend: training part %s (%s kind)", name, part_config.kind)
        parts.append(
            kind.train(fit, validation, part_config, rating_scale=rating_scale, progress=progress)
        )
    same_items(parts)
    first = parts[0]
    held_out = ValidationSet.build(fit, validation, first.index, first.normalization, rating_scale)
    inputs, rows, columns = held_out.inputs, held_out.rows, held_out.columns
    predictions = np.column_stack(
        [part.network.predict_pairs(inputs.matrix, rows, columns) for part in parts]
    )
    targets = (
        held_out.ratings
        - first.normalization.global_mean
        - first.normalization.item_means[columns]
        - inputs.user_means[rows]
    )
    weights = blend_weights(predictions, targets)
    trained = blended(parts, weights, config, started, {})
    validation_rmse = held_out.rmse(trained.network, first.normalization, rating_scale)
    log.info("blend weights %s: validation RMSE %.4f", np.round(weights, 4), validation_rmse)
    trained.validation_rmse = validation_rmse
    trained.metadata = {
        "blend": {
            "validation_rmse": validation_rmse,
            "validation_pairs": len(targets),
            "parts": [
                {
                    "preset": name,
                    "kind": part.config.kind,
                    "weight": float(weight),
                    "best_epoch": part.best_epoch,
                    "validation_rmse": part.validation_rmse,
                    "seconds": round(part.seconds, 2),
                    **part.metadata,
                }
                for name, part, weight in zip(config.components, parts, weights, strict=True)
            ],
        }
    }
    return trained


def refit_blend(
    train: pd.DataFrame,
    chosen: TrainedModel,
    kinds: list[ModelKind],
    *,
    rating_scale: tuple[float, float],
    progress: bool = False,
) -> TrainedModel:
    """Each part refit on all of `train` as its kind (`kinds`, in the parts' order) refits;
    the weights stay those fitted on validation."""
    started = time.perf_counter()
    parts = [
        kind.refit(train, part, rating_scale=rating_scale, progress=progress)
        for kind, part in zip(kinds, chosen.model, strict=True)
    ]
    same_items(parts)
    return blended(parts, chosen.network.weights, chosen.config, started, {})
