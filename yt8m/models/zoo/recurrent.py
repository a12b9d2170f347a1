"""Recurrent frame models: the starter code's `LstmModel` and WILLOW's `GruModel`."""

import keras

from ..layers import MixtureOfExperts
from .common import DEMO_TRAINING, frame_inputs, logits_from_probabilities, willow_frames

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
STATES = ("last", "all")


@keras.saving.register_keras_serializable(package="yt8m")
class GruGateBias(keras.initializers.Initializer):
    """TF1 `GRUCell`'s start: the update and reset gates' biases at 1, the candidate's at 0
    (Keras' GRU starts all at 0: an update gate of 0.5 halves the state at every frame, where
    TF1's 0.73 carries a key segment's evidence to the video's end). Keras orders the bias
    (update, reset, candidate). `update`: the update gate's start, if not TF1's 1."""

    def __init__(self, update=1.0):
        self.update = float(update)

    def __call__(self, shape, dtype=None):
        units = shape[-1] // 3
        return keras.ops.concatenate([keras.ops.full((units,), self.update, dtype),
                                      keras.ops.ones((units,), dtype),
                                      keras.ops.zeros((units,), dtype)])

    def get_config(self):
        return {"update": self.update}


def _build(cell, name, num_classes, units, layers, state, num_mixtures, moe_l2, dropout,
           input_norm, momentum, epsilon, update_bias=1.0):
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {cell!r}")
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, not {state!r}")
    inputs, rgb, audio, mask = frame_inputs()
    x = willow_frames(rgb, audio, mask,
                      dict(momentum=momentum, epsilon=epsilon) if input_norm else None)
    # TF1's GRUCell applies the reset gate before its matrix product: Keras' reset_after=False,
    # which also keeps one bias per gate (the reference's shapes).
    options = {"gru": dict(reset_after=False, bias_initializer=GruGateBias(update_bias))}.get(cell, {})
    states = []
    for i in range(layers):
        # masked steps carry the state on: each layer's final state is its last real frame's
        x, *final = CELLS[cell](units, return_sequences=True, return_state=True,
                                name=f"{cell}_{i + 1}", **options)(x, mask=mask)
        if cell == "lstm":
            final = final[::-1]  # Keras returns (h, c); TF1's state concatenates (c, h)
        states += final
    x = keras.layers.Concatenate(name="states")(states) if state == "all" else states[-1]
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    p = MixtureOfExperts(num_classes, num_mixtures, moe_l2, name="moe")(x)
    return keras.Model(inputs, logits_from_probabilities(p), name=name)


def build_lstm(num_classes=3862, units=1024, layers=2, state="last", num_mixtures=2,
               moe_l2=1e-8, dropout=0.0, input_norm=False, momentum=0.99, epsilon=1e-3):
    """Each frame L2-normalised, `layers` stacked LSTMs of `units` cells over the real frames,
    and the last layer's final output into a mixture of experts (the starter code's `LstmModel`,
    `state[-1].h`). `state="all"` feeds every layer's final (c, h) instead, as WILLOW's copy
    (`state_is_tuple=False`) did. Keras' `unit_forget_bias` starts the forget gates' bias at 1,
    where TF1's `BasicLSTMCell` adds a constant 1 (`forget_bias=1.0`) to a zero bias.
    `dropout > 0` drops the state's units before the mixture. `input_norm` adds a BatchNorm of
    the real frames after the L2 normalisation (WILLOW's pooling models have it, its recurrent
    ones do not): unit-scale inputs open the gates to the frames from the first step;
    `momentum`, `epsilon`: its settings."""
    return _build("lstm", "lstm", num_classes, units, layers, state, num_mixtures, moe_l2,
                  dropout, input_norm, momentum, epsilon)


def build_gru(num_classes=3862, units=1200, layers=2, state="all", num_mixtures=2, moe_l2=1e-6,
              dropout=0.0, input_norm=False, momentum=0.99, epsilon=1e-3, update_bias=1.0):
    """Each frame L2-normalised, `layers` stacked GRUs of `units` cells over the real frames, and
    every layer's final state, concatenated, into a mixture of experts (WILLOW's `GruModel`:
    `MultiRNNCell(state_is_tuple=False)`, 2 layers of 1200 as its README trains it).
    `state="last"` feeds the last layer's only. The gate biases start at 1, as TF1's `GRUCell`
    starts them (`GruGateBias`); `update_bias` moves the update gates' start: at 3 a new GRU
    keeps 95% of its state a frame (TF1's 1: 73%, 0.73 ** 32 = 4e-5 of a key segment's evidence
    left 32 sampled frames later), so it learns which frames to take in before it learns to
    forget. `dropout`, `input_norm`, `momentum`, `epsilon`: see `build_lstm`."""
    return _build("gru", "gru", num_classes, units, layers, state, num_mixtures, moe_l2, dropout,
                  input_norm, momentum, epsilon, update_bias)


# The starter code's train.py defaults: Adam 1e-2 on batches of 1024, 5 epochs, gradient norm
# clipped at 1.0, every frame (up to 300); its x0.95 every 4M examples is left to the paper spec,
# as for DBoF.
STARTER_TRAINING = dict(optimizer="adam", learning_rate=1e-2, batch_size=1024, epochs=5,
                        clipnorm=1.0, num_frames=300, sampling="head",
                        loss_reduction="sum_over_classes")
# The recurrent layers are the cost here and bfloat16 does not speed them up on a CPU.
RNN_DEMO_TRAINING = dict(DEMO_TRAINING, mixed_precision="float32")

# one layer over BatchNormed frames (momentum 0.9: a demo run is a few hundred steps); the LSTM
# needs 256 cells to read the sample's ordered classes (quality test with 60% of the classes
# ordered: 128 cells 0.453, 256 cells 0.465, the mean-pooled logistic baseline 0.434); the GRU
# needs its update gates to start closed (update bias 1: 0.413, 2: 0.477, 3: 0.517; 256 cells
# at 2: 0.512) and keeps 128
RNN_DEMO = dict(units=128, layers=1, input_norm=True, momentum=0.9)
LSTM_DEMO = dict(RNN_DEMO, units=256)
GRU_DEMO = dict(RNN_DEMO, update_bias=3.0)

MODELS = {
    "lstm": dict(builder=build_lstm,
                 presets={"paper": {}, "demo": LSTM_DEMO},
                 training={"paper": STARTER_TRAINING, "demo": RNN_DEMO_TRAINING},
                 reference="starter code LstmModel"),
    "gru": dict(builder=build_gru,
                presets={"paper": {}, "demo": GRU_DEMO},
                # The README: Adam 2e-4 on batches of 128, x0.9 every 4M examples, every frame,
                # 300k steps: about 8 epochs of the 2017 training set's 4.9M videos.
                training={"paper": dict(STARTER_TRAINING, learning_rate=2e-4, batch_size=128,
                                        decay_rate=0.9, decay_examples=4_000_000, epochs=8),
                          "demo": RNN_DEMO_TRAINING},
                reference="WILLOW GruModel; Miech et al. 2017"),
}
