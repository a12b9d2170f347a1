"""Gated NetVLAD with a mixture of experts (WILLOW `NetVLADModelLF`, 2017 winner)."""

import keras

from ..layers import ContextGating, MixtureOfExperts, NetVLAD
from .common import DEMO_TRAINING, frame_inputs, logits_from_probabilities


def build(num_classes=3862, clusters=256, audio_clusters=None, hidden=1024, num_mixtures=2,
          moe_l2=1e-6, probability_gating=True, probability_gating_reduction=None,
          momentum=0.99, epsilon=1e-3):
    """Each frame L2-normalised, input BatchNorm, NetVLAD (K) on rgb and NetVLAD (K/2) on audio,
    hidden FC (with bias, no BatchNorm or ReLU: `--netvlad_relu=False`), context gating, a
    mixture of `num_mixtures` experts, and context gating of the output probabilities
    (`--moe_prob_gating`). Returns logits of the gated probabilities. BatchNorm uses Keras'
    momentum 0.99 (TF-slim used 0.999). `probability_gating_reduction=r` swaps the full
    classes x classes gate for a classes/r bottleneck (the demo preset: 15M weights fewer)."""
    inputs, rgb, audio, mask = frame_inputs()
    bn = dict(momentum=momentum, epsilon=epsilon)
    x = keras.layers.Concatenate(name="frames_concat")([rgb, audio])
    x = keras.layers.UnitNormalization(axis=-1, name="frame_l2")(x)
    x = keras.layers.BatchNormalization(name="input_norm", **bn)(x, mask=mask)
    video = NetVLAD(clusters, name="video_netvlad", **bn)(x[..., :1024], mask=mask)
    sound = NetVLAD(audio_clusters or clusters // 2, name="audio_netvlad", **bn)(
        x[..., 1024:], mask=mask)
    x = keras.layers.Concatenate(name="concat")([video, sound])
    x = keras.layers.Dense(hidden, name="hidden",
                           kernel_initializer=keras.initializers.RandomNormal(
                               stddev=clusters ** -0.5))(x)
    x = ContextGating(name="gating", **bn)(x)
    p = MixtureOfExperts(num_classes, num_mixtures, moe_l2, name="moe")(x)
    if probability_gating:
        p = ContextGating(probability_gating_reduction, name="probability_gating",
                          dtype="float32", **bn)(p)
    return keras.Model(inputs, logits_from_probabilities(p), name="gated_netvlad")


PRESETS = {
    "paper": {},
    "demo": dict(clusters=16, hidden=128, probability_gating_reduction=16, momentum=0.9),
}

TRAINING = {
    "paper": dict(optimizer="adam", learning_rate=2e-4, decay_rate=0.8,
                  decay_examples=4_000_000, batch_size=80, epochs=5, clipnorm=1.0,
                  num_frames=300, sampling="random", loss_reduction="sum_over_classes"),
    "demo": dict(DEMO_TRAINING, mixed_precision="float32"),  # bfloat16 is no faster here
}

MODELS = {"gated_netvlad": dict(builder=build, presets=PRESETS, training=TRAINING,
                      reference="WILLOW NetVLADModelLF; Miech et al. 2017")}
