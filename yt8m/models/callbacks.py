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


def predict_padded(model, inputs, batch_size=None):
    """`model.predict_on_batch(inputs)`, with a short batch padded to `batch_size` rows (copies of
    its last row) and the padding cut off again: every call then has the same shape, so the
    compiled predict function is traced once (JAX compiles once per input shape)."""
    first = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
    rows = len(first)
    if batch_size is None or rows >= batch_size or rows == 0:
        return model.predict_on_batch(inputs)

    def pad(x):
        x = np.asarray(x)
        return np.concatenate([x, np.repeat(x[-1:], batch_size - rows, axis=0)])

    padded = {k: pad(v) for k, v in inputs.items()} if isinstance(inputs, dict) else pad(inputs)
    return np.asarray(model.predict_on_batch(padded))[:rows]


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
        pad_to: pad short batches to this many rows before predicting (see `predict_padded`).
        local: a `distribution.LocalModel` of the model, for a model trained by a cluster of
            processes: the chief scores a copy of the current weights outside the
            distribution, and every process receives its scores (the same early-stopping
            decision everywhere; `keep_predictions` keeps them in the chief only).

    Example:
        >>> gap_cb = GapEvaluation(validation_loader, num_classes=3862)
        >>> model.fit(train, epochs=5, callbacks=[gap_cb, keras.callbacks.CSVLogger("log.csv")])
    """

    def __init__(self, data, num_classes, top_k=20, from_logits=True, prefix="val_", every=1,
                 keep_predictions=False, pad_to=None, local=None):
        super().__init__()
        self.pad_to, self.local = pad_to, local
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
        result = self._score(self.model) if self.local is None else self._score_in_cluster()
        if np.isnan(result["gap"]):  # diverged: report NaN metrics and stop training
            self.model.stop_training = True
        return result

    def _score_in_cluster(self):
        from .distribution import broadcast_from_chief, is_chief

        names = ("gap", "hit_at_one", "perr", "map")
        result = self.local.run(self._score, self.model) if is_chief() else {}
        (values,) = broadcast_from_chief(
            [np.array([result.get(name, np.nan) for name in names], np.float64)])
        return result | {name: float(value) for name, value in zip(names, values)}

    def _score(self, model):
        evaluator = Evaluator(self.num_classes, self.top_k, from_logits=self.from_logits)
        kept = []
        for batch in self.data:
            inputs, labels = split_batch(batch)
            scores = np.asarray(predict_padded(model, inputs, self.pad_to), dtype=np.float32)
            if np.isnan(scores).any():  # diverged: NaN metrics (training stops)
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
