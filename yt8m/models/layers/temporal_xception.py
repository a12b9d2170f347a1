"""TemporalXception: StNet's separable temporal convolutions over the segment features."""

import keras


@keras.saving.register_keras_serializable(package="yt8m")
class TemporalXception(keras.layers.Layer):
    """StNet's temporal Xception block on per-segment features `(batch, segments, channels)`:

        x0 = BN(x)
        main = pointwise(depthwise(relu(BN(pointwise(depthwise(x0))))))   (kernel 3 over time)
        out = relu(BN(main + pointwise_shortcut(x0)))

    Args:
        units: output channels (1024 in StNet).
        momentum, epsilon: BatchNorm settings (Paddle: 0.9, 1e-5).

    Call arguments:
        inputs: (batch, segments, channels).
        training: BatchNorm mode.

    Example:
        >>> TemporalXception(32)(np.ones((2, 7, 64), "float32")).shape  # (2, 7, 32)
    """

    def __init__(self, units, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        bn = dict(momentum=self.momentum, epsilon=self.epsilon, dtype=self.dtype_policy)
        conv = dict(kernel_initializer="he_normal", dtype=self.dtype_policy)
        self.input_norm = keras.layers.BatchNormalization(name="input_norm", **bn)
        self.depthwise1 = keras.layers.DepthwiseConv1D(3, padding="same", name="depthwise1",
                                                       depthwise_initializer="he_normal",
                                                       dtype=self.dtype_policy)
        self.pointwise1 = keras.layers.Conv1D(self.units, 1, name="pointwise1", **conv)
        self.middle_norm = keras.layers.BatchNormalization(name="middle_norm", **bn)
        self.depthwise2 = keras.layers.DepthwiseConv1D(3, padding="same", name="depthwise2",
                                                       depthwise_initializer="he_normal",
                                                       dtype=self.dtype_policy)
        self.pointwise2 = keras.layers.Conv1D(self.units, 1, name="pointwise2", **conv)
        self.shortcut = keras.layers.Conv1D(self.units, 1, name="shortcut", **conv)
        self.output_norm = keras.layers.BatchNormalization(name="output_norm", **bn)
        out_shape = (*input_shape[:-1], self.units)
        for layer, shape in ((self.input_norm, input_shape), (self.depthwise1, input_shape),
                             (self.pointwise1, input_shape), (self.middle_norm, out_shape),
                             (self.depthwise2, out_shape), (self.pointwise2, out_shape),
                             (self.shortcut, (*input_shape[:-1], channels)),
                             (self.output_norm, out_shape)):
            layer.build(shape)

    def call(self, inputs, training=None):
        x0 = self.input_norm(inputs, training=training)
        main = self.pointwise1(self.depthwise1(x0))
        main = keras.activations.relu(self.middle_norm(main, training=training))
        main = self.pointwise2(self.depthwise2(main))
        out = self.output_norm(main + self.shortcut(x0), training=training)
        return keras.activations.relu(out)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return super().get_config() | {"units": self.units, "momentum": self.momentum,
                                       "epsilon": self.epsilon}
