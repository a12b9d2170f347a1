"""The starter code's baselines: frame-level logistic and DBoF; video-level logistic and MoE."""

import keras
from keras import ops

from ..layers import MixtureOfExperts, masked_mean
from .common import (
    DEMO_TRAINING,
    classifier,
    frame_inputs,
    logits_from_probabilities,
    video_inputs,
    willow_head,
)


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


def build_frame_logistic(num_classes=3862, l2=1e-8):
    """Mean of the real frames' features, then a logistic classifier (`FrameLevelLogisticModel`)."""
    inputs, rgb, audio, mask = frame_inputs()
    x = keras.layers.Concatenate(name="concat")([rgb, audio])
    x = MaskedPooling("mean", name="mean_pool")(x, mask=mask)
    return keras.Model(inputs, classifier(x, num_classes, l2), name="frame_logistic")


def build_dbof(num_classes=3862, clusters=8192, hidden=1024, pooling="max", num_mixtures=2,
               moe_l2=1e-8, dropout=0.0, momentum=0.99, epsilon=1e-3):
    """Deep bag of frames (`DbofModel`): input BatchNorm, a wide cluster FC + BatchNorm + ReLU6
    per frame, max (or mean) pooling over the real frames, a hidden FC + BatchNorm + ReLU6 and a
    mixture of experts. The starter code samples 30 random frames per video (training spec).
    `dropout > 0` drops hidden units before the mixture (the reference has none: 0 by
    default)."""
    inputs, rgb, audio, mask = frame_inputs()
    bn = dict(momentum=momentum, epsilon=epsilon)
    x = keras.layers.Concatenate(name="concat")([rgb, audio])
    x = keras.layers.BatchNormalization(name="input_norm", **bn)(x, mask=mask)
    x = keras.layers.Dense(clusters, use_bias=False, name="clusters")(x)
    x = keras.layers.BatchNormalization(name="cluster_norm", **bn)(x, mask=mask)
    x = keras.layers.Activation("relu6", name="cluster_relu6")(x)
    x = MaskedPooling(pooling, name="pool")(x, mask=mask)
    x = keras.layers.Dense(hidden, use_bias=False, name="hidden")(x)
    x = keras.layers.BatchNormalization(name="hidden_norm", **bn)(x)
    x = keras.layers.Activation("relu6", name="hidden_relu6")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    p = MixtureOfExperts(num_classes, num_mixtures, moe_l2, name="moe")(x)
    return keras.Model(inputs, logits_from_probabilities(p), name="dbof")


def build_video_logistic(num_classes=3862, l2=1e-8):
    """Logistic regression on the video-level mean rgb + audio (`LogisticModel`)."""
    inputs, x = video_inputs()
    return keras.Model(inputs, classifier(x, num_classes, l2), name="video_logistic")


def build_video_moe(num_classes=3862, num_mixtures=2, moe_l2=1e-6, input_gating=True,
                    probability_gating=True, probability_gating_reduction=None, dropout=0.0,
                    momentum=0.99, epsilon=1e-3):
    """WILLOW's video-level model: context gating on the input, a mixture of experts, and context
    gating of the output probabilities (`probability_gating_reduction`: see gated NetVLAD).
    `dropout > 0` drops the (gated) input units before the mixture (0 by default, as the
    reference)."""
    inputs, x = video_inputs()
    logits = willow_head(x, num_classes, None, None, gating=input_gating, dropout=dropout,
                         num_mixtures=num_mixtures, moe_l2=moe_l2,
                         probability_gating=probability_gating,
                         probability_gating_reduction=probability_gating_reduction,
                         momentum=momentum, epsilon=epsilon)
    return keras.Model(inputs, logits, name="video_moe")


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

MODELS = {
    "dbof": dict(builder=build_dbof,
                 presets={"paper": {}, "demo": dict(clusters=256, hidden=256, momentum=0.9)},
                 training={"paper": dict(FRAME_TRAINING, num_frames=30, sampling="random"),
                           "demo": DEMO_TRAINING},
                 reference="starter code DbofModel"),
    "frame_logistic": dict(builder=build_frame_logistic, presets={"paper": {}, "demo": {}},
                           training={"paper": FRAME_TRAINING, "demo": FAST_DEMO_TRAINING},
                           reference="starter code FrameLevelLogisticModel"),
    "video_logistic": dict(builder=build_video_logistic, presets={"paper": {}, "demo": {}},
                           training={"paper": VIDEO_TRAINING, "demo": VIDEO_DEMO_TRAINING},
                           level="video", reference="starter code LogisticModel"),
    "video_moe": dict(builder=build_video_moe,
                      presets={"paper": {}, "demo": dict(momentum=0.9, moe_l2=1e-4,
                                                         input_gating=False, num_mixtures=1,
                                                         probability_gating_reduction=16)},
                      training={"paper": VIDEO_TRAINING, "demo": VIDEO_DEMO_TRAINING},
                      level="video", reference="WILLOW video-level MoE + context gating"),
}
