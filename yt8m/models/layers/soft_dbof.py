"""SoftDBoF: a soft bag of frames, the pooled cluster assignments (WILLOW's learnable pooling)."""

import keras
from keras import ops

from .masking import frame_mask
from .netvlad import l2_normalize


@keras.saving.register_keras_serializable(package="yt8m")
class SoftDBoF(keras.layers.Layer):
    """Soft-assign each frame to K clusters, `a = softmax(BN(x W))`, and pool the assignments
    over the frames: their sum, L2-normalised (so the average up to scale), and with `max_pool`
    also their maximum, L2-normalised and concatenated (WILLOW's `SoftDBoF` and its
    `--softdbof_maxpool`).

    Padded frames get zero assignment (and never win the maximum), and the assignment
    BatchNorm's statistics skip them.

    Args:
        clusters: K.
        max_pool: add the max-pooled assignments to the summed ones.
        batch_norm: BatchNorm on the assignment logits instead of a bias (WILLOW default).
        momentum, epsilon: BatchNorm settings.

    Call arguments:
        inputs: (batch, frames, features).
        mask: (batch, frames) bool, True for real frames.
        training: BatchNorm mode.

    Output: (batch, clusters), or (batch, 2 * clusters) with `max_pool`.

    Example:
        >>> SoftDBoF(8, max_pool=True)(np.ones((2, 5, 16), "float32")).shape  # (2, 16)
    """

    def __init__(self, clusters, max_pool=False, batch_norm=True, momentum=0.99, epsilon=1e-3,
                 **kwargs):
        super().__init__(**kwargs)
        self.clusters = clusters
        self.max_pool = max_pool
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

    def call(self, inputs, mask=None, training=None):
        weights = frame_mask(mask, inputs)
        logits = self.assign(inputs)
        if self.norm is not None:
            logits = self.norm(logits, training=training, mask=mask)
        assignment = ops.softmax(logits, axis=-1) * weights  # (B, T, K), 0 on padding
        pooled = l2_normalize(ops.sum(assignment, axis=1), axis=-1)
        if not self.max_pool:
            return pooled
        # assignments are positive on real frames, so the zeros of the padding never win
        peak = l2_normalize(ops.max(assignment, axis=1), axis=-1)
        return ops.concatenate([pooled, peak], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.clusters * (2 if self.max_pool else 1))

    def get_config(self):
        return super().get_config() | {
            "clusters": self.clusters, "max_pool": self.max_pool,
            "batch_norm": self.batch_norm, "momentum": self.momentum, "epsilon": self.epsilon}
