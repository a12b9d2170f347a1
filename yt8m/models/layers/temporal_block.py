"""TemporalBlock: StNet's temporal modeling block between the ResNet stages."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="yt8m")
class TemporalBlock(keras.layers.Layer):
    """`x + BN(relu(Conv3D(x)))` over the segment axis: a (3, 1, 1) convolution mixes each
    position's features across neighbouring segments (StNet, after res3 and res4).

    The input holds every segment of every clip as one image batch, `(batch * segments, h, w, c)`
    (the layout of the 2-D backbone around it); the block regroups the segments, convolves over
    them and returns the same layout.

    Args:
        segments: T, the segments per clip.
        momentum, epsilon: BatchNorm settings (Paddle: 0.9, 1e-5).

    Call arguments:
        inputs: (batch * segments, h, w, channels).
        training: BatchNorm mode.

    Example:
        >>> TemporalBlock(segments=4)(np.ones((8, 7, 7, 16), "float32")).shape  # (8, 7, 7, 16)
    """

    def __init__(self, segments, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.segments = segments
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, input_shape):
        _, h, w, c = input_shape
        clip_shape = (None, self.segments, h, w, c)
        self.conv = keras.layers.Conv3D(c, (3, 1, 1), padding="same", name="conv",
                                        kernel_initializer="he_normal", dtype=self.dtype_policy)
        self.conv.build(clip_shape)
        self.norm = keras.layers.BatchNormalization(momentum=self.momentum, epsilon=self.epsilon,
                                                    name="norm", dtype=self.dtype_policy)
        self.norm.build(clip_shape)

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        clips = ops.reshape(inputs, (-1, self.segments, shape[1], shape[2], shape[3]))
        out = clips + self.norm(ops.relu(self.conv(clips)), training=training)
        return ops.reshape(out, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {"segments": self.segments, "momentum": self.momentum,
                                       "epsilon": self.epsilon}
