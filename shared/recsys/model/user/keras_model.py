"""The user kind's network in Keras 3 (the article's linear autoencoder and its deeper
option) and the trained layers read back as NumPy (recsys.model.user.network). It is trained
at the known entries only, with the article's loss (recsys.model.user.known_entry_model).

recommender = decoder ∘ encoder; encoder = Dense(k, linear, no bias) and
decoder = Dense(n_items, linear, no bias) are models of their own, so the code of a
preference vector and the item embeddings (the decoder kernel's columns) can be reached.
The deeper option puts hidden layers (with biases and a non-linear activation) on both sides
of the code and dropout on the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np

from recsys.model.user.network import DeepAutoencoder, DenseLayer, LinearAutoencoder

if TYPE_CHECKING:
    from recsys.model.config import TrainConfig

ENCODER = "encoder"
DECODER = "decoder"


def build_autoencoder(
    n_items: int,
    encoding_size: int,
    *,
    l2: float = 0.0,
    hidden_layers: tuple[int, ...] = (),
    activation: str = "linear",
    input_dropout: float = 0.0,
) -> keras.Model:
    """The recommender model: (batch, n_items) preferences → (batch, n_items) predictions.

    With the defaults it is the article's network. With `hidden_layers` (widths between the
    input and the code, mirrored in the decoder) or a non-linear `activation` it is the deeper
    option: every layer has a bias and that activation, except the output layer, which stays
    linear and is still named "item_embeddings" (its kernel's columns are the item
    embeddings). `input_dropout` adds a Dropout layer on the input, active in training only."""
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    deep = bool(hidden_layers) or activation != "linear"

    def dense(units: int, name: str, act: str = activation) -> keras.layers.Dense:
        return keras.layers.Dense(
            units, activation=act, use_bias=deep, kernel_regularizer=regularizer, name=name
        )

    # The decoder is built first: layers draw their initial weights from the seeded
    # generator in creation order, and the article's network was always built this way, so
    # a seed gives the same model as before the deeper option existed.
    code_input = keras.Input(shape=(encoding_size,), name="code")
    values = code_input
    for n, width in enumerate(reversed(hidden_layers), 1):
        values = dense(width, f"decoder_{n}")(values)
    outputs = dense(n_items, "item_embeddings", "linear")(values)
    decoder = keras.Model(code_input, outputs, name=DECODER)

    preferences = keras.Input(shape=(n_items,), name="preferences")
    values = preferences
    if input_dropout > 0:
        values = keras.layers.Dropout(input_dropout, name="input_dropout")(values)
    for n, width in enumerate(hidden_layers, 1):
        values = dense(width, f"encoder_{n}")(values)
    encoder = keras.Model(preferences, dense(encoding_size, "code")(values), name=ENCODER)
    return keras.Model(preferences, decoder(encoder(preferences)), name="recommender")


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


def encoder_of(recommender: keras.Model) -> keras.Model:
    return recommender.get_layer(ENCODER)


def decoder_of(recommender: keras.Model) -> keras.Model:
    return recommender.get_layer(DECODER)


def network_of(recommender: keras.Model) -> LinearAutoencoder | DeepAutoencoder:
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
