"""Training the user kind: batches of users' preference vectors with fresh random hiding
every epoch, the article's loss, and early stopping on the loss or on validation RMSE."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.features import Normalization, preference_matrix
from recsys.model.batches import ShuffledRowBatches
from recsys.model.training import (
    EpochLog,
    TrainedModel,
    ValidationSet,
    early_stopping,
    items_and_normalization,
    make_optimizer,
    trained_model,
)
from recsys.model.user.keras_model import build_for, network_of, packed_loss

if TYPE_CHECKING:
    from recsys.model.config import TrainConfig

log = logging.getLogger(__name__)


class HiddenPreferenceBatches(ShuffledRowBatches):
    """Batches of (hidden input, [target | hidden input]) built from a CSR matrix of user
    preferences. Each call hides a fresh random `hide_fraction` of every row's known entries,
    so every epoch draws new masks. Only `batch_size` rows are ever dense at once.

    With `rescale`, the model's input (not the packed copy the loss reads its masks from) is
    divided by 1 - hide_fraction, as inverted dropout does, so a full vector at serving time
    has the scale the model was trained on."""

    def __init__(
        self,
        matrix: sp.csr_matrix,
        batch_size: int,
        hide_fraction: float,
        seed: int,
        rescale: bool = False,
    ):
        super().__init__(matrix, batch_size, seed)
        self.input_scale = np.float32(1 / (1 - hide_fraction) if rescale else 1)
        self.hide_fraction = hide_fraction

    def __getitem__(self, index: int):
        target = self.matrix[self.rows(index)].toarray()
        hide = self.rng.random(target.shape, dtype=np.float32) < self.hide_fraction
        hidden_input = np.where(hide, np.float32(0), target)
        packed = np.concatenate([target, hidden_input], axis=1)
        if self.input_scale != 1:
            hidden_input *= self.input_scale
        return hidden_input, packed


class ValidationRMSE(keras.callbacks.Callback):
    """Adds `val_rmse` (de-normalized, clipped) to the epoch logs."""

    def __init__(self, validation: ValidationSet, normalization: Normalization, scale):
        super().__init__()
        self.validation = validation
        self.normalization = normalization
        self.scale = scale

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            network = network_of(self.model)
            logs["val_rmse"] = self.validation.rmse(network, self.normalization, self.scale)


def train_user_autoencoder(
    fit: pd.DataFrame,
    validation: pd.DataFrame | None,
    config: TrainConfig,
    *,
    rating_scale: tuple[float, float],
    progress: bool = False,
) -> TrainedModel:
    """Train on `fit`; `validation` (may be None with loss-based stopping) feeds val_rmse."""
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    index, normalization = items_and_normalization(fit, config)
    train_matrix = preference_matrix(fit, index, normalization).matrix
    log.info(
        "training on %d users x %d items (%s), %d ratings",
        train_matrix.shape[0],
        len(index),
        config.item_selection.describe(),
        train_matrix.nnz,
    )

    recommender = build_for(config, len(index))
    recommender.compile(
        optimizer=make_optimizer(config), loss=packed_loss(config.hidden_weight), jit_compile=True
    )
    batches = HiddenPreferenceBatches(
        train_matrix, config.batch_size, config.hide_fraction, config.seed, config.rescale_input
    )

    callbacks: list[keras.callbacks.Callback] = []
    if validation is not None and len(validation):
        held_out = ValidationSet.build(fit, validation, index, normalization, rating_scale)
        callbacks.append(ValidationRMSE(held_out, normalization, rating_scale))
    elif config.early_stopping == "validation":
        raise ValueError("early stopping on validation RMSE needs validation ratings")
    monitor = "val_rmse" if config.early_stopping == "validation" else "loss"
    callbacks.append(early_stopping(config, monitor))
    callbacks.append(EpochLog(config.max_epochs))
    history = recommender.fit(
        batches, epochs=config.max_epochs, callbacks=callbacks, verbose=1 if progress else 0
    )
    return trained_model(
        recommender,
        network_of(recommender),
        history,
        monitor,
        index,
        normalization,
        config,
        rating_scale,
        started,
    )
