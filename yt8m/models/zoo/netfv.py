"""Gated NetFV with a mixture of experts (WILLOW `NetFVModelLF`, 2017 winner's ensemble)."""

import keras

from ..layers import NetFV
from .common import DEMO_TRAINING, frame_inputs, willow_frames, willow_head
from .gated_netvlad import TRAINING as NETVLAD_TRAINING


def build(num_classes=3862, clusters=128, audio_clusters=None, hidden=1024, couple_weights=False,
          coupling_factor=0.01, gating=True, num_mixtures=2, moe_l2=1e-6, probability_gating=True,
          probability_gating_reduction=None, dropout=0.0, momentum=0.99, epsilon=1e-3):
    """Each frame L2-normalised, input BatchNorm, NetFV (K) on rgb and NetFV (K/2) on audio
    (first- and second-order Fisher vector statistics, `yt8m.models.layers.NetFV`), hidden FC
    (with bias, no BatchNorm or ReLU: `--fv_relu=False`), context gating (`--gating`), a
    mixture of `num_mixtures` experts and context gating of its probabilities
    (`--moe_prob_gating`), as the reference's README trains it. `couple_weights` ties each
    NetFV's means to its assignment kernel (`--fv_couple_weights`, the code's default; the README
    turns it off). `probability_gating_reduction` and `dropout`: see gated NetVLAD."""
    inputs, rgb, audio, mask = frame_inputs()
    bn = dict(momentum=momentum, epsilon=epsilon)
    fv = dict(couple_weights=couple_weights, coupling_factor=coupling_factor, **bn)
    x = willow_frames(rgb, audio, mask, bn)
    video = NetFV(clusters, name="video_netfv", **fv)(x[..., :1024], mask=mask)
    sound = NetFV(audio_clusters or clusters // 2, name="audio_netfv", **fv)(
        x[..., 1024:], mask=mask)
    x = keras.layers.Concatenate(name="concat")([video, sound])
    logits = willow_head(x, num_classes, hidden, clusters ** -0.5, gating=gating,
                         dropout=dropout, num_mixtures=num_mixtures, moe_l2=moe_l2,
                         probability_gating=probability_gating,
                         probability_gating_reduction=probability_gating_reduction, **bn)
    return keras.Model(inputs, logits, name="netfv")


PRESETS = {
    "paper": {},
    "demo": dict(clusters=8, hidden=128, probability_gating_reduction=16, momentum=0.9),
}

TRAINING = {
    # gated NetVLAD's settings; the README trains it 600k steps of 80 videos: about 10 epochs of
    # the 2017 training set's 4.9M videos.
    "paper": dict(NETVLAD_TRAINING["paper"], epochs=10),
    "demo": dict(DEMO_TRAINING, mixed_precision="float32"),  # squared features: keep float32
}

MODELS = {"netfv": dict(builder=build, presets=PRESETS, training=TRAINING,
                        reference="WILLOW NetFVModelLF; Miech et al. 2017")}
