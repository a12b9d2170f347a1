"""Dequantize: uint8 frame features in, floats out, on the device."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="yt8m")
class Dequantize(keras.layers.Layer):
    """Maps the dataset's 8-bit features back to floats, `q * 4/255 + 4/512 - 2`, as the
    starter code's `Dequantize` does (bytes 0 and 255 become -1.9921875 and 2.0078125).

    Doing this on the accelerator keeps the input pipeline at one byte per value. An optional,
    non-trainable per-channel scale (e.g. NeXtVLAD's reverse whitening by the square roots of the
    PCA eigenvalues) is applied after dequantization; it starts at ones.

    Args:
        max_value: top of the quantization range (2.0 in the dataset).
        min_value: bottom of the quantization range (-2.0).
        half_bin: add the half-bin offset `(max - min) / 512` (True in the starter code; NeXtVLAD
            drops it for rgb).
        channel_scale: keep a per-channel scale weight (set it with `set_weights`).

    Call arguments:
        inputs: uint8 (or integer-valued float) tensor, any shape; the last axis is channels.

    Example:
        >>> Dequantize()(np.array([[0, 255]], np.uint8))  # [[-1.9921875, 2.0078125]]
    """

    def __init__(self, max_value=2.0, min_value=-2.0, half_bin=True, channel_scale=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.max_value = max_value
        self.min_value = min_value
        self.half_bin = half_bin
        self.channel_scale = channel_scale

    def build(self, input_shape):
        if self.channel_scale:
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                         trainable=False, name="scale")

    def call(self, inputs):
        span = self.max_value - self.min_value
        bias = self.min_value + (span / 512.0 if self.half_bin else 0.0)
        outputs = ops.cast(inputs, self.compute_dtype) * (span / 255.0) + bias
        if self.channel_scale:
            outputs = outputs * ops.cast(self.scale, self.compute_dtype)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {
            "max_value": self.max_value, "min_value": self.min_value, "half_bin": self.half_bin,
            "channel_scale": self.channel_scale}
