"""Training the user kind's recommender at the known entries only: a Keras model over the
recommender's own layers that takes a batch as its known entries (recsys.model.user.
known_entries) and predicts only there, with the article's loss over those entries. A step
costs O(known entries × k) plus the optimizer's pass over the weights, never (batch, n_items).

The layers are evaluated at the known entries as recsys.model.entries does it; the trained
weights are the recommender's: it is saved and served unchanged."""

from __future__ import annotations

import keras
from keras import ops

from recsys.model.entries import dense_at_entries, weight_penalty
from recsys.model.user.keras_model import decoder_of, encoder_of


def masked_mean_square(errors, mask):
    """Mean of errors² where mask is 1; 0 when there are none (the article's guard against the
    NaN of an empty mean)."""
    count = ops.sum(mask)
    total = ops.sum(mask * ops.square(errors))
    return ops.where(count > 0, total / ops.maximum(count, 1.0), 0.0)


def known_entry_loss(targets, predictions, hidden, visible, hidden_weight: float):
    """The article's loss over a batch's known entries, all (n,): frac × MSE over the hidden
    entries + (1 − frac) × MSE over those the input still shows. Equal to the dense definition
    (masks input ≠ target and input ≠ 0 over (batch, n_items)), which looks nowhere else."""
    errors = predictions - targets
    return hidden_weight * masked_mean_square(errors, hidden) + (
        1.0 - hidden_weight
    ) * masked_mean_square(errors, visible)


class KnownEntryTrainer(keras.Model):
    """Trains `recommender` (recsys.model.user.keras_model.build_autoencoder) on batches of
    known entries: call((users, rows, columns, inputs)) → (n,) predicted preferences at
    (rows, columns); the loss is the article's over those entries plus the recommender's L2
    penalties, so a step optimizes what the dense step over (batch, n_items) did."""

    def __init__(self, recommender: keras.Model, hidden_weight: float, **kwargs):
        super().__init__(**kwargs)
        self.recommender = recommender
        self.hidden_weight = hidden_weight

    def call(self, inputs, training=False):
        users, rows, columns, values = inputs
        encoder, decoder = encoder_of(self.recommender), decoder_of(self.recommender)
        layers = [layer for layer in encoder.layers + decoder.layers if _dense(layer)]
        if any(layer.name == "input_dropout" for layer in encoder.layers):
            values = encoder.get_layer("input_dropout")(values, training=training)
        return dense_at_entries(
            layers, ops.shape(users)[0], rows, columns, values, training=training
        )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        targets, hidden, visible = y
        loss = known_entry_loss(targets, y_pred, hidden, visible, self.hidden_weight)
        return loss + weight_penalty(self.trainable_weights)


def _dense(layer) -> bool:
    return isinstance(layer, keras.layers.Dense)
