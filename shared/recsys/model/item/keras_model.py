"""I-AutoRec (Sedhain et al. 2015, "AutoRec: Autoencoders Meet Collaborative Filtering") in
Keras 3: an autoencoder over an item's column of user preferences, trained on the observed
entries only. Training needs the users of the training data as its input width; serving
keeps only the item codes (the code layer's output for every item) and folds users in
(recsys.model.item.network). It is trained at the observed entries only
(ObservedEntryTrainer), so a step costs O(ratings × k), never (batch, n_users)."""

from __future__ import annotations

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops

from recsys.activations import activate
from recsys.model.batches import ShuffledRowBatches
from recsys.model.entries import dense_at_entries, weight_penalty

CODE = "code"
USERS = "users"


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
    output = keras.layers.Dense(n_users, kernel_regularizer=regularizer, name=USERS)(code)
    return keras.Model(item_column, output, name="item_autoencoder")


def observed_sse(targets, predictions, n_rows):
    """AutoRec's loss as Keras reduced it over a dense batch: the sum of squared errors over
    the observed entries (n,), divided by the batch's rows (items); the unobserved entries
    never count."""
    return ops.sum(ops.square(predictions - targets)) / ops.cast(n_rows, predictions.dtype)


class ObservedEntryBatches(ShuffledRowBatches):
    """Batches of ((items, rows, columns, values), values) from an (n_items, n_users) CSR
    matrix of preferences: the batch's items (their count is its rows), then one entry per
    stored preference of those items: its row in the batch, its user column and its value,
    the input and the target alike (AutoRec hides nothing). A stored 0 is an observed entry:
    its input adds nothing, but its error counts. Items are reshuffled every epoch."""

    def __getitem__(self, index: int):
        items = self.rows(index)
        batch = self.matrix[items]
        rows = np.repeat(np.arange(len(items), dtype=np.int32), np.diff(batch.indptr))
        entries = (items.astype(np.int32), rows, batch.indices.astype(np.int32), batch.data)
        return entries, batch.data


class ObservedEntryTrainer(keras.Model):
    """Trains `model` (build_item_autoencoder) on batches of observed entries: call((items,
    rows, columns, values)) → (n,) predictions at (rows, columns), the loss observed_sse plus
    the model's L2 penalties: what the dense step over (batch, n_users) optimized, at the cost
    of the entries (recsys.model.entries)."""

    def __init__(self, model: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.autoencoder = model

    def call(self, inputs, training=False):
        items, rows, columns, values = inputs
        layers = [self.autoencoder.get_layer(CODE), self.autoencoder.get_layer(USERS)]
        return dense_at_entries(layers, ops.shape(items)[0], rows, columns, values, training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = observed_sse(y, y_pred, ops.shape(x[0])[0])
        return loss + weight_penalty(self.trainable_weights)


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
    layer = model.get_layer(USERS)
    kernel = np.asarray(ops.convert_to_numpy(layer.kernel), dtype=np.float32).T  # (users, k)
    bias = np.asarray(ops.convert_to_numpy(layer.bias), dtype=np.float32)
    out = np.empty(len(users), dtype=np.float32)
    for start in range(0, len(users), chunk):
        part = slice(start, start + chunk)
        out[part] = np.einsum("pk,pk->p", codes[items[part]], kernel[users[part]])
    return out + bias[users]
