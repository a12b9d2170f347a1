"""Mixture of NeXtVLADs with on-the-fly distillation (the NeXtVLAD paper's final 2018 entry)."""

import keras
from keras import ops

from ..layers import masked_mean
from .common import DEMO_TRAINING, frame_inputs
from .nextvlad import branch


@keras.saving.register_keras_serializable(package="yt8m")
class MixNeXtVLAD(keras.Model):
    """M NeXtVLAD branches mixed by a gate on the mean frame, `z = sum_m softmax(W BN(x_mean))_m
    z_m`, trained with each branch's own loss and a distillation term that pulls every branch
    towards the mixture (`MixtureDistillationLoss`).

    In training (`training=True`) the model returns the stacked logits (batch, 1 + M, classes),
    mixture first, for the loss; otherwise the mixture's logits (batch, classes) like every model
    of the zoo. Choices: the original's final script (K=112, G=8 on rgb, K/2 and G/2 on audio,
    r=16, 3 branches, T=3); the gate's mean is over the real frames (the original averages the
    padded 300).
    """

    def __init__(self, num_classes=3862, branches=3, clusters=112, groups=8, expansion=2,
                 audio_clusters=56, audio_groups=4, hidden=2048, gating_reduction=16,
                 dropout=0.5, l2=5e-6, momentum=0.9, epsilon=1e-5, temperature=3.0, **kwargs):
        kwargs.pop("trainable", None)
        inputs, rgb, audio, mask = frame_inputs()
        logits = [branch(rgb, audio, mask, num_classes, clusters, groups, expansion,
                         audio_clusters, audio_groups, hidden, gating_reduction, dropout, l2,
                         momentum, epsilon, prefix=f"branch{m}_") for m in range(branches)]
        frames = keras.layers.Concatenate(name="frames_concat")([rgb, audio])
        mean = keras.layers.BatchNormalization(name="gate_norm", momentum=momentum,
                                               epsilon=epsilon)(masked_mean(frames, mask))
        gate = keras.layers.Dense(branches, activation="softmax", name="gate",
                                  dtype="float32")(mean)
        stacked = ops.stack(logits, axis=1)  # (B, M, C)
        mixture = ops.sum(ops.expand_dims(gate, -1) * stacked, axis=1)
        outputs = ops.concatenate([ops.expand_dims(mixture, 1), stacked], axis=1)
        super().__init__(inputs, outputs, name=kwargs.pop("name", "mix_nextvlad"), **kwargs)
        self.settings = dict(num_classes=num_classes, branches=branches, clusters=clusters,
                             groups=groups, expansion=expansion, audio_clusters=audio_clusters,
                             audio_groups=audio_groups, hidden=hidden,
                             gating_reduction=gating_reduction, dropout=dropout, l2=l2,
                             momentum=momentum, epsilon=epsilon, temperature=temperature)
        self.temperature = temperature

    def default_loss(self):
        """The loss this model trains with (used by `yt8m.models.training.make_loss`)."""
        return MixtureDistillationLoss(self.temperature)

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        return outputs if training else outputs[:, 0]

    def compute_output_spec(self, inputs, training=None, mask=None):
        spec = super().compute_output_spec(inputs, training=training, mask=mask)
        if training:
            return spec
        return keras.KerasTensor((spec.shape[0], spec.shape[2]), dtype=spec.dtype)

    def get_config(self):
        return dict(self.settings, name=self.name)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="yt8m")
class MixtureDistillationLoss(keras.losses.Loss):
    """Sigmoid cross-entropy (summed over classes) of the mixture and of every branch, plus
    `T^2 sum_m KL(softmax(z_mix / T) || softmax(z_m / T))` over the classes (no stop-gradient on
    the mixture, as in the original). On plain (batch, classes) logits: the cross-entropy only.
    """

    def __init__(self, temperature=3.0, name="mixture_distillation",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = temperature

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        if len(y_pred.shape) == 2:
            return ops.sum(ops.binary_crossentropy(y_true, y_pred, from_logits=True), axis=-1)
        labels = ops.broadcast_to(ops.expand_dims(y_true, 1), ops.shape(y_pred))
        bce = ops.sum(ops.binary_crossentropy(labels, y_pred, from_logits=True), axis=(1, 2))
        t = self.temperature
        teacher = ops.log_softmax(y_pred[:, :1] / t, axis=-1)
        students = ops.log_softmax(y_pred[:, 1:] / t, axis=-1)
        kl = ops.sum(ops.exp(teacher) * (teacher - students), axis=(1, 2))
        return bce + t * t * kl

    def get_config(self):
        return super().get_config() | {"temperature": self.temperature}


PRESETS = {
    "paper": {},
    "demo": dict(branches=2, clusters=8, groups=8, expansion=1, audio_clusters=8,
                 audio_groups=4, hidden=64, gating_reduction=4, dropout=0.3),
}

TRAINING = {
    "paper": dict(optimizer="adam", learning_rate=2e-4, decay_rate=0.8,
                  decay_examples=2_500_000, batch_size=160, epochs=15, num_frames=300,
                  sampling="head"),
    "demo": dict(DEMO_TRAINING, batch_size=128, learning_rate=1e-2),
}

MODELS = {"mix_nextvlad": dict(builder=MixNeXtVLAD, presets=PRESETS, training=TRAINING,
                      reference="NeXtVLAD paper final entry (MixNeXtVladModel)")}
