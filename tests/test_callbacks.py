import csv

import keras
import numpy as np
import pytest

from yt8m.metrics import evaluate
from yt8m.models.callbacks import GapEvaluation


def learnable(n, seed):
    """Multi-label data whose labels are a linear function of the inputs."""
    weights = np.random.default_rng(99).normal(size=(16, 12))
    x = np.random.default_rng(seed).normal(size=(n, 16)).astype(np.float32)
    scores = x @ weights
    y = (scores > np.sort(scores, axis=1)[:, [-3]]).astype(np.float32)  # top-2 classes
    return x, y


def test_metrics_reach_csv_logger_history_and_early_stopping(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = learnable(600, 0)
    xv, yv = learnable(200, 1)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(12)])
    as_lists = [np.flatnonzero(r) for r in yv[128:]]
    held_out = [(xv[:128], yv[:128]), {"x": xv[128:], "labels": as_lists, "rows": np.arange(72)}]
    gap_cb = GapEvaluation(held_out, num_classes=12, keep_predictions=True)
    stop = keras.callbacks.EarlyStopping(monitor="val_gap", mode="max", patience=1)
    log = tmp_path / "log.csv"

    class DictAsArray(keras.Model):  # the dict batch carries its inputs under "x"
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, inputs):
            return self.inner(inputs["x"] if isinstance(inputs, dict) else inputs)

    wrapped = DictAsArray(model)
    wrapped.compile(keras.optimizers.Adam(0.05),
                    keras.losses.BinaryCrossentropy(from_logits=True))
    history = wrapped.fit(x, y, epochs=6, batch_size=64, verbose=0,
                          callbacks=[gap_cb, keras.callbacks.CSVLogger(str(log)), stop])
    rows = list(csv.DictReader(log.read_text().splitlines()))
    assert {"val_gap", "val_hit_at_one", "val_perr", "val_map"} <= set(rows[0])
    assert [float(r["val_gap"]) for r in rows] == pytest.approx(history.history["val_gap"])
    final = evaluate(np.asarray(model(xv)), yv, from_logits=True)
    assert float(rows[-1]["val_gap"]) == pytest.approx(final["gap"], abs=1e-6)
    assert gap_cb.predictions.shape == (200, 12)
    assert final["gap"] > 0.6  # chance is about 0.17 for 2 labels of 12


def test_every_n_epochs_still_scores_the_last(tmp_path):
    x, y = learnable(64, 2)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(12)])
    model.compile("sgd", keras.losses.BinaryCrossentropy(from_logits=True))
    cb = GapEvaluation([(x, y)], num_classes=12, every=2)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    assert [h["epoch"] for h in cb.history] == [1, 2]
