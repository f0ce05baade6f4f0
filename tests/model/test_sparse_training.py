"""The user kind's training at the known entries (recsys.model.user.known_entry_model): its
loss and gradients are those of the article's loss over dense (batch, n_items) arrays, worked
out independently here; training on planted structure converges; what it trains serves
through the NumPy network and the saved file with the Keras model's predictions; the deeper
option trains the same way."""

import keras
import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from recsys.data.movielens import load_movielens
from recsys.data.split import split_ratings
from recsys.evaluation.metrics import rmse
from recsys.features import preference_matrix
from recsys.model.config import PRESETS, TrainConfig
from recsys.model.fused_adam import FusedAdam
from recsys.model.registry import get_kind, train_autoencoder
from recsys.model.training import items_and_normalization
from recsys.model.user.keras_model import build_for, network_of
from recsys.model.user.known_entries import KnownEntryBatches
from recsys.model.user.known_entry_model import KnownEntryTrainer
from recsys.model.user.network import DeepAutoencoder, LinearAutoencoder
from tests.conftest import TINY_DEEP, TINY_TRAINING
from tests.support.gradients import assert_same_gradients

N_ITEMS = 30
CONFIGS = {
    "article": TrainConfig(encoding_size=4, hidden_weight=0.8),
    "default-like": TrainConfig(encoding_size=4, l2=0.01, hide_fraction=0.3, rescale_input=True),
    "deep": TrainConfig(
        encoding_size=3, l2=0.01, hidden_layers=(7,), activation="selu", hidden_weight=0.6
    ),
}


def preferences(n_users=40, seed=0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    matrix = sp.random(n_users, N_ITEMS, density=0.25, random_state=seed, format="csr")
    matrix.data = rng.normal(0, 1, matrix.nnz).astype(np.float32)
    return matrix.astype(np.float32)


def randomized(config: TrainConfig) -> keras.Model:
    """The config's network with non-zero weights everywhere (biases too)."""
    model = build_for(config, N_ITEMS)
    rng = np.random.default_rng(1)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.4, weight.shape).astype(np.float32))
    return model


def dense_form(matrix, batch):
    """The batch as the article's dense training saw it: (target, hidden input), both
    (n_users, n_items), from the matrix's rows and the batch's choice of hidden entries."""
    (users, rows, columns, _), (_, hidden, _) = batch
    target = matrix[users].toarray()
    hidden_input = target.copy()
    hidden_input[rows[hidden == 1], columns[hidden == 1]] = 0
    return target, hidden_input


def dense_article_loss(target, hidden_input, prediction, frac):
    """frac × MSE where input ≠ target + (1 − frac) × MSE where input ≠ 0, over the whole
    (n_users, n_items) arrays, in NumPy float64; an empty mean is 0."""
    errors = (prediction.astype(np.float64) - target) ** 2

    def masked_mean(mask):
        return errors[mask].mean() if mask.any() else 0.0

    return frac * masked_mean(hidden_input != target) + (1 - frac) * masked_mean(hidden_input != 0)


def l2_penalty(model, l2):
    """l2 × Σ w² over the kernels (what the L2 regularizer adds; biases have none)."""
    kernels = [keras.ops.convert_to_numpy(w) for w in model.weights if w.path.endswith("kernel")]
    return l2 * sum(float((kernel.astype(np.float64) ** 2).sum()) for kernel in kernels)


def batch_of(matrix, config, seed=2):
    batches = KnownEntryBatches(
        matrix, 16, config.hide_fraction, seed, rescale=config.rescale_input
    )
    return batches[0], 1 / (1 - config.hide_fraction) if config.rescale_input else 1.0


