"""The activations a network may use, named as Keras names them, evaluated in NumPy for
serving: one list of names for the training settings and the serving code alike."""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("linear", "selu", "elu", "relu", "tanh", "sigmoid")
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def activate(values: np.ndarray, activation: str) -> np.ndarray:
    """Keras's `activation` in NumPy (float32 in, float32 out)."""
    if activation == "linear":
        return values
    if activation == "relu":
        return np.maximum(values, 0)
    if activation == "tanh":
        return np.tanh(values)
    if activation == "sigmoid":
        return (0.5 * (1.0 + np.tanh(0.5 * values))).astype(np.float32)  # no exp overflow
    negative = np.expm1(np.minimum(values, 0))  # exp(x) - 1 where x < 0; no overflow above
    if activation == "elu":
        return np.where(values > 0, values, negative).astype(np.float32)
    if activation == "selu":
        return (SELU_SCALE * np.where(values > 0, values, SELU_ALPHA * negative)).astype(np.float32)
    raise ValueError(f"unknown activation {activation!r}; known: {ACTIVATIONS}")
