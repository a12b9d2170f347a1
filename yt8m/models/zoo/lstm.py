"""Stacked LSTMs over the real frames into a mixture of experts (the starter code's
`LstmModel`)."""

from .recurrent import LSTM_DEMO, RNN_DEMO_TRAINING, STARTER_TRAINING, build_recurrent


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
    return build_recurrent("lstm", "lstm", num_classes, units, layers, state, num_mixtures, moe_l2,
                           dropout, input_norm, momentum, epsilon)


MODELS = {
    "lstm": dict(builder=build_lstm,
                 presets={"paper": {}, "demo": LSTM_DEMO},
                 training={"paper": STARTER_TRAINING, "demo": RNN_DEMO_TRAINING},
                 reference="starter code LstmModel"),
}
