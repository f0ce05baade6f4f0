"""A chain of Keras Dense layers evaluated at the known entries of a batch of sparse rows,
as both kinds train: the first layer's product x·W is the sum over a row's entries of
x_j · W[j], the layers in between run on (rows, width), and the output layer is evaluated
only at the entries' columns (its kernel's columns there and their biases). A step then
costs O(entries × k), never (batch, width of the rows)."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


def dense_at_entries(layers, n_rows, rows, columns, values, training=False):
    """(n,) outputs of `layers` (Dense, the first and last as wide as the rows) at the
    entries (rows[j], columns[j]) of the batch whose inputs are `values` at those entries:
    rows (n,) int32 in 0 … n_rows − 1, columns (n,) int32, values (n,) float32."""
    first, between, output = layers[0], layers[1:-1], layers[-1]
    weighted = ops.take(first.kernel, columns, axis=0) * ops.expand_dims(values, 1)
    code = ops.segment_sum(weighted, rows, num_segments=n_rows)
    if first.use_bias:
        code = code + first.bias
    code = first.activation(code)
    for layer in between:
        code = layer(code, training=training)
    item_columns = ops.transpose(ops.take(output.kernel, columns, axis=1))
    predictions = ops.sum(ops.take(code, rows, axis=0) * item_columns, axis=1)
    if output.use_bias:
        predictions = predictions + ops.take(output.bias, columns)
    return predictions


def weight_penalty(weights):
    """The sum of the weights' regularizers (what Keras adds to a model's loss), an L2 one as
    l2 · 2 · tf.nn.l2_loss(w): l2 · Σ w², in one pass over w instead of squaring it first."""
    total = 0.0
    for weight in weights:
        regularizer = weight.regularizer
        if isinstance(regularizer, keras.regularizers.L2):
            total = total + regularizer.l2 * 2.0 * tf.nn.l2_loss(weight.value)
        elif regularizer is not None:
            total = total + regularizer(weight)
    return total
