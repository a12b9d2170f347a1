"""Keras callbacks that score a held-out split with the competition metrics."""

import keras
import numpy as np

from ..metrics import Evaluator


def split_batch(batch):
    """(inputs, labels) of a batch: an (x, y) pair or a loader dict carrying "labels"."""
    if isinstance(batch, dict):
        inputs = {key: value for key, value in batch.items() if key not in ("labels", "rows")}
        return inputs, batch["labels"]
    inputs, labels = batch
    return inputs, labels


class GapEvaluation(keras.callbacks.Callback):
    """Computes GAP@k, Hit@1, PERR (and mAP) on held-out data at the end of epochs.

    The values are written into the epoch's `logs` as `<prefix>gap`, `<prefix>hit_at_one`,
    `<prefix>perr` and `<prefix>map`. Keras hands the same `logs` to the callbacks in list order
    and adds History and the progress bar last, so put this callback before `CSVLogger`,
    `TensorBoard`, `EarlyStopping` or `ModelCheckpoint` and they all see the metrics
    (e.g. `EarlyStopping(monitor="val_gap", mode="max")`).

    Args:
        data: re-iterable of batches, each an `(inputs, labels)` pair or a dict with a "labels"
            entry (the workspace's `BatchLoader`); labels dense 0/1 or lists of label ids.
        num_classes: width of the model's output.
        top_k: predictions per video for GAP and mAP.
        from_logits: the model outputs logits (the workspace's convention).
        prefix: prefix of the logged names.
        every: evaluate every `every` epochs (and always after the last one).
        keep_predictions: keep the latest predictions (float32) in `self.predictions`.

    Example:
        >>> gap_cb = GapEvaluation(validation_loader, num_classes=3862)
        >>> model.fit(train, epochs=5, callbacks=[gap_cb, keras.callbacks.CSVLogger("log.csv")])
    """

    def __init__(self, data, num_classes, top_k=20, from_logits=True, prefix="val_", every=1,
                 keep_predictions=False):
        super().__init__()
        self.data = data
        self.num_classes = num_classes
        self.top_k = top_k
        self.from_logits = from_logits
        self.prefix = prefix
        self.every = max(1, int(every))
        self.keep_predictions = keep_predictions
        self.predictions = None
        self.history = []

    def evaluate(self):
        """Score `data` with the current weights; returns the metrics dict."""
        evaluator = Evaluator(self.num_classes, self.top_k, from_logits=self.from_logits)
        kept = []
        for batch in self.data:
            inputs, labels = split_batch(batch)
            scores = np.asarray(self.model.predict_on_batch(inputs), dtype=np.float32)
            if np.isnan(scores).any():  # diverged: report NaN metrics and stop training
                self.model.stop_training = True
                return {name: float("nan") for name in ("gap", "hit_at_one", "perr", "map")}
            evaluator.update(scores, labels)
            if self.keep_predictions:
                kept.append(scores)
        if self.keep_predictions:
            self.predictions = np.concatenate(kept) if kept else None
        return evaluator.result()

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every and epoch + 1 != last:
            return
        result = self.evaluate()
        self.history.append({"epoch": epoch} | result)
        if logs is not None:
            for name in ("gap", "hit_at_one", "perr", "map"):
                logs[self.prefix + name] = result[name]
