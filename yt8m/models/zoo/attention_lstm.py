"""Attention LSTM (PaddleVideo 2.x `attention_lstm`)."""

import keras

from ..layers import AttentionPooling
from .common import DEMO_TRAINING, classifier, frame_inputs


def build(num_classes=3862, embedding=512, lstm=1024, dropout=0.5, hidden=(8192, 4096), l2=2e-4):
    """Per modality: FC `embedding` + tanh, a bidirectional LSTM (no peepholes; padded steps
    skipped), dropout on its outputs, attention pooling; then FC 8192 ReLU, FC 4096 tanh and a
    logistic classifier. Paddle 2.x's L2 4e-4 is Keras `L2(2e-4)` on the kernels."""
    inputs, rgb, audio, mask = frame_inputs()
    regularizer = keras.regularizers.L2(l2) if l2 else None
    pooled = []
    for name, x in (("video", rgb), ("audio", audio)):
        x = keras.layers.Dense(embedding, activation="tanh", kernel_regularizer=regularizer,
                               name=f"{name}_embedding")(x)
        x = keras.layers.Bidirectional(
            keras.layers.LSTM(lstm, return_sequences=True, kernel_regularizer=regularizer,
                              recurrent_regularizer=regularizer),
            name=f"{name}_lstm")(x, mask=mask)
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
        pooled.append(AttentionPooling(name=f"{name}_attention")(x, mask=mask))
    x = keras.layers.Concatenate(name="concat")(pooled)
    x = keras.layers.Dense(hidden[0], activation="relu", kernel_regularizer=regularizer,
                           name="hidden_0")(x)
    x = keras.layers.Dense(hidden[1], activation="tanh", kernel_regularizer=regularizer,
                           name="hidden_1")(x)
    return keras.Model(inputs, classifier(x, num_classes, l2), name="attention_lstm")


PRESETS = {
    "paper": {},
    "demo": dict(embedding=64, lstm=64, dropout=0.3, hidden=(256, 256), l2=0.0),
}

TRAINING = {
    "paper": dict(optimizer="rmsprop", rho=0.95, epsilon=1e-6, centered=True,
                  learning_rate=2.5e-4, boundaries_epochs=(5, 8), decay_rate=0.1,
                  batch_size=1024, epochs=10, num_frames=300, sampling="head",
                  loss_reduction="sum"),
    "demo": DEMO_TRAINING,
}

MODELS = {"attention_lstm": dict(builder=build, presets=PRESETS, training=TRAINING,
                      reference="PaddleVideo 2.x attention_lstm")}
