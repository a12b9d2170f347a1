"""SoftDBoF: a soft bag of frames, the pooled cluster assignments (WILLOW's learnable pooling)."""

import keras
from keras import ops

from .netvlad import l2_normalize
from .soft_assignment import SoftAssignment


@keras.saving.register_keras_serializable(package="yt8m")
class SoftDBoF(SoftAssignment):
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
        super().__init__(clusters, batch_norm, momentum, epsilon, **kwargs)
        self.max_pool = max_pool

    def call(self, inputs, mask=None, training=None):
        assignment = self.soft_assign(inputs, mask, training)  # (B, T, K), 0 on padding
        pooled = l2_normalize(ops.sum(assignment, axis=1), axis=-1)
        if not self.max_pool:
            return pooled
        # assignments are positive on real frames, so the zeros of the padding never win
        peak = l2_normalize(ops.max(assignment, axis=1), axis=-1)
        return ops.concatenate([pooled, peak], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.clusters * (2 if self.max_pool else 1))

    def get_config(self):
        return super().get_config() | {"max_pool": self.max_pool}