@pytest.mark.parametrize("name", list(CONFIGS))
def test_loss_equals_the_dense_definition(name):
    config = CONFIGS[name]
    matrix = preferences()
    model = randomized(config)
    batch, scale = batch_of(matrix, config)
    target, hidden_input = dense_form(matrix, batch)
    assert (hidden_input != target).any() and (hidden_input != 0).any()
    prediction = network_of(model).predict(hidden_input * np.float32(scale))  # NumPy
    expected = dense_article_loss(target, hidden_input, prediction, config.hidden_weight)
    expected += l2_penalty(model, config.l2)

    trainer = KnownEntryTrainer(model, config.hidden_weight)
    x, y = batch
    loss = trainer.compute_loss(x, y, trainer(x))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gradients_equal_those_of_the_dense_loss(name):
    # the dense loss in TensorFlow over (n_users, n_items), differentiated by the tape: the
    # same gradient for every weight (decoder columns of unrated items get only the L2 part)
    config = CONFIGS[name]
    matrix = preferences()
    model = randomized(config)
    batch, scale = batch_of(matrix, config)
    target, hidden_input = dense_form(matrix, batch)
    hidden = tf.constant((hidden_input != target).astype(np.float32))
    visible = tf.constant((hidden_input != 0).astype(np.float32))

    def masked_mean(errors, mask):
        return tf.reduce_sum(errors * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)

    with tf.GradientTape() as tape:
        errors = tf.square(model(hidden_input * np.float32(scale)) - target)
        frac = config.hidden_weight
        dense = frac * masked_mean(errors, hidden) + (1 - frac) * masked_mean(errors, visible)
        dense += sum(model.losses)
    expected = tape.gradient(dense, model.trainable_weights)

    trainer = KnownEntryTrainer(model, config.hidden_weight)
    x, y = batch
    with tf.GradientTape() as tape:
        loss = trainer.compute_loss(x, y, trainer(x))
    got = tape.gradient(loss, model.trainable_weights)
    assert_same_gradients(model.trainable_weights, expected, got)


def test_fused_adam_is_keras_adam():
    rng = np.random.default_rng(0)
    start = rng.normal(0, 1, (20, 6)).astype(np.float32)
    gradients = [rng.normal(0, 1, start.shape).astype(np.float32) for _ in range(15)]
    results = []
    for optimizer in (keras.optimizers.Adam(1e-2), FusedAdam(1e-2)):
        weight = keras.Variable(start)
        optimizer.build([weight])
        for gradient in gradients:
            optimizer.apply([gradient], [weight])
        results.append(keras.ops.convert_to_numpy(weight))
    assert np.abs(results[1] - start).max() > 0.05  # it moved
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def synthetic_split(synthetic_dir):
    return split_ratings(load_movielens(synthetic_dir).ratings, seed=0)


def bias_baseline_rmse(split) -> float:
    """RMSE on the validation ratings of μ + b_i + b_u (prediction 0 for every preference)."""
    index, normalization = items_and_normalization(split.fit, PRESETS["user"])
    validation = split.validation[index.columns(split.validation["item_id"].to_numpy()) >= 0]
    users = preference_matrix(split.fit, index, normalization, validation["user_id"].unique())
    row = dict(zip(users.user_ids.tolist(), users.user_means, strict=True))
    columns = index.columns(validation["item_id"].to_numpy())
    predicted = normalization.denormalize(
        0.0, np.array([row[u] for u in validation["user_id"]]), columns
    )
    return rmse(np.clip(predicted, 1, 5), validation["rating"].to_numpy(np.float64))


@pytest.mark.slow
def test_training_converges_on_planted_structure(synthetic_split):
    config = PRESETS["user"].replace(**TINY_TRAINING)
    trained = train_autoencoder(synthetic_split.fit, synthetic_split.validation, config)
    curve = trained.history["val_rmse"]
    assert curve[-1] < curve[0] - 0.05, curve
    assert trained.validation_rmse < bias_baseline_rmse(synthetic_split) - 0.05
    assert isinstance(trained.network, LinearAutoencoder)


@pytest.mark.slow
@pytest.mark.parametrize("settings", [TINY_TRAINING, TINY_DEEP], ids=["linear", "deep"])
def test_trained_weights_serve_with_the_keras_predictions(settings, synthetic_split, tmp_path):
    config = PRESETS["user"].replace(**{**settings, "max_epochs": 4})
    trained = train_autoencoder(synthetic_split.fit, synthetic_split.validation, config)
    assert len(trained.history["loss"]) == 4 and np.isfinite(trained.history["loss"]).all()
    rng = np.random.default_rng(0)
    users = rng.normal(0, 1, (6, len(trained.index))).astype(np.float32)
    users[rng.random(users.shape) < 0.8] = 0
    expected = keras.ops.convert_to_numpy(trained.model(users, training=False))
    np.testing.assert_allclose(trained.network.predict(users), expected, rtol=1e-4, atol=1e-5)
    kind = get_kind("user")
    kind.save(trained, tmp_path)
    loaded = kind.load(tmp_path)
    assert type(loaded) is type(trained.network)
    np.testing.assert_array_equal(loaded.predict(users), trained.network.predict(users))
    if settings is TINY_DEEP:
        assert isinstance(loaded, DeepAutoencoder) and loaded.depth == 2
