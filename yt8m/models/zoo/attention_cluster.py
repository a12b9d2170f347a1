"""Attention Cluster (Long et al. 2018; PaddleVideo `attention_cluster`)."""

import keras

from ..layers import ShiftingAttention
from .common import DEMO_TRAINING, classifier, frame_inputs


def build(num_classes=3862, units=32, audio_units=None, hidden=(1024, 4096), dropout=0.5):
    """Shifting attention units on rgb and audio, concatenated, dropout, two tanh FCs and a
    logistic classifier. Paddle samples 100 frames, one from each of 100 equal segments (the
    training spec's `num_frames: 100`, `sampling: segments`); no BatchNorm anywhere."""
    inputs, rgb, audio, mask = frame_inputs()
    video = ShiftingAttention(units, name="video_attention")(rgb, mask=mask)
    sound = ShiftingAttention(audio_units or units, name="audio_attention")(audio, mask=mask)
    x = keras.layers.Concatenate(name="concat")([video, sound])
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    for i, width in enumerate(hidden):
        x = keras.layers.Dense(width, activation="tanh", kernel_initializer="he_normal",
                               name=f"hidden_{i}")(x)
    return keras.Model(inputs, classifier(x, num_classes), name="attention_cluster")


PRESETS = {
    "paper": {},
    "demo": dict(units=8, hidden=(256, 256), dropout=0.3),
}

TRAINING = {
    "paper": dict(optimizer="adam", learning_rate=1e-3, batch_size=2048, epochs=5,
                  num_frames=100, sampling="segments", loss_reduction="sum_over_classes"),
    # Attention Cluster's tanh layers drift at the other demos' learning rate on 3862 classes.
    "demo": dict(DEMO_TRAINING, learning_rate=2e-3, epochs=5),
}

MODELS = {"attention_cluster": dict(builder=build, presets=PRESETS, training=TRAINING,
                      reference="PaddleVideo attention_cluster; Long et al. 2018")}
