"""Keras's Adam with TensorFlow's fused kernel: the same update (Kingma & Ba with ε added to
√v, as Keras and TensorFlow both define it), one multi-threaded pass over a weight and its
two moments instead of a dozen element-wise ops. A step of either kind updates every weight
of its two wide kernels (the L2 penalty reaches all of them), which at 25M's shape is most of
a step's time."""

from __future__ import annotations

import keras
import tensorflow as tf


class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam (without amsgrad) whose step is tf.raw_ops.ResourceApplyAdam."""

    def __init__(self, learning_rate=0.001, **kwargs):
        if kwargs.get("amsgrad"):
            raise ValueError("FusedAdam has no amsgrad")
        super().__init__(learning_rate=learning_rate, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(tf.convert_to_tensor(gradient), dtype),
        )


def _handle(variable):
    """The resource handle of a Keras or a TensorFlow variable."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle
