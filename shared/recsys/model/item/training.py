"""Training the item kind: I-AutoRec on the items' columns of the fit preferences, early
stopping on the validation RMSE of the network's own predictions, then the fold-in λ that
serving uses, chosen on the same validation ratings."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd

from recsys.features import preference_matrix
from recsys.model.item.keras_model import (
    ObservedEntryBatches,
    ObservedEntryTrainer,
    build_item_autoencoder,
    direct_predictions,
    item_codes,
)
from recsys.model.item.network import ItemAutoencoder
from recsys.model.training import (
    EpochLog,
    TrainedModel,
    ValidationSet,
    early_stopping,
    items_and_normalization,
    make_optimizer,
    preference_rmse,
    trained_model,
)

if TYPE_CHECKING:
    from recsys.model.config import TrainConfig

log = logging.getLogger(__name__)

FOLD_IN_L2S = (3.0, 10.0, 30.0, 60.0, 100.0, 170.0, 300.0, 1000.0)
# The fold-in λ is chosen on at most this many validation users (a seeded sample; all of
# them on ML-1M's 6,040): each λ folds every one of them in, (k + 1)-sized solves each.
FOLD_IN_USERS = 10_000


class ItemValidationRMSE(keras.callbacks.Callback):
    """Adds `val_rmse` to the epoch logs for the item kind: the network's own predictions
    (a user's output row applied to the item's code) of the validation pairs whose user is
    one of the training users (de-normalized, clipped). Cheap enough for every epoch; the
    fold-in that serving uses is scored once, after training (`choose_fold_in`)."""

    def __init__(
        self, autoencoder, columns, training_users, validation: ValidationSet, normalization, scale
    ):
        super().__init__()
        self.autoencoder = autoencoder
        self.columns = columns
        self.normalization = normalization
        self.scale = scale
        users = pd.Index(training_users).get_indexer(validation.inputs.user_ids[validation.rows])
        keep = users >= 0
        self.users = users[keep]
        self.items = validation.columns[keep]
        self.user_means = validation.inputs.user_means[validation.rows][keep]
        self.ratings = validation.ratings[keep]

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        codes = item_codes(self.autoencoder, self.columns)
        prefs = direct_predictions(self.autoencoder, codes, self.users, self.items)
        logs["val_rmse"] = preference_rmse(
            prefs, self.user_means, self.items, self.ratings, self.normalization, self.scale
        )


def choose_fold_in(codes: np.ndarray, validation: ValidationSet, normalization, scale, seed):
    """The fold-in λ with the lowest validation RMSE (users' fit ratings as input; at most
    FOLD_IN_USERS users, a sample drawn with `seed`) and the RMSE of each:
    (ItemAutoencoder, {λ: RMSE})."""
    validation = validation.sample_users(FOLD_IN_USERS, seed)
    scores = {}
    for l2 in FOLD_IN_L2S:
        scores[l2] = validation.rmse(ItemAutoencoder(codes, l2), normalization, scale)
        log.info("fold-in λ %g: validation RMSE %.4f", l2, scores[l2])
    best = min(scores, key=lambda l2: (scores[l2], l2))
    return ItemAutoencoder(codes, best), scores


def train_item_autoencoder(
    fit: pd.DataFrame,
    validation: pd.DataFrame | None,
    config: TrainConfig,
    *,
    rating_scale: tuple[float, float],
    progress: bool = False,
    refit: tuple[int, float] | None = None,
) -> TrainedModel:
    """I-AutoRec on the items' columns of the fit preferences. Needs validation ratings (the
    fold-in λ is chosen on them); its validation RMSE is the chosen fold-in's. `refit`
    (epochs, fold-in λ) trains exactly that many epochs and keeps that λ, reading no
    validation ratings."""
    if refit is None and (validation is None or not len(validation)):
        raise ValueError("the item autoencoder needs validation ratings to choose its fold-in λ")
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    index, normalization = items_and_normalization(fit, config)
    users = preference_matrix(fit, index, normalization)
    columns = users.matrix.T.tocsr()  # (n_items, n_users)
    log.info(
        "training the item autoencoder on %d items x %d users (%s), %d ratings",
        len(index),
        len(users.user_ids),
        config.item_selection.describe(),
        columns.nnz,
    )
    model = build_item_autoencoder(
        len(users.user_ids), config.encoding_size, activation=config.activation, l2=config.l2
    )
    trainer = ObservedEntryTrainer(model)
    # Not XLA-compiled: batches vary in length, as the user kind's do.
    trainer.compile(optimizer=make_optimizer(config), jit_compile=False)
    batches = ObservedEntryBatches(columns, config.batch_size, config.seed)
    if refit is not None:
        epochs, fold_in_l2 = refit
        history = trainer.fit(
            batches, epochs=epochs, callbacks=[EpochLog(epochs)], verbose=1 if progress else 0
        )
        folded = ItemAutoencoder(item_codes(model, columns), fold_in_l2)
        return trained_model(
            model,
            folded,
            history,
            None,
            index,
            normalization,
            config,
            rating_scale,
            started,
        )
    held_out = ValidationSet.build(fit, validation, index, normalization, rating_scale)
    callbacks = [
        ItemValidationRMSE(model, columns, users.user_ids, held_out, normalization, rating_scale),
        early_stopping(config, "val_rmse"),
        EpochLog(config.max_epochs),
    ]
    history = trainer.fit(
        batches, epochs=config.max_epochs, callbacks=callbacks, verbose=1 if progress else 0
    )
    folded, scores = choose_fold_in(
        item_codes(model, columns), held_out, normalization, rating_scale, config.seed
    )
    return trained_model(
        model,
        folded,
        history,
        "val_rmse",
        index,
        normalization,
        config,
        rating_scale,
        started,
        validation_rmse=scores[folded.fold_in_l2],
        metadata={
            "fold_in": {
                "l2": folded.fold_in_l2,
                "validation_rmse": scores[folded.fold_in_l2],
                "validation_users": min(FOLD_IN_USERS, len(held_out.inputs.user_ids)),
                "validation": [{"l2": l2, "rmse": rmse} for l2, rmse in scores.items()],
            }
        },
    )
