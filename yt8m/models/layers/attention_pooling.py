"""AttentionPooling: a learned, masked softmax over time, then a weighted sum of the steps."""

import keras
from keras import ops

from .masking import frame_mask, masked_softmax


@keras.saving.register_keras_serializable(package="yt8m")
class AttentionPooling(keras.layers.Layer):
    """`sum_t softmax_t(w . h_t + b) h_t`, the attention pooling of Attention LSTM, with padded
    steps given zero weight.

    Call arguments:
        inputs: (batch, frames, features).
        mask: (batch, frames) bool, True for real frames.

    Example:
        >>> AttentionPooling()(np.ones((2, 5, 8), "float32")).shape  # (2, 8)
    """

    def build(self, input_shape):
        self.score = keras.layers.Dense(1, name="score", dtype=self.dtype_policy)
        self.score.build(input_shape)

    def call(self, inputs, mask=None):
        weights = masked_softmax(self.score(inputs), frame_mask(mask, inputs), axis=1)
        return ops.sum(weights * inputs, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
