"""What training shares across model kinds: the validation pairs and their RMSE, the
optimizer, early stopping, the epoch log, and the TrainedModel every kind's train returns.
`recsys.model.registry.train_autoencoder` trains the kind a configuration names."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pandas as pd

from recsys.data.split import sample_positions
from recsys.evaluation.metrics import rmse
from recsys.features import ItemIndex, Normalization, PreferenceMatrix, preference_matrix
from recsys.model.fused_adam import FusedAdam
from recsys.network import Network

if TYPE_CHECKING:
    from recsys.model.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class ValidationSet:
    """Held-out pairs scored from the users' other (fit) ratings."""

    inputs: PreferenceMatrix  # the fit preferences of the validation users
    rows: np.ndarray  # row in `inputs` of each held-out pair
    columns: np.ndarray  # item column of each held-out pair
    ratings: np.ndarray  # the held-out ratings, float64

    @classmethod
    def build(cls, fit, held_out, index, normalization, rating_scale) -> ValidationSet:
        columns = index.columns(held_out["item_id"].to_numpy())
        held_out = held_out[columns >= 0]
        users = np.unique(held_out["user_id"].to_numpy())
        inputs = preference_matrix(fit, index, normalization, user_ids=users)
        rows = pd.Index(inputs.user_ids).get_indexer(held_out["user_id"].to_numpy())
        return cls(
            inputs,
            rows,
            index.columns(held_out["item_id"].to_numpy()),
            held_out["rating"].to_numpy(np.float64),
        )

    def sample_users(self, n_users: int, seed: int) -> ValidationSet:
        """The pairs of at most `n_users` of the users (a sample drawn with `seed`, in their
        order here); itself when there are no more."""
        count = len(self.inputs.user_ids)
        chosen = sample_positions(count, n_users, seed)
        if len(chosen) == count:
            return self
        renumber = np.full(count, -1)
        renumber[chosen] = np.arange(len(chosen))
        keep = renumber[self.rows] >= 0
        inputs = PreferenceMatrix(
            user_ids=self.inputs.user_ids[chosen],
            matrix=self.inputs.matrix[chosen],
            user_means=self.inputs.user_means[chosen],
        )
        return ValidationSet(
            inputs, renumber[self.rows[keep]], self.columns[keep], self.ratings[keep]
        )

    def rmse(self, network: Network, normalization: Normalization, scale) -> float:
        prefs = network.predict_pairs(self.inputs.matrix, self.rows, self.columns)
        return preference_rmse(
            prefs,
            self.inputs.user_means[self.rows],
            self.columns,
            self.ratings,
            normalization,
            scale,
        )


def preference_rmse(prefs, user_means, columns, ratings, normalization, scale) -> float:
    """RMSE against `ratings` of predicted preferences `prefs` at item `columns`, as ratings:
    de-normalized with each pair's user mean, clipped to the rating `scale`."""
    predicted = normalization.denormalize(prefs.astype(np.float64), user_means, columns)
    return rmse(np.clip(predicted, *scale), ratings)


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch: loss, validation RMSE, seconds."""

    def __init__(self, max_epochs: int):
        super().__init__()
        self.max_epochs = max_epochs
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        log.info(
            "epoch %d/%d loss %.4f val_rmse %s (%.1fs)",
            epoch + 1,
            self.max_epochs,
            logs.get("loss", float("nan")),
            f"{logs['val_rmse']:.4f}" if "val_rmse" in logs else "-",
            time.perf_counter() - self.started,
        )


@dataclass
class TrainedModel:
    """What a kind's train returns: the trained Keras network (what its save keeps), its
    serving form, and what the run recorded."""

    model: keras.Model
    network: Network
    index: ItemIndex
    normalization: Normalization
    config: TrainConfig
    rating_scale: tuple[float, float]
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    seconds: float = 0.0
    validation_rmse: float | None = None  # of `network` on the validation ratings, if any
    metadata: dict[str, Any] = field(default_factory=dict)  # the kind's own metadata.json entries


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """The configured optimizer; Adam as FusedAdam (the same update, one pass per weight)."""
    if config.optimizer == "adadelta":
        # Keras 2's Adadelta defaults as the article used them: lr 1.0, rho 0.95, eps 1e-7.
        return keras.optimizers.Adadelta(learning_rate=config.learning_rate, rho=0.95)
    if config.optimizer == "adam":
        return FusedAdam(learning_rate=config.learning_rate)
    return keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=0.9)


def items_and_normalization(fit: pd.DataFrame, config: TrainConfig):
    """The items `config` keeps of the training ratings (ItemIndex) and μ, b_i fitted on
    their ratings (Normalization)."""
    index = ItemIndex(config.item_selection.select(fit))
    kept = fit[np.isin(fit["item_id"].to_numpy(), index.item_ids)]
    normalization = Normalization.fit(
        index.columns(kept["item_id"].to_numpy()), kept["rating"].to_numpy(), len(index)
    )
    return index, normalization


def early_stopping(config: TrainConfig, monitor: str) -> keras.callbacks.EarlyStopping:
    """Stop when `monitor` has not improved by min_delta for `patience` epochs; keep the
    best epoch's weights."""
    return keras.callbacks.EarlyStopping(
        monitor=monitor,
        min_delta=config.min_delta,
        patience=config.patience,
        mode="min",
        restore_best_weights=True,
    )


def trained_model(
    model: keras.Model,
    network: Network,
    history: keras.callbacks.History,
    monitor: str | None,
    index: ItemIndex,
    normalization: Normalization,
    config: TrainConfig,
    rating_scale: tuple[float, float],
    started: float,
    *,
    validation_rmse: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> TrainedModel:
    """The TrainedModel of a finished fit: its per-epoch history as floats, the best epoch
    by `monitor` (1-based; None: the last, for a refit of fixed length) and the seconds since
    `started` (time.perf_counter()). Without a `validation_rmse` of its own, the lowest
    per-epoch val_rmse (the restored epoch's)."""
    floats = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    if validation_rmse is None and floats.get("val_rmse"):
        validation_rmse = min(floats["val_rmse"])
    return TrainedModel(
        model=model,
        network=network,
        index=index,
        normalization=normalization,
        config=config,
        rating_scale=rating_scale,
        history=floats,
        best_epoch=(
            int(np.argmin(history.history[monitor])) + 1
            if monitor is not None
            else len(history.history["loss"])
        ),
        seconds=time.perf_counter() - started,
        validation_rmse=validation_rmse,
        metadata=metadata or {},
    )
