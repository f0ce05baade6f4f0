import numpy as np
import scipy.sparse as sp
from keras import ops

from recsys.model.user.keras_model import article_loss, build_autoencoder, packed_loss
from recsys.model.user.training import HiddenPreferenceBatches


def test_article_loss_by_hand():
    # target [1, 2, 0, 4], input with item 1 hidden [1, 0, 0, 4], prediction [0, 1, 5, 4]
    # hidden (input ≠ target): position 1 → MSE (1-2)² = 1
    # visible (input ≠ 0): positions 0 and 3 → MSE ((0-1)² + (4-4)²)/2 = 0.5
    # position 2 is unrated: predicting 5 there costs nothing
    # loss = 0.8 × 1 + 0.2 × 0.5 = 0.9
    target = np.array([[1.0, 2, 0, 4]], np.float32)
    hidden_input = np.array([[1.0, 0, 0, 4]], np.float32)
    prediction = np.array([[0.0, 1, 5, 4]], np.float32)
    loss = article_loss(target, hidden_input, prediction, 0.8)
    np.testing.assert_allclose(ops.convert_to_numpy(loss), 0.9, rtol=1e-6)
    packed = packed_loss(0.8)(np.concatenate([target, hidden_input], axis=1), prediction)
    np.testing.assert_allclose(ops.convert_to_numpy(packed), 0.9, rtol=1e-6)


def test_article_loss_without_hidden_entries_is_finite():
    # nothing hidden: the hidden term is 0, not NaN; visible MSE = ((0-1)² + (4-4)²)/2 = 0.5
    target = np.array([[1.0, 0, 4]], np.float32)
    prediction = np.array([[0.0, 3, 4]], np.float32)
    loss = ops.convert_to_numpy(article_loss(target, target, prediction, 0.8))
    np.testing.assert_allclose(loss, 0.2 * 0.5, rtol=1e-6)
    empty = np.zeros((1, 3), np.float32)
    assert ops.convert_to_numpy(article_loss(empty, empty, prediction, 0.8)) == 0.0


def known_matrix(n_users=200, n_items=300, density=0.3, seed=1):
    rng = np.random.default_rng(seed)
    matrix = sp.random(n_users, n_items, density=density, random_state=seed, format="csr")
    matrix.data = rng.uniform(0.5, 1.5, matrix.nnz).astype(np.float32)  # no exact zeros
    return matrix


def test_hiding_fraction_and_masks():
    matrix = known_matrix()
    batches = HiddenPreferenceBatches(matrix, batch_size=50, hide_fraction=0.2, seed=3)
    assert len(batches) == 4
    hidden_share, first_masks = [], []
    for i in range(len(batches)):
        hidden_input, packed = batches[i]
        target, packed_input = packed[:, :300], packed[:, 300:]
        np.testing.assert_array_equal(packed_input, hidden_input)
        known = target != 0
        assert not (hidden_input[~known]).any(), "an unrated entry became non-zero"
        kept = known & (hidden_input != 0)
        np.testing.assert_array_equal(hidden_input[kept], target[kept])
        hidden_share.append((known & (hidden_input == 0)).sum() / known.sum())
        first_masks.append(hidden_input == 0)
    assert abs(np.mean(hidden_share) - 0.2) < 0.01
    # the next epoch hides other entries of the same users
    first_rows = batches.order[:50].copy()
    batches.on_epoch_end()
    batches.order = first_rows  # the same users again, to compare their masks
    second = batches[0][0] == 0
    assert not np.array_equal(second, first_masks[0]), "a new epoch must draw new masks"


def test_batches_are_seeded():
    a = HiddenPreferenceBatches(known_matrix(), 50, 0.2, seed=5)[1][0]
    b = HiddenPreferenceBatches(known_matrix(), 50, 0.2, seed=5)[1][0]
    np.testing.assert_array_equal(a, b)


def test_autoencoder_shapes_and_parts():
    model = build_autoencoder(n_items=30, encoding_size=4)
    encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
    x = np.ones((2, 30), np.float32)
    assert tuple(encoder(x).shape) == (2, 4)
    assert tuple(decoder(encoder(x)).shape) == (2, 30)
    assert all(not layer.use_bias for m in (encoder, decoder) for layer in m.layers[1:])
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)), ops.convert_to_numpy(decoder(encoder(x))), rtol=1e-6
    )
