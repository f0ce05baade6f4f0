"""Training the autoencoder: batches built from a sparse matrix with fresh random hiding every
epoch, the article's loss, and early stopping on the loss or on validation RMSE."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.evaluation.metrics import rmse
from recsys.features import ItemIndex, Normalization, PreferenceMatrix, preference_matrix
from recsys.model.autoencoder import build_autoencoder, decoder_of, encoder_of, packed_loss
from recsys.model.batches import ShuffledRowBatches
from recsys.model.config import TrainConfig
from recsys.model.item_autoencoder import (
    ItemColumnBatches,
    build_item_autoencoder,
    direct_predictions,
    item_codes,
    observed_sse,
)
from recsys.scoring import (
    DeepAutoencoder,
    DenseLayer,
    ItemAutoencoder,
    LinearAutoencoder,
    Network,
)

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


def network_of(recommender: keras.Model) -> Network:
    """The trained layers as NumPy: a LinearAutoencoder for the article's network (one
    linear layer without bias on each side), else a DeepAutoencoder of every Dense layer."""

    def dense_layers(model: keras.Model) -> tuple[DenseLayer, ...]:
        return tuple(
            DenseLayer(
                _numpy(layer.kernel),
                _numpy(layer.bias) if layer.use_bias else None,
                layer.activation.__name__,
            )
            for layer in model.layers
            if isinstance(layer, keras.layers.Dense)
        )

    encoder = dense_layers(encoder_of(recommender))
    decoder = dense_layers(decoder_of(recommender))
    article_shaped = len(encoder) == 1 and len(decoder) == 1
    if article_shaped and all(
        layer.bias is None and layer.activation == "linear" for layer in encoder + decoder
    ):
        return LinearAutoencoder(encoder[0].kernel, decoder[0].kernel)
    return DeepAutoencoder(encoder, decoder)


def _numpy(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)


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


class ItemValidationRMSE(keras.callbacks.Callback):
    """Adds `val_rmse` to the epoch logs for the item kind: the network's own predictions
    (a user's output row applied to the item's code) of the validation pairs whose user is
    one of the training users (de-normalized, clipped). Cheap enough for every epoch; the
    fold-in that serving uses is scored once, after training (`choose_fold_in`)."""

    def __init__(self, columns, training_users, validation: ValidationSet, normalization, scale):
        super().__init__()
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
        codes = item_codes(self.model, self.columns)
        prefs = direct_predictions(self.model, codes, self.users, self.items)
        logs["val_rmse"] = preference_rmse(
            prefs, self.user_means, self.items, self.ratings, self.normalization, self.scale
        )


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
    recommender: keras.Model
    index: ItemIndex
    normalization: Normalization
    config: TrainConfig
    rating_scale: tuple[float, float]
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    seconds: float = 0.0
    # the item kind's serving form, and the validation RMSE of each fold-in λ tried
    folded: ItemAutoencoder | None = None
    fold_in: dict[str, object] = field(default_factory=dict)

    @property
    def network(self) -> Network:
        return self.folded if self.folded is not None else network_of(self.recommender)

    def serving_model(self) -> keras.Model:
        """An uncompiled copy with the trained weights: what an artifact stores (no loss,
        no optimizer state, so loading needs no custom objects)."""
        if self.config.kind == "item":
            copy = build_item_autoencoder(
                self.recommender.input_shape[-1],
                self.config.encoding_size,
                activation=self.config.activation,
                l2=self.config.l2,
            )
        else:
            copy = build_for(self.config, len(self.index))
        copy.set_weights(self.recommender.get_weights())
        return copy


def build_for(config: TrainConfig, n_items: int) -> keras.Model:
    """The network a configuration describes, untrained."""
    return build_autoencoder(
        n_items,
        config.encoding_size,
        l2=config.l2,
        hidden_layers=config.hidden_layers,
        activation=config.activation,
        input_dropout=config.input_dropout,
    )


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    if config.optimizer == "adadelta":
        # Keras 2's Adadelta defaults as the article used them: lr 1.0, rho 0.95, eps 1e-7.
        return keras.optimizers.Adadelta(learning_rate=config.learning_rate, rho=0.95)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=config.learning_rate)
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


def train_autoencoder(
    fit: pd.DataFrame,
    validation: pd.DataFrame | None,
    config: TrainConfig,
    *,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    progress: bool = False,
) -> TrainedModel:
    """Train on `fit`; `validation` (may be None with loss-based stopping) feeds val_rmse."""
    if config.kind == "item":
        return train_item_autoencoder(
            fit, validation, config, rating_scale=rating_scale, progress=progress
        )
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
        recommender, history, monitor, index, normalization, config, rating_scale, started
    )


def trained_model(
    recommender: keras.Model,
    history: keras.callbacks.History,
    monitor: str,
    index: ItemIndex,
    normalization: Normalization,
    config: TrainConfig,
    rating_scale: tuple[float, float],
    started: float,
    **extra,
) -> TrainedModel:
    """The TrainedModel of a finished fit: its per-epoch history as floats, the best epoch
    by `monitor` (1-based) and the seconds since `started` (time.perf_counter())."""
    return TrainedModel(
        recommender=recommender,
        index=index,
        normalization=normalization,
        config=config,
        rating_scale=rating_scale,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        best_epoch=int(np.argmin(history.history[monitor])) + 1,
        seconds=time.perf_counter() - started,
        **extra,
    )


FOLD_IN_L2S = (3.0, 10.0, 30.0, 60.0, 100.0, 170.0, 300.0, 1000.0)


def choose_fold_in(codes: np.ndarray, validation: ValidationSet, normalization, scale):
    """The fold-in λ with the lowest validation RMSE (users' fit ratings as input) and the
    RMSE of each: (ItemAutoencoder, {λ: RMSE})."""
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
    rating_scale: tuple[float, float] = (1.0, 5.0),
    progress: bool = False,
) -> TrainedModel:
    """I-AutoRec on the items' columns of the fit preferences, early stopping on the
    validation RMSE of the network's own predictions, then the fold-in λ chosen on the same
    validation ratings. Needs validation ratings (the fold-in λ is chosen on them)."""
    if validation is None or not len(validation):
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
    model.compile(optimizer=make_optimizer(config), loss=observed_sse, jit_compile=True)
    held_out = ValidationSet.build(fit, validation, index, normalization, rating_scale)
    callbacks = [
        ItemValidationRMSE(columns, users.user_ids, held_out, normalization, rating_scale),
        early_stopping(config, "val_rmse"),
        EpochLog(config.max_epochs),
    ]
    history = model.fit(
        ItemColumnBatches(columns, config.batch_size, config.seed),
        epochs=config.max_epochs,
        callbacks=callbacks,
        verbose=1 if progress else 0,
    )
    folded, scores = choose_fold_in(
        item_codes(model, columns), held_out, normalization, rating_scale
    )
    return trained_model(
        model,
        history,
        "val_rmse",
        index,
        normalization,
        config,
        rating_scale,
        started,
        folded=folded,
        fold_in={
            "l2": folded.fold_in_l2,
            "validation_rmse": scores[folded.fold_in_l2],
            "validation": [{"l2": l2, "rmse": rmse} for l2, rmse in scores.items()],
        },
    )
