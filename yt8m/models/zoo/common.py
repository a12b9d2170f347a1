"""Inputs and outputs shared by the model builders."""

import keras
from keras import ops

from ..layers import Dequantize

FEATURE_SIZES = (1024, 128)  # rgb, audio


def frame_inputs(feature_sizes=FEATURE_SIZES, half_bin=True, channel_scale=False):
    """Frame-level inputs (uint8 frames + mask) and their dequantized rgb, audio and mask."""
    width = sum(feature_sizes)
    frames = keras.Input((None, width), dtype="uint8", name="frames")
    mask = keras.Input((None,), dtype="bool", name="mask")
    values = Dequantize(half_bin=half_bin, channel_scale=channel_scale, name="dequantize")(frames)
    rgb = values[..., : feature_sizes[0]]
    audio = values[..., feature_sizes[0] :]
    return {"frames": frames, "mask": mask}, rgb, audio, mask


def video_inputs(feature_sizes=FEATURE_SIZES):
    """Video-level input: the (dequantized) mean rgb + audio features."""
    means = keras.Input((sum(feature_sizes),), dtype="float32", name="means")
    return {"means": means}, means


@keras.saving.register_keras_serializable(package="yt8m")
class ProbabilityLogits(keras.layers.Layer):
    """Probabilities to logits, `log p - log(1 - p)`, p clipped to [1e-7, 1 - 1e-7] (float32),
    so that models ending in a mixture of experts also output logits. With `from_log`, the
    inputs are `log p` and are not clipped near 0 (only `p <= 1 - 1e-7` is kept)."""

    def __init__(self, from_log=False, **kwargs):
        super().__init__(**kwargs)
        self.from_log = from_log

    def call(self, probabilities):
        if self.from_log:
            log_p = ops.minimum(ops.cast(probabilities, "float32"), -1e-7)
            return log_p - ops.log(-ops.expm1(log_p))
        p = ops.clip(ops.cast(probabilities, "float32"), 1e-7, 1.0 - 1e-7)
        return ops.log(p) - ops.log1p(-p)

    def get_config(self):
        return super().get_config() | {"from_log": self.from_log}


def logits_from_probabilities(probabilities, name="logits", from_log=False):
    return ProbabilityLogits(from_log, name=name, dtype="float32")(probabilities)


def classifier(x, num_classes, l2=0.0, name="logits"):
    """The logistic head: a float32 Dense of `num_classes` logits."""
    regularizer = keras.regularizers.L2(l2) if l2 else None
    return keras.layers.Dense(num_classes, kernel_regularizer=regularizer,
                              bias_regularizer=regularizer, name=name, dtype="float32")(x)


# Training defaults of the demo presets: every model over the sample competition's folds in a few
# minutes on two CPU cores (see `yt8m.models.training`); some models override a value.
# mixed_precision "auto": bfloat16 math where the CPU (AVX512-BF16, AMX) or an accelerator does it
# natively, about twice as fast here; float32 elsewhere.
DEMO_TRAINING = dict(optimizer="adam", learning_rate=5e-3, batch_size=64, epochs=3, num_frames=12,
                     mixed_precision="auto",
                     sampling="segments", loss_reduction="sum_over_classes", prior_bias=True)


def willow_frames(rgb, audio, mask, bn=None):
    """WILLOW's frame input: rgb and audio side by side, each frame L2-normalised, then a masked
    BatchNorm (statistics of the real frames only) with the settings `bn`; `bn=None`: none (the
    recurrent references stop at the L2 normalisation)."""
    x = keras.layers.Concatenate(name="frames_concat")([rgb, audio])
    x = keras.layers.UnitNormalization(axis=-1, name="frame_l2")(x)
    if bn is None:
        return x
    return keras.layers.BatchNormalization(name="input_norm", **bn)(x, mask=mask)


def willow_head(x, num_classes, hidden, hidden_stddev, gating=True, dropout=0.0, num_mixtures=2,
                moe_l2=1e-6, probability_gating=True, probability_gating_reduction=None,
                momentum=0.99, epsilon=1e-3):
    """WILLOW's head on a pooled video vector: a hidden FC (with bias; the references' README
    runs train with `--*_relu=False`: no BatchNorm, no ReLU6; `hidden=None`: none, the video-level
    MoE), context gating, dropout (`dropout > 0`, before the classifier), a mixture of experts
    and context gating of its probabilities. Returns the logits."""
    from ..layers import ContextGating, MixtureOfExperts

    bn = dict(momentum=momentum, epsilon=epsilon)
    if hidden is not None:
        init = keras.initializers.RandomNormal(stddev=hidden_stddev)
        x = keras.layers.Dense(hidden, name="hidden", kernel_initializer=init)(x)
    if gating:
        x = ContextGating(name="gating", **bn)(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    p = MixtureOfExperts(num_classes, num_mixtures, moe_l2, name="moe")(x)
    if probability_gating:
        p = ContextGating(probability_gating_reduction, name="probability_gating",
                          dtype="float32", **bn)(p)
    return logits_from_probabilities(p)


# The starter code's train.py defaults for its baselines.
VIDEO_TRAINING = dict(optimizer="adam", learning_rate=1e-2, batch_size=1024, epochs=5,
                      clipnorm=1.0, features="means", loss_reduction="sum_over_classes")
FRAME_TRAINING = dict(optimizer="adam", learning_rate=1e-2, batch_size=1024, epochs=5,
                      clipnorm=1.0, num_frames=300, sampling="head",
                      loss_reduction="sum_over_classes")
# The baselines' heads are 1152 x 3862 weights: larger batches spend less time per example in
# the optimizer's updates.
FAST_DEMO_TRAINING = dict(DEMO_TRAINING, learning_rate=1e-2)
# the video-level models read one mean per video: a fourth epoch costs them seconds
VIDEO_DEMO_TRAINING = dict(FAST_DEMO_TRAINING, features="means", batch_size=128, epochs=4)
