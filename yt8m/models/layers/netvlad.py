"""NetVLAD: soft-assignment residual aggregation of frame features (WILLOW's learnable pooling)."""

import keras
from keras import ops

from .soft_assignment import SoftAssignment


def l2_normalize(x, axis):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), 1e-12))


@keras.saving.register_keras_serializable(package="yt8m")
class NetVLAD(SoftAssignment):
    """Soft-assign each frame to K clusters, `a = softmax(BN(x W))`, and sum per cluster the
    residuals to a learnable centre, `v_k = sum_t a_tk (x_t - c_k)`; then L2-normalise each
    cluster's vector (intra-normalisation), flatten and L2-normalise the whole (WILLOW's
    `NetVLAD`). With `residuals=False` the centres are dropped (`v_k = sum_t a_tk x_t`, WILLOW's
    NetRVLAD / "LightVLAD").

    Padded frames get zero assignment, and the assignment BatchNorm's statistics skip them.

    Args:
        clusters: K.
        residuals: subtract learnable centres (NetVLAD) or not (NetRVLAD).
        batch_norm: BatchNorm on the assignment logits instead of a bias (WILLOW default).
        momentum, epsilon: BatchNorm settings.

    Call arguments:
        inputs: (batch, frames, features).
        mask: (batch, frames) bool, True for real frames.
        training: BatchNorm mode.

    Output: (batch, clusters * features), cluster-major.

    Example:
        >>> NetVLAD(8)(np.ones((2, 5, 16), "float32")).shape  # (2, 128)
    """

    def __init__(self, clusters, residuals=True, batch_norm=True, momentum=0.99, epsilon=1e-3,
                 **kwargs):
        super().__init__(clusters, batch_norm, momentum, epsilon, **kwargs)
        self.residuals = residuals

    def build(self, input_shape):
        super().build(input_shape)
        if self.residuals:
            self.centres = self.add_weight(
                shape=(input_shape[-1], self.clusters), name="centres",
                initializer=keras.initializers.RandomNormal(stddev=input_shape[-1] ** -0.5))

    def call(self, inputs, mask=None, training=None):
        assignment = self.soft_assign(inputs, mask, training)  # (B, T, K)
        vlad = ops.einsum("btk,btf->bfk", assignment, inputs)  # (B, F, K)
        if self.residuals:
            mass = ops.sum(assignment, axis=1, keepdims=True)  # (B, 1, K)
            vlad = vlad - mass * ops.cast(self.centres, vlad.dtype)
        vlad = l2_normalize(vlad, axis=1)
        vlad = ops.reshape(ops.transpose(vlad, (0, 2, 1)), (-1, self.clusters * inputs.shape[-1]))
        return l2_normalize(vlad, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.clusters * input_shape[-1])

    def get_config(self):
        return super().get_config() | {"residuals": self.residuals}
