"""Stacked GRUs, every final state into a mixture of experts (WILLOW's `GruModel`)."""

from .recurrent import GRU_DEMO, RNN_DEMO_TRAINING, STARTER_TRAINING, build_recurrent


def build_gru(num_classes=3862, units=1200, layers=2, state="all", num_mixtures=2, moe_l2=1e-6,
              dropout=0.0, input_norm=False, momentum=0.99, epsilon=1e-3, update_bias=1.0):
    """Each frame L2-normalised, `layers` stacked GRUs of `units` cells over the real frames, and
    every layer's final state, concatenated, into a mixture of experts (WILLOW's `GruModel`:
    `MultiRNNCell(state_is_tuple=False)`, 2 layers of 1200 as its README trains it).
    `state="last"` feeds the last layer's only. The gate biases start at 1, as TF1's `GRUCell`
    starts them (`GruGateBias`); `update_bias` moves the update gates' start: at 3 a new GRU
    keeps 95% of its state a frame (TF1's 1: 73%, 0.73 ** 32 = 4e-5 of a key segment's evidence
    left 32 sampled frames later), so it learns which frames to take in before it learns to
    forget. `dropout`, `input_norm`, `momentum`, `epsilon`: see `lstm.build_lstm`."""
    return build_recurrent("gru", "gru", num_classes, units, layers, state, num_mixtures, moe_l2,
                           dropout, input_norm, momentum, epsilon, update_bias)


MODELS = {
    "gru": dict(builder=build_gru,
                presets={"paper": {}, "demo": GRU_DEMO},
                # The README: Adam 2e-4 on batches of 128, x0.9 every 4M examples, every frame,
                # 300k steps: about 8 epochs of the 2017 training set's 4.9M videos.
                training={"paper": dict(STARTER_TRAINING, learning_rate=2e-4, batch_size=128,
                                        decay_rate=0.9, decay_examples=4_000_000, epochs=8),
                          "demo": RNN_DEMO_TRAINING},
                reference="WILLOW GruModel; Miech et al. 2017"),
}
