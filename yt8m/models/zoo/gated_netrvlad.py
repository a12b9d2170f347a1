"""Gated NetRVLAD ("LightVLAD") with a mixture of experts: WILLOW `NetVLADModelLF --lightvlad`.

NetVLAD without the cluster centres: each cluster sums its assigned frames instead of their
residuals (`yt8m.models.layers.NetVLAD(residuals=False)`); everything else is gated NetVLAD's
(`gated_netvlad.py`, whose builder this calls with `lightvlad=True`).
"""

from . import gated_netvlad


def build(num_classes=3862, clusters=256, audio_clusters=None, hidden=1024, num_mixtures=2,
          moe_l2=1e-6, probability_gating=True, probability_gating_reduction=None, dropout=0.0,
          momentum=0.99, epsilon=1e-3):
    """Gated NetVLAD's architecture (`gated_netvlad.build`, same arguments) with NetRVLAD
    pooling: K clusters on rgb, K/2 on audio, no centres."""
    return gated_netvlad.build(
        num_classes, clusters=clusters, audio_clusters=audio_clusters, hidden=hidden,
        num_mixtures=num_mixtures, moe_l2=moe_l2, probability_gating=probability_gating,
        probability_gating_reduction=probability_gating_reduction, lightvlad=True,
        dropout=dropout, momentum=momentum, epsilon=epsilon)


TRAINING = {
    # The README trains it 600k steps of 80 videos: about 10 epochs of the 2017 training set's
    # 4.9M videos (gated NetVLAD's 5 epochs are its best 300k-step model).
    "paper": dict(gated_netvlad.TRAINING["paper"], epochs=10),
    "demo": gated_netvlad.TRAINING["demo"],
}

MODELS = {"gated_netrvlad": dict(builder=build, presets=gated_netvlad.PRESETS, training=TRAINING,
                                 reference="WILLOW NetVLADModelLF --lightvlad; Miech et al. 2017")}
