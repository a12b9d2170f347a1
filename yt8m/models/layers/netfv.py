"""NetFV: learnable Fisher vectors of frame features (WILLOW's learnable pooling)."""

import keras
from keras import ops

from .netvlad import l2_normalize
from .soft_assignment import SoftAssignment


@keras.saving.register_keras_serializable(package="yt8m")
class NetFV(SoftAssignment):
    """Soft-assign each frame to K clusters, `a = softmax(BN(x W))`, and pool per cluster the
    first- and second-order statistics of a Gaussian mixture with learnable means `c_k` and
    diagonal deviations `s_k = w_k^2 + 1e-6` (WILLOW's `NetFV`):

        fv1_k = sum_t a_tk (x_t - c_k) / s_k
        fv2_k = sum_t a_tk (x_t - c_k)^2 / s_k^2 - sum_t a_tk

    `fv1` is L2-normalised per cluster and then as a whole; `fv2` as a whole (as the reference
    does). The output is `[fv1, fv2]`, each flattened feature-major (index `f * K + k`, the
    reference's order). With `couple_weights`, the means are not free weights but
    `coupling_factor` times the assignment kernel (the reference's `--fv_couple_weights`, on
    by default there; its README trains with it off).

    Padded frames get zero assignment, and the assignment BatchNorm's statistics skip them.

    Args:
        clusters: K.
        couple_weights: tie the means to the assignment kernel instead of learning them.
        coupling_factor: the tie's scale.
        batch_norm: BatchNorm on the assignment logits instead of a bias (WILLOW default).
        momentum, epsilon: BatchNorm settings.

    Call arguments:
        inputs: (batch, frames, features).
        mask: (batch, frames) bool, True for real frames.
        training: BatchNorm mode.

    Output: (batch, 2 * clusters * features).

    Example:
        >>> NetFV(8)(np.ones((2, 5, 16), "float32")).shape  # (2, 256)
    """

    def __init__(self, clusters, couple_weights=False, coupling_factor=0.01, batch_norm=True,
                 momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(clusters, batch_norm, momentum, epsilon, **kwargs)
        self.couple_weights = couple_weights
        self.coupling_factor = coupling_factor

    def build(self, input_shape):
        super().build(input_shape)
        features = input_shape[-1]
        scale = features ** -0.5
        self.deviations = self.add_weight(
            shape=(features, self.clusters), name="deviations",
            initializer=keras.initializers.RandomNormal(mean=1.0, stddev=scale))
        self.centres = None
        if not self.couple_weights:
            self.centres = self.add_weight(shape=(features, self.clusters), name="centres",
                                           initializer=keras.initializers.RandomNormal(
                                               stddev=scale))

    def call(self, inputs, mask=None, training=None):
        assignment = self.soft_assign(inputs, mask, training)  # (B, T, K)
        mass = ops.sum(assignment, axis=1, keepdims=True)  # (B, 1, K)
        centres = (self.coupling_factor * self.assign.kernel if self.couple_weights
                   else self.centres)
        centres = ops.cast(centres, inputs.dtype)  # (F, K)
        deviations = ops.cast(ops.square(self.deviations) + 1e-6, inputs.dtype)
        first = ops.einsum("btk,btf->bfk", assignment, inputs)  # sum_t a x
        second = ops.einsum("btk,btf->bfk", assignment, ops.square(inputs))  # sum_t a x^2
        # sum_t a (x - c)^2 = sum a x^2 - 2 c sum a x + c^2 sum a
        second = second - 2.0 * centres * first + ops.square(centres) * mass
        second = second / ops.square(deviations) - mass
        first = (first - centres * mass) / deviations
        first = l2_normalize(first, axis=1)
        width = self.clusters * inputs.shape[-1]
        first = l2_normalize(ops.reshape(first, (-1, width)), axis=-1)
        second = l2_normalize(ops.reshape(second, (-1, width)), axis=-1)
        return ops.concatenate([first, second], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * self.clusters * input_shape[-1])

    def get_config(self):
        return super().get_config() | {"couple_weights": self.couple_weights,
                                       "coupling_factor": self.coupling_factor}
