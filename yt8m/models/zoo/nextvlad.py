"""NeXtVLAD (Lin et al. 2018; PaddleVideo `nextvlad`): the 2018 challenge's best single model."""

import keras

from ..layers import ContextGating, NeXtVLAD
from .common import DEMO_TRAINING, classifier, frame_inputs


def build(num_classes=3862, clusters=128, groups=8, expansion=2, audio_clusters=None,
          audio_groups=None, hidden=2048, gating_reduction=8, dropout=0.5, l2=5e-6,
          momentum=0.9, epsilon=1e-5, half_bin=True, reverse_whitening=False):
    """NeXtVLAD on rgb and on audio, dropout, a hidden FC + BatchNorm, SE context gating and a
    logistic classifier.

    Choices where the references differ: PaddleVideo's K and G for audio (the original code
    halves both; set `audio_clusters`/`audio_groups`), Paddle's BatchNorm settings (momentum 0.9,
    epsilon 1e-5), the starter code's dequantization for both modalities (the original drops the
    half-bin offset for rgb: `half_bin=False`), and L2 1e-5 on the classifier expressed as Keras
    `L2(5e-6)` (Keras' penalty has no 1/2). Reverse whitening by the PCA eigenvalues is the
    Dequantize layer's per-channel scale (`reverse_whitening=True`), set from the dataset's
    `eigenvals.npy` named by the training setting `eigenvalues`.
    """
    inputs, rgb, audio, mask = frame_inputs(half_bin=half_bin, channel_scale=reverse_whitening)
    logits = branch(rgb, audio, mask, num_classes, clusters, groups, expansion, audio_clusters,
                    audio_groups, hidden, gating_reduction, dropout, l2, momentum, epsilon)
    return keras.Model(inputs, logits, name="nextvlad")


def branch(rgb, audio, mask, num_classes, clusters, groups, expansion, audio_clusters,
           audio_groups, hidden, gating_reduction, dropout, l2, momentum, epsilon, prefix=""):
    """One NeXtVLAD classifier on dequantized rgb and audio; returns its logits."""
    bn = dict(momentum=momentum, epsilon=epsilon)
    video = NeXtVLAD(clusters, groups, expansion, name=f"{prefix}video_nextvlad", **bn)(
        rgb, mask=mask)
    sound = NeXtVLAD(audio_clusters or clusters, audio_groups or groups, expansion,
                     name=f"{prefix}audio_nextvlad", **bn)(audio, mask=mask)
    video = keras.layers.BatchNormalization(name=f"{prefix}video_norm", **bn)(video)
    sound = keras.layers.BatchNormalization(name=f"{prefix}audio_norm", **bn)(sound)
    x = keras.layers.Concatenate(name=f"{prefix}concat")([video, sound])
    x = keras.layers.Dropout(dropout, name=f"{prefix}dropout")(x)
    x = keras.layers.Dense(hidden, use_bias=False, kernel_initializer="he_normal",
                           name=f"{prefix}hidden")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}hidden_norm", **bn)(x)
    x = ContextGating(reduction=gating_reduction, name=f"{prefix}gating", **bn)(x)
    return classifier(x, num_classes, l2, name=f"{prefix}logits")


PRESETS = {
    "paper": {},
    "demo": dict(clusters=16, groups=4, expansion=1, hidden=128, gating_reduction=4, dropout=0.3),
}

TRAINING = {
    "paper": dict(optimizer="adam", learning_rate=2e-4, decay_rate=0.8,
                  decay_examples=2_000_000, batch_size=160, epochs=6, num_frames=300,
                  sampling="head", loss_reduction="sum_over_classes"),
    "demo": dict(DEMO_TRAINING, batch_size=128, learning_rate=1e-2),
}

MODELS = {"nextvlad": dict(builder=build, presets=PRESETS, training=TRAINING,
                      reference="PaddleVideo nextvlad; Lin et al. 2018")}
