"""Soft deep bag of frames with a mixture of experts (WILLOW `SoftDbofModelLF`)."""

import keras

from ..layers import SoftDBoF
from .common import DEMO_TRAINING, frame_inputs, willow_frames, willow_head


def build(num_classes=3862, clusters=8000, audio_clusters=None, hidden=1024, max_pool=False,
          gating=False, num_mixtures=2, moe_l2=1e-8, probability_gating=False,
          probability_gating_reduction=None, dropout=0.0, momentum=0.99, epsilon=1e-3):
    """Each frame L2-normalised, input BatchNorm, SoftDBoF (K) on rgb and SoftDBoF (K/8) on
    audio (the summed soft assignments, L2-normalised; with `max_pool` also their maximum,
    `--softdbof_maxpool`), hidden FC (with bias, no BatchNorm or ReLU: `--dbof_relu=False`) and
    a mixture of experts, as the reference's README trains it (`moe_l2` at the flag default
    1e-8, no probability gating). `gating` adds the context gating of the learnable-pooling
    write-up after the hidden FC (the reference's `SoftDbofModelLF` has none; the demo preset
    turns it on), `probability_gating` the gate on the output probabilities; `dropout`: see
    gated NetVLAD."""
    inputs, rgb, audio, mask = frame_inputs()
    bn = dict(momentum=momentum, epsilon=epsilon)
    pool = dict(max_pool=max_pool, **bn)
    x = willow_frames(rgb, audio, mask, bn)
    video = SoftDBoF(clusters, name="video_soft_dbof", **pool)(x[..., :1024], mask=mask)
    sound = SoftDBoF(audio_clusters or clusters // 8, name="audio_soft_dbof", **pool)(
        x[..., 1024:], mask=mask)
    x = keras.layers.Concatenate(name="concat")([video, sound])
    logits = willow_head(x, num_classes, hidden, clusters ** -0.5, gating=gating,
                         dropout=dropout, num_mixtures=num_mixtures, moe_l2=moe_l2,
                         probability_gating=probability_gating,
                         probability_gating_reduction=probability_gating_reduction, **bn)
    return keras.Model(inputs, logits, name="soft_dbof")


PRESETS = {
    "paper": {},
    # Few clusters learn faster on the sample (OOF GAP@20 of the quality test: 16 clusters
    # 0.480, 64 0.467, 256 0.439, 1024 0.293); the max-pooled assignments catch the key frames.
    # The audio needs more than the reference's K/8 = 4 of them: a third of the sample's classes
    # show mainly in the audio (quality test: 4 audio clusters 0.497, 16 0.603; the mean-pooled
    # logistic baseline 0.495).
    "demo": dict(clusters=32, audio_clusters=16, max_pool=True, hidden=128, gating=True,
                 momentum=0.9),
}

TRAINING = {
    # The README: Adam 2e-4 on batches of 80, the learning rate x0.9 (the flag default) every
    # 4M examples, 300 random frames, 800k steps: about 13 epochs of the 2017 training set's
    # 4.9M videos.
    "paper": dict(optimizer="adam", learning_rate=2e-4, decay_rate=0.9,
                  decay_examples=4_000_000, batch_size=80, epochs=13, clipnorm=1.0,
                  num_frames=300, sampling="random", loss_reduction="sum_over_classes"),
    "demo": DEMO_TRAINING,
}

MODELS = {"soft_dbof": dict(builder=build, presets=PRESETS, training=TRAINING,
                            reference="WILLOW SoftDbofModelLF; Miech et al. 2017")}
