"""ShiftingAttention: Attention Cluster's multiple attention units with shifting operations."""

import math

import keras
from keras import ops

from .masking import frame_mask, masked_softmax
from .netvlad import l2_normalize


@keras.saving.register_keras_serializable(package="yt8m")
class ShiftingAttention(keras.layers.Layer):
    """C attention units over time (Long et al. 2018, PaddleVideo `ShiftingAttentionModel`):
    unit i pools `v_i = sum_t softmax_t(x_t w_i + b_i) x_t`, shifts it with its own learnable
    scalars, `s_i = alpha_i v_i + beta_i`, and L2-normalises it divided by sqrt(C); the C
    outputs are concatenated.

    Args:
        units: C, the number of attention units.

    Call arguments:
        inputs: (batch, frames, features).
        mask: (batch, frames) bool, True for real frames (padded frames get zero attention).

    Output: (batch, units * features), unit-major.

    Example:
        >>> ShiftingAttention(4)(np.ones((2, 5, 8), "float32")).shape  # (2, 32)
    """

    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        he = keras.initializers.HeNormal()
        self.score = keras.layers.Dense(self.units, kernel_initializer=he, name="score",
                                        dtype=self.dtype_policy)
        self.score.build(input_shape)
        shift = keras.initializers.RandomNormal(stddev=self.units ** -0.25)
        self.alpha = self.add_weight(shape=(self.units,), initializer=shift, name="alpha")
        self.beta = self.add_weight(shape=(self.units,), initializer=shift, name="beta")

    def call(self, inputs, mask=None):
        attention = masked_softmax(self.score(inputs), frame_mask(mask, inputs), axis=1)
        pooled = ops.einsum("btc,btf->bcf", attention, inputs)  # (B, C, F)
        alpha = ops.cast(self.alpha, pooled.dtype)[None, :, None]
        beta = ops.cast(self.beta, pooled.dtype)[None, :, None]
        shifted = l2_normalize(alpha * pooled + beta, axis=-1) / math.sqrt(self.units)
        return ops.reshape(shifted, (-1, self.units * inputs.shape[-1]))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units * input_shape[-1])

    def get_config(self):
        return super().get_config() | {"units": self.units}
