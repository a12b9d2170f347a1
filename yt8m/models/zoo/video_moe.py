"""WILLOW's video-level mixture of experts with context gating."""

import keras

from .common import VIDEO_DEMO_TRAINING, VIDEO_TRAINING, video_inputs, willow_head


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


MODELS = {
    "video_moe": dict(builder=build_video_moe,
                      presets={"paper": {}, "demo": dict(momentum=0.9, moe_l2=1e-4,
                                                         input_gating=False, num_mixtures=1,
                                                         probability_gating_reduction=16)},
                      training={"paper": VIDEO_TRAINING, "demo": VIDEO_DEMO_TRAINING},
                      level="video", reference="WILLOW video-level MoE + context gating"),
}
