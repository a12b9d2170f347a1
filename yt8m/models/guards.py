"""What every trainer (`trainer` over the shard folds, `clip_trainer` over raw video) guards a run
with: a stop at the first non-finite loss, out-of-memory errors told apart, and the run's log."""

import time

import keras
import numpy as np

from .distribution import joined_cluster


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers the epoch and step."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.where = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)) and self.where is None:
            self.where = (self.epoch, f"step {batch + 1}")
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        gap = (logs or {}).get("val_gap")
        if gap is not None and np.isnan(gap) and self.where is None:
            self.where = (epoch, "its end, where the predictions")
            self.model.stop_training = True


def is_out_of_memory(error):
    """TensorFlow's ResourceExhaustedError, XLA's RESOURCE_EXHAUSTED or a host MemoryError."""
    text = f"{type(error).__name__} {error}"
    return isinstance(error, MemoryError) or any(
        mark in text for mark in ("ResourceExhausted", "RESOURCE_EXHAUSTED", "out of memory"))


def is_chief():
    """Whether this process writes the outputs: the only one, or the chief of its cluster."""
    cluster = joined_cluster()
    return cluster is None or cluster.process_id == 0


def log(out, message, quiet=False):
    """Print `message` (unless `quiet`) and append it, time-stamped, to `<out>/train.log` (the
    chief's alone in a cluster)."""
    if not is_chief():
        return
    if not quiet:
        print(message, flush=True)
    with open(out / "train.log", "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
