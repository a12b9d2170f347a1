"""MixtureOfExperts: per-class softmax gates over logistic experts, plus a dummy expert."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="yt8m")
class MixtureOfExperts(keras.layers.Layer):
    """The starter code's `MoeModel`: for each class c, M logistic experts and one dummy expert
    that always says 0, mixed by a softmax over M + 1 gate logits:
    `p_c = sum_j softmax(g_c)_j * sigmoid(e_cj)`.

    Returns probabilities; `yt8m.models` turns them into logits (`log p - log(1 - p)`) so every
    model outputs logits.

    Args:
        num_classes: output classes C.
        num_mixtures: experts per class M (2 in WILLOW, 4 in the starter code's flag default).
        l2: L2 on the gate and expert kernels (`l2 * sum(w^2)`).

    Call arguments:
        inputs: (batch, features).

    Example:
        >>> MixtureOfExperts(10, 2)(np.ones((3, 8), "float32")).shape  # (3, 10)
    """

    def __init__(self, num_classes, num_mixtures=2, l2=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.num_mixtures = num_mixtures
        self.l2 = l2

    def build(self, input_shape):
        regularizer = keras.regularizers.L2(self.l2) if self.l2 else None
        c, m = self.num_classes, self.num_mixtures
        self.gates = keras.layers.Dense(c * (m + 1), use_bias=False, name="gates",
                                        kernel_regularizer=regularizer, dtype=self.dtype_policy)
        self.experts = keras.layers.Dense(c * m, name="experts", kernel_regularizer=regularizer,
                                          dtype=self.dtype_policy)
        self.gates.build(input_shape)
        self.experts.build(input_shape)

    def call(self, inputs):
        c, m = self.num_classes, self.num_mixtures
        gates = ops.softmax(ops.reshape(ops.cast(self.gates(inputs), "float32"), (-1, c, m + 1)))
        experts = ops.sigmoid(ops.reshape(ops.cast(self.experts(inputs), "float32"), (-1, c, m)))
        return ops.sum(gates[..., :m] * experts, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return super().get_config() | {"num_classes": self.num_classes,
                                       "num_mixtures": self.num_mixtures, "l2": self.l2}
