"""Mean or max pooling over the real frames."""

import keras
from keras import ops

from .masking import masked_mean


@keras.saving.register_keras_serializable(package="yt8m")
class MaskedPooling(keras.layers.Layer):
    """Mean or max over the real frames (axis 1)."""

    def __init__(self, method="mean", **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def call(self, inputs, mask=None):
        if self.method == "mean":
            return masked_mean(inputs, mask)
        keep = ops.expand_dims(ops.cast(mask, "bool"), -1)
        return ops.max(ops.where(keep, inputs, ops.full_like(inputs, -1e9)), axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return super().get_config() | {"method": self.method}
