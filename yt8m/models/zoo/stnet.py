"""StNet (He et al., AAAI 2019): a ResNet on super-images with temporal modeling, for raw video.

Input: `(batch, T, S, S, 3N)`: T segments per clip, each the N consecutive RGB frames of the
segment stacked along the channel axis (frame-major: frame 0's RGB, then frame 1's, ...). The
ResNet sees every segment as one image; temporal blocks after res3 and res4 mix neighbouring
segments; a temporal Xception block follows the global pooling; the clip's prediction is the max
over segments, then a softmax classifier.

`paper`: ResNet-50 (bottleneck blocks [3, 4, 6, 3], stride on the 3x3 convolution, no conv
biases, as Paddle's and torchvision's), T = 7, N = 5, 224 x 224, 400 classes: 33,158,608 trainable
parameters (BatchNorm moving statistics excluded), the reference's estimate of about 33.16 M.
`demo`: a narrow 4-stage ResNet of basic blocks on 56 x 56 crops for two CPU cores.
"""

import keras
from keras import ops

from ..layers import TemporalBlock, TemporalXception

# `block_depths` per ResNet depth (bottleneck blocks)
RESNET_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


@keras.saving.register_keras_serializable(package="yt8m")
class SegmentsAsImages(keras.layers.Layer):
    """`(batch, T, h, w, c)` clips -> `(batch * T, h, w, c)` images, and back (`inverse`:
    `(batch * T, features)` -> `(batch, T, features)`)."""

    def __init__(self, segments, inverse=False, **kwargs):
        super().__init__(**kwargs)
        self.segments = segments
        self.inverse = inverse

    def call(self, inputs):
        shape = ops.shape(inputs)
        if self.inverse:
            return ops.reshape(inputs, (-1, self.segments, shape[-1]))
        return ops.reshape(inputs, (-1, shape[2], shape[3], shape[4]))

    def compute_output_shape(self, input_shape):
        if self.inverse:
            return (None, self.segments, input_shape[-1])
        return (None, *input_shape[2:])

    def get_config(self):
        return super().get_config() | {"segments": self.segments, "inverse": self.inverse}


def _conv_bn(x, filters, kernel, stride, name, bn, l2, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=f"{name}_conv",
                            kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn", **bn)(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _block(x, width, stride, name, bn, l2, bottleneck):
    """A ResNet block: bottleneck (1x1, 3x3 with the stride, 1x1 x4) or basic (3x3, 3x3), with a
    projection shortcut when the shape changes; ReLU after the residual sum."""
    out_width = width * 4 if bottleneck else width
    if bottleneck:
        y = _conv_bn(x, width, 1, 1, f"{name}_a", bn, l2)
        y = _conv_bn(y, width, 3, stride, f"{name}_b", bn, l2)
        y = _conv_bn(y, out_width, 1, 1, f"{name}_c", bn, l2, relu=False)
    else:
        y = _conv_bn(x, width, 3, stride, f"{name}_a", bn, l2)
        y = _conv_bn(y, width, 3, 1, f"{name}_b", bn, l2, relu=False)
    if stride != 1 or x.shape[-1] != out_width:
        x = _conv_bn(x, out_width, 1, stride, f"{name}_shortcut", bn, l2, relu=False)
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([x, y]))


def build_stnet(num_classes=400, segments=7, segment_length=5, image_size=224, depth=50,
                block_depths=None, widths=(64, 128, 256, 512), bottleneck=True, stem_width=64,
                xception_units=1024, temporal_modeling=True, l2=5e-5, momentum=0.9,
                epsilon=1e-5):
    """StNet. `temporal_modeling=False` drops the temporal blocks and the Xception block and
    averages the segments' logits instead: with `segment_length=1` that is the frame-averaging
    baseline (no motion information at all).

    `l2`: on every conv and dense kernel (Keras' L2 adds `l2 * w^2`, so 5e-5 equals Paddle's
    L2Decay(1e-4), whose gradient term is `1e-4 * w`).
    """
    bn = dict(momentum=momentum, epsilon=epsilon)
    reg = keras.regularizers.L2(l2) if l2 else None
    block_depths = block_depths or RESNET_DEPTHS[depth]
    clips = keras.Input((segments, image_size, image_size, 3 * segment_length), name="clips")
    x = SegmentsAsImages(segments, name="segments_as_images")(clips)
    x = _conv_bn(x, stem_width, 7, 2, "stem", bn, l2)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (count, width) in enumerate(zip(block_depths, widths, strict=True), start=2):
        for i in range(count):
            stride = 2 if i == 0 and stage > 2 else 1
            x = _block(x, width, stride, f"res{stage}_{i}", bn, l2, bottleneck)
        if temporal_modeling and stage in (3, 4):
            x = TemporalBlock(segments, momentum, epsilon, name=f"temporal{stage}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = SegmentsAsImages(segments, inverse=True, name="images_as_segments")(x)
    classifier = keras.layers.Dense(num_classes, kernel_regularizer=reg, name="logits",
                                    dtype="float32",
                                    kernel_initializer=keras.initializers.RandomUniform(
                                        -x.shape[-1] ** -0.5, x.shape[-1] ** -0.5))
    if temporal_modeling:
        x = TemporalXception(xception_units, momentum, epsilon, name="xception")(x)
        logits = classifier(keras.layers.GlobalMaxPooling1D(name="max_over_segments")(x))
    else:
        logits = keras.layers.GlobalAveragePooling1D(name="mean_over_segments", dtype="float32")(
            keras.layers.TimeDistributed(classifier, name="segment_logits")(x))
    return keras.Model(clips, logits, name="stnet" if temporal_modeling else "frame_average")


PRESETS = {
    "paper": {},
    "demo": dict(segments=4, segment_length=3, image_size=56, block_depths=(1, 1, 1, 1),
                 widths=(8, 16, 32, 64), bottleneck=False, stem_width=8, xception_units=64),
}

# The reference's training (PaddleVideo configs/stnet.yaml): SGD with momentum, lr x0.1 at 1/3
# and 2/3 of the epochs; frames scaled to 341 x 256 (a fixed 4:3, whatever the video's aspect;
# leave `long_side` out to keep it); test on 25 segments of a 256 centre crop. `test_crop` and
# `test_segments` default to `short_side` and the training segments.
TRAINING = {
    "paper": dict(epochs=60, batch_size=128, learning_rate=0.01, lr_decay=0.1, momentum=0.9,
                  short_side=256, long_side=341, test_segments=25, test_crop=256, test_clips=1,
                  eval_batch_size=4, workers=8, use_multiprocessing=False,
                  skip_bad_videos=False, cache_frames=False),
    "demo": dict(epochs=40, batch_size=16, learning_rate=0.02, lr_decay=0.1, momentum=0.9,
                 short_side=64, test_clips=2, eval_batch_size=16, workers=2,
                 use_multiprocessing=False, skip_bad_videos=False, cache_frames=True),
}


MODELS = {
    "stnet": dict(builder=build_stnet, presets=PRESETS, training=TRAINING, level="clips",
                  reference="PaddleVideo StNet; He et al. 2019"),
}
