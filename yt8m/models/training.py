"""Compile and feed a zoo model the way its reference trained it (optimizer, schedule, loss)."""

import concurrent.futures as cf
import functools

import keras
import numpy as np
from keras import ops

from ..errors import Yt8mError
from ..features.loader import BatchLoader
from .callbacks import predict_padded
from .settings import ClipTrainingSettings, TrainingSettings


@keras.saving.register_keras_serializable(package="yt8m")
class MultiLabelLoss(keras.losses.Loss):
    """Sigmoid cross-entropy on logits, summed over classes.

    `reduction="sum_over_batch_size"` then averages over the batch (NeXtVLAD, Attention Cluster,
    the starter code); `reduction="sum"` also sums over the batch (Attention LSTM). Keras'
    `BinaryCrossentropy` averages over classes instead, which scales gradients by 1/3862.
    """

    def __init__(self, reduction="sum_over_batch_size", name="multilabel_bce", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        per_class = ops.binary_crossentropy(y_true, y_pred, from_logits=True)
        return ops.sum(per_class, axis=-1)


def make_loss(training, model=None):
    """The loss of `training` (a `TrainingSettings` or a mapping of settings): the model's own
    where it has one, else `MultiLabelLoss` with the settings' `loss_reduction`."""
    training = TrainingSettings.of(training)
    if hasattr(model, "default_loss"):  # models whose outputs need their own loss
        return model.default_loss()
    if training.loss_reduction == "sum":
        return MultiLabelLoss(reduction="sum")
    return MultiLabelLoss()


def make_optimizer(training, steps_per_epoch):
    """The reference's optimizer and learning-rate schedule (`training`: a `TrainingSettings`
    or a mapping of settings).

    `decay_examples` decays by `decay_rate` every that many *examples* (staircase, as the
    TF-slim and Paddle references count them), converted to steps with the batch size;
    `boundaries_epochs` multiplies by `decay_rate` at each listed epoch.
    """
    training = TrainingSettings.of(training)
    lr, rate = training.learning_rate, training.decay_rate
    if training.decay_examples and rate:
        lr = keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=max(1, training.decay_examples // training.batch_size),
            decay_rate=rate, staircase=True)
    elif training.boundaries_epochs and rate:
        bounds = [int(e * steps_per_epoch) for e in training.boundaries_epochs]
        values = [lr * rate**i for i in range(len(bounds) + 1)]
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)
    clip = {"clipnorm": training.clipnorm} if training.clipnorm else {}
    if training.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, rho=training.rho, epsilon=training.epsilon,
                                        centered=training.centered, **clip)
    if training.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=training.momentum, **clip)
    return keras.optimizers.Adam(lr, **clip)


def set_prior_bias(model, frequencies):
    """Start the output biases at the logit of each class's training frequency.

    With thousands of rare classes, a zero-bias start spends the first steps pushing every
    logit down, and on small data that can leave the hidden layers saturated or dead before they
    learn anything (Attention Cluster and Attention LSTM do not recover within a demo run without
    it). The references start from zero; this is the `prior_bias` training setting.
    """
    freq = np.clip(np.asarray(frequencies, np.float64), 1e-5, 1 - 1e-5)
    names = {layer.name: layer for layer in model.layers}
    heads = [layer for name, layer in names.items()
             if name.endswith("logits") and getattr(layer, "bias", None) is not None]
    for layer in heads:  # one classifier, or one per branch of a mixture
        layer.bias.assign(np.log(freq / (1 - freq)).astype("float32"))
    if heads:
        return True
    if "moe" in names:  # p ~ M/(M+1) sigmoid(expert bias) while the gates are near uniform,
        moe = names["moe"]  # halved again by a probability gate's sigmoid(~0) at the start
        gate = 2.0 if "probability_gating" in names else 1.0
        share = np.clip(freq * gate * (moe.num_mixtures + 1) / moe.num_mixtures, 1e-5, 1 - 1e-5)
        bias = np.repeat(np.log(share / (1 - share)), moe.num_mixtures).astype("float32")
        moe.experts.bias.assign(bias)
        return True
    return False


def set_reverse_whitening(model, path):
    """Scale the rgb channels by sqrt(PCA eigenvalue) + 1e-4 (NeXtVLAD's reverse whitening).

    `path` is the starter code's `yt8m_pca/eigenvals.npy` ((2048, 1) float32; the first 1024
    belong to the rgb features). Audio is left unscaled.
    """
    try:
        eigen = np.load(path).reshape(-1)[:1024]
    except (OSError, ValueError) as e:
        raise Yt8mError(f"{path}: cannot read the PCA eigenvalues ({e})") from None
    if eigen.size != 1024 or not np.isfinite(eigen).all() or (eigen < 0).any():
        raise Yt8mError(f"{path}: expected at least 1024 non-negative eigenvalues")
    layer = next((lay for lay in model.layers if getattr(lay, "channel_scale", False)), None)
    if layer is None:
        raise Yt8mError("training sets `eigenvalues` but the model has no scaled Dequantize "
                        "layer; set architecture: {reverse_whitening: true}")
    scale = np.ones(layer.scale.shape, np.float32)
    scale[:1024] = np.sqrt(eigen) + 1e-4
    layer.scale.assign(scale)


