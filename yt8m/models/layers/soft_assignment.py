"""SoftAssignment: each frame's soft assignment to K clusters, the first step of WILLOW's
learnable pooling (NetVLAD, NetRVLAD, NetFV and SoftDBoF build on it)."""

import keras
from keras import ops

from .masking import frame_mask


@keras.saving.register_keras_serializable(package="yt8m")
class SoftAssignment(keras.layers.Layer):
    """Soft-assign each frame to K clusters, `a = softmax(BN(x W))`, with zero assignment for
    padded frames; the assignment BatchNorm's statistics skip them.

    The pooling layers subclass it and pool `soft_assign(...)`'s output their own way; called
    directly, it returns the assignments.

    Args:
        clusters: K.
        batch_norm: BatchNorm on the assignment logits instead of a bias (WILLOW default).
        momentum, epsilon: BatchNorm settings.

    Call arguments:
        inputs: (batch, frames, features).
        mask: (batch, frames) bool, True for real frames.
        training: BatchNorm mode.

    Output: (batch, frames, clusters).

    Example:
        >>> SoftAssignment(8)(np.ones((2, 5, 16), "float32")).shape  # (2, 5, 8)
    """

    def __init__(self, clusters, batch_norm=True, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.clusters = clusters
        self.batch_norm = batch_norm
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, input_shape):
        init = keras.initializers.RandomNormal(stddev=input_shape[-1] ** -0.5)
        self.assign = keras.layers.Dense(self.clusters, use_bias=not self.batch_norm,
                                         kernel_initializer=init, name="assign",
                                         dtype=self.dtype_policy)
        self.assign.build(input_shape)
        self.norm = None
        if self.batch_norm:
            self.norm = keras.layers.BatchNormalization(
                momentum=self.momentum, epsilon=self.epsilon, name="norm",
                dtype=self.dtype_policy)
            self.norm.build((*input_shape[:-1], self.clusters))

    def soft_assign(self, inputs, mask=None, training=None):
        """(batch, frames, clusters) assignments, 0 on padded frames."""
        logits = self.assign(inputs)
        if self.norm is not None:
            logits = self.norm(logits, training=training, mask=mask)
        return ops.softmax(logits, axis=-1) * frame_mask(mask, inputs)

    def call(self, inputs, mask=None, training=None):
        return self.soft_assign(inputs, mask, training)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.clusters)

    def get_config(self):
        return super().get_config() | {"clusters": self.clusters, "batch_norm": self.batch_norm,
                                       "momentum": self.momentum, "epsilon": self.epsilon}
