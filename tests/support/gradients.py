"""Comparing the gradients of an entry-wise training step with those of its dense twin."""

import numpy as np
import tensorflow as tf


def assert_same_gradients(weights, expected, got) -> None:
    """Each weight's gradient in `got` equals its gradient in `expected` (to float32
    rounding); a failure names the weight."""
    for weight, a, b in zip(weights, expected, got, strict=True):
        np.testing.assert_allclose(
            tf.convert_to_tensor(b),
            tf.convert_to_tensor(a),
            rtol=1e-4,
            atol=1e-6,
            err_msg=weight.path,
        )
