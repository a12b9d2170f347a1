"""The starter code's frame-level logistic baseline: the mean of the real frames, then a logistic
classifier."""

import keras

from ..layers import MaskedPooling
from .common import FAST_DEMO_TRAINING, FRAME_TRAINING, classifier, frame_inputs


def build_frame_logistic(num_classes=3862, l2=1e-8):
    """Mean of the real frames' features, then a logistic classifier (`FrameLevelLogisticModel`)."""
    inputs, rgb, audio, mask = frame_inputs()
    x = keras.layers.Concatenate(name="concat")([rgb, audio])
    x = MaskedPooling("mean", name="mean_pool")(x, mask=mask)
    return keras.Model(inputs, classifier(x, num_classes, l2), name="frame_logistic")


MODELS = {
    "frame_logistic": dict(builder=build_frame_logistic, presets={"paper": {}, "demo": {}},
                           training={"paper": FRAME_TRAINING, "demo": FAST_DEMO_TRAINING},
                           reference="starter code FrameLevelLogisticModel"),
}
