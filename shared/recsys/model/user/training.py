"""Training the user kind: batches of users' known preferences with fresh random hiding
every epoch, the article's loss at those entries, and early stopping on the loss or on
validation RMSE. Memory and time per epoch grow with the ratings, not users × items."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import keras
import pandas as pd

from recsys.features import Normalization, preference_matrix
from recsys.model.training import (
    EpochLog,
    TrainedModel,
    ValidationSet,
    early_stopping,
    items_and_normalization,
    make_optimizer,
    trained_model,
)
from recsys.model.user.keras_model import build_for, network_of
from recsys.model.user.known_entries import KnownEntryBatches
from recsys.model.user.known_entry_model import KnownEntryTrainer

if TYPE_CHECKING:
    from recsys.model.config import TrainConfig

log = logging.getLogger(__name__)


class ValidationRMSE(keras.callbacks.Callback):
    """Adds `val_rmse` (de-normalized, clipped) of `recommender` to the epoch logs."""

    def __init__(
        self,
        recommender: keras.Model,
        validation: ValidationSet,
        normalization: Normalization,
        scale,
    ):
        super().__init__()
        self.recommender = recommender
        self.validation = validation
        self.normalization = normalization
        self.scale = scale

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            network = network_of(self.recommender)
            logs["val_rmse"] = self.validation.rmse(network, self.normalization, self.scale)


def train_user_autoencoder(
    fit: pd.DataFrame,
    validation: pd.DataFrame | None,
    config: TrainConfig,
    *,
    rating_scale: tuple[float, float],
    progress: bool = False,
    epochs: int | None = None,
) -> TrainedModel:
    """Train on `fit`; `validation` (may be None with loss-based stopping) feeds val_rmse.
    With `epochs` (a refit): exactly that many epochs, no validation, no early stopping."""
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
    trainer = KnownEntryTrainer(recommender, config.hidden_weight)
    # Not XLA-compiled: batches vary in length (XLA would compile a program per length), and
    # the step's gathers, scatters and passes over the whole kernels ran faster as
    # TensorFlow's own multi-threaded kernels than as XLA's CPU code.
    trainer.compile(optimizer=make_optimizer(config), jit_compile=False)
    batches = KnownEntryBatches(
        train_matrix, config.batch_size, config.hide_fraction, config.seed, config.rescale_input
    )

    callbacks: list[keras.callbacks.Callback] = []
    monitor: str | None = None
    if epochs is None:
        if validation is not None and len(validation):
            held_out = ValidationSet.build(fit, validation, index, normalization, rating_scale)
            callbacks.append(ValidationRMSE(recommender, held_out, normalization, rating_scale))
        elif config.early_stopping == "validation":
            raise ValueError("early stopping on validation RMSE needs validation ratings")
        monitor = "val_rmse" if config.early_stopping == "validation" else "loss"
        callbacks.append(early_stopping(config, monitor))
    n_epochs = config.max_epochs if epochs is None else epochs
    callbacks.append(EpochLog(n_epochs))
    history = trainer.fit(
        batches, epochs=n_epochs, callbacks=callbacks, verbose=1 if progress else 0
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
