"""The article's loss over known entries worked by hand, and the training batches: a batch's
known entries, the share it hides, fresh masks every epoch, seeded."""

import numpy as np
import scipy.sparse as sp
from keras import ops

from recsys.model.user.keras_model import build_autoencoder
from recsys.model.user.known_entries import KnownEntryBatches
from recsys.model.user.known_entry_model import known_entry_loss


def test_article_loss_by_hand():
    # a user's known entries: targets [1, 2, 4] at items 0, 1, 3 (item 2 is unrated and not
    # an entry, so predicting 5 there costs nothing); item 1 hidden; predictions [0, 1, 4]
    # hidden: item 1 → MSE (1-2)² = 1
    # visible: items 0 and 3 → MSE ((0-1)² + (4-4)²)/2 = 0.5
    # loss = 0.8 × 1 + 0.2 × 0.5 = 0.9
    targets = np.array([1.0, 2, 4], np.float32)
    predictions = np.array([0.0, 1, 4], np.float32)
    hidden = np.array([0.0, 1, 0], np.float32)
    loss = known_entry_loss(targets, predictions, hidden, 1 - hidden, 0.8)
    np.testing.assert_allclose(ops.convert_to_numpy(loss), 0.9, rtol=1e-6)


def test_article_loss_without_hidden_entries_is_finite():
    # nothing hidden: the hidden term is 0, not NaN; visible MSE = ((0-1)² + (4-4)²)/2 = 0.5
    targets = np.array([1.0, 4], np.float32)
    predictions = np.array([0.0, 4], np.float32)
    nothing = np.zeros(2, np.float32)
    loss = known_entry_loss(targets, predictions, nothing, 1 - nothing, 0.8)
    np.testing.assert_allclose(ops.convert_to_numpy(loss), 0.2 * 0.5, rtol=1e-6)
    empty = np.zeros(0, np.float32)
    assert ops.convert_to_numpy(known_entry_loss(empty, empty, empty, empty, 0.8)) == 0.0


def known_matrix(n_users=200, n_items=300, density=0.3, seed=1):
    rng = np.random.default_rng(seed)
    matrix = sp.random(n_users, n_items, density=density, random_state=seed, format="csr")
    matrix.data = rng.uniform(0.5, 1.5, matrix.nnz).astype(np.float32)  # no exact zeros
    return matrix


def test_batches_are_the_known_entries_with_a_share_hidden():
    matrix = known_matrix()
    batches = KnownEntryBatches(matrix, batch_size=50, hide_fraction=0.2, seed=3, rescale=True)
    assert len(batches) == 4
    hidden_share, first_masks = [], []
    for i in range(len(batches)):
        (users, rows, columns, inputs), (targets, hidden, visible) = batches[i]
        np.testing.assert_array_equal(users, batches.order[i * 50 : (i + 1) * 50])
        # one entry per known preference of these users, nothing else
        expected = matrix[users].tocoo()
        assert len(rows) == expected.nnz
        np.testing.assert_array_equal(
            sp.coo_matrix((targets, (rows, columns)), shape=expected.shape).toarray(),
            expected.toarray(),
        )
        np.testing.assert_array_equal(hidden + visible, np.ones(len(rows)))
        np.testing.assert_array_equal(inputs[hidden == 1], 0)
        np.testing.assert_allclose(inputs[visible == 1], targets[visible == 1] / 0.8, rtol=1e-6)
        hidden_share.append(hidden.mean())
        first_masks.append(hidden)
    assert abs(np.mean(hidden_share) - 0.2) < 0.01
    # the next epoch hides other entries of the same users
    first_rows = batches.order[:50].copy()
    batches.on_epoch_end()
    batches.order = first_rows  # the same users again, to compare their masks
    second = batches[0][1][1]
    assert not np.array_equal(second, first_masks[0]), "a new epoch must draw new masks"


def test_an_entry_stored_as_zero_is_no_known_entry():
    # the dense form could not tell a stored 0 from an unrated item: neither can the batches
    matrix = sp.csr_matrix(
        (np.array([1.0, 0.0, 2.0], np.float32), (np.array([0, 0, 1]), np.array([0, 1, 2]))),
        shape=(2, 3),
    )
    (users, rows, columns, _), (targets, _, _) = KnownEntryBatches(matrix, 2, 0.5, seed=0)[0]
    entries = zip(users[rows].tolist(), columns.tolist(), targets.tolist(), strict=True)
    assert sorted(entries) == [(0, 0, 1.0), (1, 2, 2.0)]
    assert matrix.nnz == 3, "the caller's matrix is left as it was"


def test_batches_are_seeded():
    a = KnownEntryBatches(known_matrix(), 50, 0.2, seed=5)[1]
    b = KnownEntryBatches(known_matrix(), 50, 0.2, seed=5)[1]
    for x, y in zip(a[0] + a[1], b[0] + b[1], strict=True):
        np.testing.assert_array_equal(x, y)


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