@functools.cache
def native_bfloat16():
    """Whether bfloat16 math is fast here: an accelerator, or a CPU with AVX512-BF16 / AMX."""
    if any(not d.lower().startswith("cpu") for d in keras.distribution.list_devices()):
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def dtype_policy(training):
    """The Keras dtype policy of the settings' `mixed_precision`: a policy name, or "auto" for
    mixed_bfloat16 where bfloat16 is native (`native_bfloat16`) and float32 elsewhere. Logits,
    losses and the metrics stay float32 in every zoo model.

    `training`: a `TrainingSettings`, a `ClipTrainingSettings`, or a mapping of YouTube-8M
    training settings."""
    if not isinstance(training, ClipTrainingSettings):
        training = TrainingSettings.of(training)
    if training.mixed_precision == "auto":
        return "mixed_bfloat16" if native_bfloat16() else "float32"
    return training.mixed_precision


def compile_model(model, training, steps_per_epoch):
    training = TrainingSettings.of(training)
    model.compile(optimizer=make_optimizer(training, steps_per_epoch),
                  loss=make_loss(training, model))
    return model


class CacheBatches(keras.utils.PyDataset):
    """A `BatchLoader` as a Keras `PyDataset` of (inputs, labels) for `fit` and `predict`.

    Inputs are `{"frames", "mask"}` or `{"means"}` as the model's level needs; the targets are
    the labels, or a `distill.Teacher`'s mix of them with soft targets; batch b of epoch e
    is the same on every run (the loader's seed). Shuffled (training) batches drop the last,
    short batch when there is more than one batch, so that every training step has one shape
    and the compiled step is not traced again. `shard`: training batches of a process in a
    cluster, which feeds what its engine wants of every global batch (`shard_batch`); the
    batches are whole outside a cluster. `training`: a `TrainingSettings` or a mapping of
    settings (batch_size, num_frames, sampling).
    """

    def __init__(self, cache, rows, level, training, shuffle, seed=0, teacher=None,
                 shard=False, look_ahead=None):
        super().__init__()
        # the next `look_ahead` batches are assembled in a background thread while the step
        # runs. Default: 2 under JAX, whose trainer asks for each batch only when its step
        # starts; 0 under TensorFlow, where Keras already runs the feed in a prefetching
        # tf.data pipeline (a thread of ours there only competes for the cores)
        if look_ahead is None:
            look_ahead = 2 if keras.backend.backend() == "jax" else 0
        self.look_ahead, self._pool, self._pending = look_ahead, None, {}
        self.level, self.teacher, self.shard = level, teacher, shard
        training = TrainingSettings.of(training)
        size = training.batch_size
        self.loader = BatchLoader(
            cache, rows, batch_size=size, drop_remainder=shuffle and len(rows) >= 2 * size,
            num_frames=training.num_frames, sampling=training.sampling, shuffle=shuffle,
            seed=seed, features="means" if level == "video" else "frames", prefetch=0)
        self.epoch = 0
        self._order = self.loader.order(0)

    def __len__(self):
        return len(self.loader)

    def __getitem__(self, index):
        if not self.look_ahead:
            return self._make(self._order, self.epoch, index)
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix="yt8m-feed")
        for key in range(index, min(index + 1 + self.look_ahead, len(self))):
            if (self.epoch, key) not in self._pending:
                self._pending[self.epoch, key] = self._pool.submit(
                    self._make, self._order, self.epoch, key)
        return self._pending.pop((self.epoch, index)).result()

    def _make(self, order, epoch, index):
        batch = self.loader.batch(order, epoch, index)
        if self.level == "video":
            inputs = {"means": batch["means"]}
        else:
            inputs = {"frames": batch["frames"], "mask": batch["mask"]}
        if self.teacher is not None:  # distillation: soft targets mixed with the labels
            pair = inputs, self.teacher.targets(batch["rows"], batch["labels"])
        else:
            pair = inputs, batch["labels"]
        if self.shard:
            from .distribution import joined_cluster, shard_batch

            cluster = joined_cluster()
            if cluster is not None:
                return shard_batch(pair, cluster)
        return pair

    def start_at(self, epoch):
        """Serve epoch `epoch`'s batches next (a resumed run)."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self.epoch = epoch
        self._order = self.loader.order(epoch)

    def on_epoch_end(self):
        self.start_at(self.epoch + 1)

    def __iter__(self):  # one pass, for GapEvaluation and predictions
        for index in range(len(self)):
            yield self[index]


def set_start_values(model, training, cache, train_rows):
    """The values `training` gives some weights before the first step: the reverse-whitening
    scale (`eigenvalues`) and the output biases at the class log-odds of `train_rows`
    (`prior_bias`)."""
    training = TrainingSettings.of(training)
    if training.eigenvalues:
        set_reverse_whitening(model, training.eigenvalues)
    if training.prior_bias:
        set_prior_bias(model, cache.class_frequencies(train_rows))


def predict_logits(model, batches, out=None, evaluator=None, progress=False):
    """float32 logits of every batch in the loader's row order (short batches are padded to the
    batch size, so one compiled predict function serves them all): concatenated, or written
    batch by batch into `out` (e.g. a memory-mapped file: memory stays that of a batch).
    `evaluator`: an `Evaluator` also updated with each batch and its labels. `progress`: a
    progress bar over the batches (`tqdm`, on stderr)."""
    from ..progress import progress_bar

    size = batches.loader.batch_size if isinstance(batches, CacheBatches) else None
    parts, row = [], 0
    for x, labels in progress_bar(batches, total=len(batches), progress=progress, unit="batch",
                          leave=False):
        logits = np.asarray(predict_padded(model, x, size), np.float32)
        if evaluator is not None:
            evaluator.update(logits, labels)
        if out is None:
            parts.append(logits)
        else:
            out[row:row + len(logits)] = logits
        row += len(logits)
    if out is not None:
        return out
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)
