"""Gated NetVLAD with a mixture of experts (WILLOW `NetVLADModelLF`, 2017 winner)."""

import keras

from ..layers import NetVLAD
from .common import DEMO_TRAINING, frame_inputs, willow_frames, willow_head


def build(num_classes=3862, clusters=256, audio_clusters=None, hidden=1024, num_mixtures=2,
          moe_l2=1e-6, probability_gating=True, probability_gating_reduction=None,
          lightvlad=False, dropout=0.0, momentum=0.99, epsilon=1e-3):
    """Each frame L2-normalised, input BatchNorm, NetVLAD (K) on rgb and NetVLAD (K/2) on audio,
    hidden FC (with bias, no BatchNorm or ReLU: `--netvlad_relu=False`), context gating, a
    mixture of `num_mixtures` experts, and context gating of the output probabilities
    (`--moe_prob_gating`). Returns logits of the gated probabilities. BatchNorm uses Keras'
    momentum 0.99 (TF-slim used 0.999). `probability_gating_reduction=r` swaps the full
    classes x classes gate for a classes/r bottleneck (the demo preset: 15M weights fewer).
    `lightvlad=True` pools with NetRVLAD, NetVLAD without the centres (`--lightvlad`; the
    `gated_netrvlad` model). `dropout > 0` drops the gated hidden units before the mixture (the
    learnable-pooling write-up's dropout; the reference code has none, so 0 by default)."""
    inputs, rgb, audio, mask = frame_inputs()
    bn = dict(momentum=momentum, epsilon=epsilon)
    x = willow_frames(rgb, audio, mask, bn)
    vlad = dict(residuals=not lightvlad, **bn)
    video = NetVLAD(clusters, name="video_netvlad", **vlad)(x[..., :1024], mask=mask)
    sound = NetVLAD(audio_clusters or clusters // 2, name="audio_netvlad", **vlad)(
        x[..., 1024:], mask=mask)
    x = keras.layers.Concatenate(name="concat")([video, sound])
    logits = willow_head(x, num_classes, hidden, clusters ** -0.5, dropout=dropout,
                         num_mixtures=num_mixtures, moe_l2=moe_l2,
                         probability_gating=probability_gating,
                         probability_gating_reduction=probability_gating_reduction, **bn)
    return keras.Model(inputs, logits, name="gated_netrvlad" if lightvlad else "gated_netvlad")


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
