"""I-AutoRec (Sedhain et al. 2015, "AutoRec: Autoencoders Meet Collaborative Filtering") in
Keras 3: an autoencoder over an item's column of user preferences, trained on the observed
entries only. Training needs the users of the training data as its input width; serving
keeps only the item codes (the code layer's output for every item) and folds users in
(recsys.model.item.network)."""

from __future__ import annotations

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops

from recsys.activations import activate
from recsys.model.batches import ShuffledRowBatches

CODE = "code"


def build_item_autoencoder(
    n_users: int, encoding_size: int, *, activation: str = "sigmoid", l2: float = 0.0
) -> keras.Model:
    """(batch, n_users) item columns → (batch, n_users): Dense(k, activation) named "code",
    then a linear Dense(n_users); both with biases and the same L2 penalty per weight."""
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    item_column = keras.Input(shape=(n_users,), name="item_column")
    code = keras.layers.Dense(
        encoding_size, activation=activation, kernel_regularizer=regularizer, name=CODE
    )(item_column)
    output = keras.layers.Dense(n_users, kernel_regularizer=regularizer, name="users")(code)
    return keras.Model(item_column, output, name="item_autoencoder")


def observed_sse(y_true, y_pred):
    """Sum of squared errors over the observed entries of each row: y_true packs
    [target | observed mask] side by side, (batch, 2 × n_users); AutoRec's loss, which
    never counts the unobserved zeros."""
    n_users = ops.shape(y_pred)[-1]
    target, observed = y_true[:, :n_users], y_true[:, n_users:]
    return ops.sum(observed * ops.square(y_pred - target), axis=-1)


class ItemColumnBatches(ShuffledRowBatches):
    """Batches of (item columns, [item columns | observed mask]) from an (n_items, n_users)
    CSR matrix of preferences; the mask is the matrix's stored entries, so a preference of
    exactly 0 still counts as observed. Items are reshuffled every epoch."""

    def __init__(self, columns: sp.csr_matrix, batch_size: int, seed: int):
        super().__init__(columns, batch_size, seed)
        self.observed = self.matrix.copy()
        self.observed.data[:] = 1.0

    def __getitem__(self, index: int):
        rows = self.rows(index)
        values = self.matrix[rows].toarray()
        packed = np.concatenate([values, self.observed[rows].toarray()], axis=1)
        return values, packed


def item_codes(model: keras.Model, columns: sp.csr_matrix, chunk: int = 512) -> np.ndarray:
    """The code of every item: the code layer applied to each item's column, (n_items, k)
    float32, computed in NumPy from the layer's weights (no model.predict)."""
    layer = model.get_layer(CODE)
    kernel = np.asarray(ops.convert_to_numpy(layer.kernel), dtype=np.float32)
    bias = np.asarray(ops.convert_to_numpy(layer.bias), dtype=np.float32)
    name = layer.activation.__name__
    parts = [
        activate(np.asarray(columns[start : start + chunk] @ kernel) + bias, name)
        for start in range(0, columns.shape[0], chunk)
    ]
    return np.concatenate(parts).astype(np.float32)


def direct_predictions(
    model: keras.Model, codes: np.ndarray, users: np.ndarray, items: np.ndarray, chunk=8192
) -> np.ndarray:
    """What the trained network itself predicts for (user row, item) pairs, AutoRec's own
    reading: the output layer's row of the user applied to the item's code. (n,) float32,
    computed `chunk` pairs at a time (two (chunk, k) gathers, not two (n, k) ones)."""
    layer = model.get_layer("users")
    kernel = np.asarray(ops.convert_to_numpy(layer.kernel), dtype=np.float32).T  # (users, k)
    bias = np.asarray(ops.convert_to_numpy(layer.bias), dtype=np.float32)
    out = np.empty(len(users), dtype=np.float32)
    for start in range(0, len(users), chunk):
        part = slice(start, start + chunk)
        out[part] = np.einsum("pk,pk->p", codes[items[part]], kernel[users[part]])
    return out + bias[users]
