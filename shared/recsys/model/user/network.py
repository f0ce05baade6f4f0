"""The user kind's serving form in NumPy: the article's linear autoencoder (two kernels, no
biases) and the deeper option (a stack of dense layers with biases and activations)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import scipy.sparse as sp

from recsys.activations import activate
from recsys.errors import FailedPrecondition

# predict_pairs works through the pairs in chunks of this many, so its temporaries stay at
# a few MB (a 25M-rating validation set has 2.25 million pairs; unchunked, 1.2 GB at k = 64).
PAIRS_PER_CHUNK = 1 << 16


def pair_products(codes: np.ndarray, rows, kernel: np.ndarray, columns) -> np.ndarray:
    """codes[rows[j]] · kernel[:, columns[j]] for every pair j, chunk by chunk. (n,) float32."""
    values = np.empty(len(rows), dtype=np.result_type(codes, kernel))
    for start in range(0, len(rows), PAIRS_PER_CHUNK):
        chunk = slice(start, start + PAIRS_PER_CHUNK)
        values[chunk] = np.einsum("pk,kp->p", codes[rows[chunk]], kernel[:, columns[chunk]])
    return values


def product(inputs, kernel: np.ndarray) -> np.ndarray:
    """inputs @ kernel, (batch, n_out) float32, with every row computed on its own, so that a
    row's result never depends on the rows beside it: a CSR input through scipy's sparse
    product (row by row, and it costs the stored entries × n_out), a dense one row by row.
    One BLAS product of several rows rounds a row differently depending on how many rows it
    has (OpenBLAS picks its kernel by shape; seen on AMD EPYC for 9 rows against 8), which
    would make an answer depend on the batch it was computed in."""
    if sp.issparse(inputs):
        return np.asarray(inputs @ kernel, dtype=np.float32)
    inputs = np.atleast_2d(np.asarray(inputs))
    out = np.empty((inputs.shape[0], kernel.shape[1]), np.result_type(inputs, kernel))
    for row in range(inputs.shape[0]):
        np.matmul(inputs[row], kernel, out=out[row])
    return out.astype(np.float32, copy=False)


@dataclass(frozen=True)
class LinearAutoencoder:
    """encoder_kernel: (n_items, k) float32; decoder_kernel: (k, n_items) float32."""

    encoder_kernel: np.ndarray
    decoder_kernel: np.ndarray

    @property
    def n_items(self) -> int:
        return self.encoder_kernel.shape[0]

    @property
    def encoding_size(self) -> int:
        return self.encoder_kernel.shape[1]

    @property
    def depth(self) -> int:
        return 1

    def encode(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, k) codes."""
        return product(preferences, self.encoder_kernel)

    def predict(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, n_items) predicted preferences."""
        return product(self.encode(preferences), self.decoder_kernel)

    def predict_pairs(self, preferences, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Predicted preference of row `rows[j]` at column `columns[j]`, without the full
        (batch, n_items) product. (n_pairs,) float32."""
        return pair_products(self.encode(preferences), rows, self.decoder_kernel, columns)

    @property
    def item_embeddings(self) -> np.ndarray:
        """(n_items, k): item j's embedding is column j of the decoder kernel (the article)."""
        return self.decoder_kernel.T

    def check_explainable(self) -> None:
        """Always explainable: linear without biases."""

    def contributions(self, columns: np.ndarray, values: np.ndarray, target: int) -> np.ndarray:
        """What each input entry adds to the predicted preference at column `target`:
        values[j] · (W_enc W_dec)[columns[j], target], (n,) float64. The network is linear
        without biases, so these add up to predict(x)[target] exactly (to rounding)."""
        weights = self.encoder_kernel[columns].astype(np.float64) @ self.decoder_kernel[
            :, target
        ].astype(np.float64)
        return np.asarray(values, dtype=np.float64) * weights


@dataclass(frozen=True)
class DenseLayer:
    """One Keras Dense layer as NumPy: kernel (n_in, n_out) float32, bias (n_out,) float32 or
    None, activation name."""

    kernel: np.ndarray
    bias: np.ndarray | None
    activation: str

    def __call__(self, inputs) -> np.ndarray:
        out = product(inputs, self.kernel)
        if self.bias is not None:
            out = out + self.bias
        return activate(out, self.activation)


@dataclass(frozen=True)
class DeepAutoencoder:
    """A stack of dense layers: `encoder` layers end in the code layer (width k), `decoder`
    layers end in the output layer (width n_items, linear). The deeper option of Kuchaiev &
    Ginsburg ("Training Deep AutoEncoders for Collaborative Filtering"); input dropout is a
    training-time layer only, so inference is these matrix products."""

    encoder: tuple[DenseLayer, ...]
    decoder: tuple[DenseLayer, ...]

    def __post_init__(self):
        if not self.encoder or not self.decoder:
            raise ValueError("a deep autoencoder needs at least one encoder and decoder layer")
        if self.decoder[-1].activation != "linear":
            raise ValueError("the output layer must be linear (preferences can be negative)")

    @property
    def n_items(self) -> int:
        return self.encoder[0].kernel.shape[0]

    @property
    def encoding_size(self) -> int:
        return self.encoder[-1].kernel.shape[1]

    @property
    def depth(self) -> int:
        """Dense layers on each side of the code (1: the article's shape)."""
        return len(self.encoder)

    def encode(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, k) codes."""
        values = preferences
        for layer in self.encoder:
            values = layer(values)
        return np.asarray(values, dtype=np.float32)

    def last_hidden(self, preferences) -> np.ndarray:
        """The input of the output layer: (batch, width of the last decoder hidden layer)."""
        values = self.encode(preferences)
        for layer in self.decoder[:-1]:
            values = layer(values)
        return values

    def predict(self, preferences) -> np.ndarray:
        """(batch, n_items) dense or CSR preferences → (batch, n_items) predicted preferences."""
        return self.decoder[-1](self.last_hidden(preferences))

    def predict_pairs(self, preferences, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Predicted preference of row `rows[j]` at column `columns[j]`. (n_pairs,) float32."""
        hidden = self.last_hidden(preferences)
        output = self.decoder[-1]
        values = pair_products(hidden, rows, output.kernel, columns)
        if output.bias is not None:
            values = values + output.bias[columns]
        return values.astype(np.float32)

    @property
    def item_embeddings(self) -> np.ndarray:
        """(n_items, width): item j's embedding is column j of the last decoder kernel."""
        return self.decoder[-1].kernel.T

    def check_explainable(self) -> NoReturn:
        raise FailedPrecondition(
            "explanations need the linear network; this model is a deep autoencoder "
            f"(depth {self.depth}), whose predictions are not sums over rated items"
        )

    def contributions(self, columns: np.ndarray, values: np.ndarray, target: int) -> np.ndarray:
        """Refused, as check_explainable says."""
        self.check_explainable()
