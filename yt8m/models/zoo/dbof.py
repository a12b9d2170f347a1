"""The starter code's deep bag of frames (`DbofModel`)."""

import keras

from ..layers import MaskedPooling, MixtureOfExperts
from .common import DEMO_TRAINING, FRAME_TRAINING, frame_inputs, logits_from_probabilities


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


MODELS = {
    "dbof": dict(builder=build_dbof,
                 presets={"paper": {}, "demo": dict(clusters=256, hidden=256, momentum=0.9)},
                 training={"paper": dict(FRAME_TRAINING, num_frames=30, sampling="random"),
                           "demo": DEMO_TRAINING},
                 reference="starter code DbofModel"),
}
