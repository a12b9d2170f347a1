"""The `stack` combiner: a Keras level-2 model over the members' logits, trained out of fold.

The stacker is WILLOW's video-level recipe applied to the members' logits instead of the video
features: context gating on the input (per member), a mixture of experts per class
(`MemberMixture`, kernels shared by the classes) and context gating of the output probabilities
(which learns label co-occurrence: a class is suppressed when the rest of the prediction makes it
unlikely). Optionally the video-level mean rgb + audio features feed every gate.

Honest OOF: the stacker of fold k trains on the OOF rows of the other folds (the same shard folds
as the members) and predicts fold k's rows, so no row is scored by a stacker that saw it. The
test predictions are the mean of the fold stackers' logits.

Nothing is held whole: the stackers read the members' memory-maps batch by batch, and their
predictions go batch by batch into memory-mapped files at their final rows.
"""

import hashlib
import json
import time
from pathlib import Path

import keras
import numpy as np

from .. import predictions
from ..errors import Yt8mError
from ..fileio import write_json
from ..metrics import Evaluator
from ..models.training import MultiLabelLoss
from ..progress import fit_verbosity
from .streaming import chunks, row_index

# The stacker's settings (the spec's `stacker:` mapping overrides any of them). On the sample
# competition (9 demo members, 3 folds) these give 0.407 OOF GAP@20 (0.419 on an earlier demo
# recipe's members, where the ablations were measured); without the input gating
# 0.378, without the output gating 0.416; the video features (0.420) and a second expert (0.421)
# add little for their cost, so they are off by default.
STACKER_DEFAULTS = {
    "num_mixtures": 1,       # experts per class
    "input_gating": True,    # context gating of each member's logit
    "output_gating": 16,     # bottleneck reduction r of the output gating; null: no output gating
    "video_features": False,  # feed the mean rgb + audio features to the gates
    "epochs": 15,
    "batch_size": 64,
    "learning_rate": 1.0e-2,  # Adam
    "l2": 1.0e-3,
}
# The video features reach the gates through a BatchNorm and a tanh layer of this many units.
CONTEXT_UNITS = 16
# The output gates start at this value, so the untrained stacker is almost the members' mean.
INITIAL_OUTPUT_GATE = 0.98
FOLD_FILE = "fold.json"


def check_options(options, path):
    """The stacker settings with defaults filled in; errors name the file, the key and what is
    allowed."""
    options = options or {}
    if not isinstance(options, dict):
        raise Yt8mError(f"{path}: stacker must be a mapping of {list(STACKER_DEFAULTS)}")
    unknown = set(options) - set(STACKER_DEFAULTS)
    if unknown:
        raise Yt8mError(f"{path}: unknown stacker keys {sorted(unknown)}; allowed: "
                        f"{list(STACKER_DEFAULTS)}")
    checked = dict(STACKER_DEFAULTS, **options)
    for key in ("num_mixtures", "epochs", "batch_size"):
        if isinstance(checked[key], bool) or not isinstance(checked[key], int) or checked[key] < 1:
            raise Yt8mError(f"{path}: stacker.{key} must be a positive integer, "
                            f"not {checked[key]!r}")
    if checked["output_gating"] is not None and (
            isinstance(checked["output_gating"], bool) or
            not isinstance(checked["output_gating"], int) or checked["output_gating"] < 1):
        raise Yt8mError(f"{path}: stacker.output_gating must be a positive integer (the "
                        f"bottleneck reduction) or null, not {checked['output_gating']!r}")
    for key in ("input_gating", "video_features"):
        if not isinstance(checked[key], bool):
            raise Yt8mError(f"{path}: stacker.{key} must be true or false, not {checked[key]!r}")
    for key, low in (("learning_rate", 0.0), ("l2", -1.0)):
        value = checked[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
            raise Yt8mError(f"{path}: stacker.{key} must be a number "
                            f"{'> 0' if low == 0 else '>= 0'}, not {value!r}")
    return checked


def build_stacker(num_members, num_classes, options, feature_dim=None):
    """The stacker: inputs `{"logits": (members, classes)}` (and `"means"` with the video
    features), output logits."""
    from ..models.layers import ContextGating, MemberMixture
    from ..models.zoo.common import logits_from_probabilities

    logits = keras.Input((num_members, num_classes), name="logits")
    inputs = {"logits": logits}
    mixture = MemberMixture(options["num_mixtures"], options["l2"], options["input_gating"],
                            log_output=True, name="member_mixture")
    if options["video_features"]:
        means = keras.Input((feature_dim,), name="means")
        inputs["means"] = means
        context = keras.layers.BatchNormalization(name="context_norm")(means)
        context = keras.layers.Dense(CONTEXT_UNITS, activation="tanh", name="context")(context)
        log_p = mixture(logits, context)
    else:
        log_p = mixture(logits)
    if options["output_gating"]:
        log_p = ContextGating(options["output_gating"], batch_norm=False,
                              initial_gate=INITIAL_OUTPUT_GATE, log_space=True,
                              kernel_regularizer=keras.regularizers.L2(options["l2"]),
                              name="output_gating", dtype="float32")(log_p)
    return keras.Model(inputs, logits_from_probabilities(log_p, "stacked_logits", from_log=True),
                       name="stacker")


class MemberBatches(keras.utils.PyDataset):
    """Batches of the members' logits for rows `rows` of their (memory-mapped) predictions:
    `({"logits": (batch, members, classes)[, "means"]}, labels)`. `labels` and `means` map an
    array of those rows to the multi-hot labels and the video features. Shuffled batches drop the
    short last batch (one compiled step shape), as the models' training does."""

    def __init__(self, members, rows, batch_size, labels=None, means=None, shuffle=False,
                 seed=0):
        super().__init__()
        self.members, self.rows, self.batch_size = members, np.asarray(rows), batch_size
        self.labels, self.means, self.shuffle, self.seed = labels, means, shuffle, seed
        self.drop = shuffle and len(self.rows) >= 2 * batch_size
        self.epoch = 0
        self._order = self._shuffled()

    def _shuffled(self):
        if not self.shuffle:
            return self.rows
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.rows)

    def __len__(self):
        n = len(self.rows)
        return n // self.batch_size if self.drop else -(-n // self.batch_size)

    def inputs(self, rows):
        inputs = {"logits": np.stack([np.asarray(m[rows], np.float32) for m in self.members], 1)}
        if self.means is not None:
            inputs["means"] = self.means(rows)
        return inputs

    def __getitem__(self, index):
        rows = np.sort(self._order[index * self.batch_size:(index + 1) * self.batch_size])
        inputs = self.inputs(rows)
        if self.labels is None:
            return (inputs,)
        return inputs, self.labels(rows)

    def on_epoch_end(self):
        self.epoch += 1
        self._order = self._shuffled()

    def predict(self, model):
        """(first position, float32 logits) of each batch, in `rows` order (short batches
        padded, see `predict_padded`)."""
        from ..models.callbacks import predict_padded

        for index in range(len(self)):
            start = index * self.batch_size
            inputs = self.inputs(self.rows[start:start + self.batch_size])
            yield start, np.asarray(predict_padded(model, inputs, self.batch_size), np.float32)


def fingerprint(spec, member_folders):
    """A hash of the spec, of what each member was trained from and of its prediction files
    (size and modification time, as a rewrite changes them): a fold's stacker is reused only while
    all are unchanged."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for folder in member_folders:
        record = predictions.source_metrics(folder)
        files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns)
                 for part in ("oof", "test") for p in predictions.files(folder, part)]
        digest.update(f"{folder}:{record.get('config_hash')}:{record.get('data_hash')}:"
                      f"{(record.get('oof') or {}).get('gap')}:{files}".encode())
    return digest.hexdigest()[:16]


def fit_stackers(out, spec, members_oof, members_test, cache, oof_rows, test_rows,
                 progress=False, digest=""):
    """Train one stacker per fold; returns the per-fold records.

    `members_oof` / `members_test`: the members' (memory-mapped) logits, read batch by batch
    (row i of every member is the same video); `oof_rows` / `test_rows`: those videos' rows in
    the feature `cache` (labels, folds, video features). Fold k's stacker writes its predictions
    of fold k's OOF rows and of the test rows to `fold_<k>/` (float32, batch by batch; `write_oof`
    and `write_test` gather them). A fold whose `fold_<k>/fold.json` carries `digest` is kept
    instead of trained again.
    """
    options = spec["stacker"]
    oof_rows, test_rows = np.asarray(oof_rows), np.asarray(test_rows)
    folds = cache.fold[oof_rows]
    feature_dim = cache.feature_dim if options["video_features"] else None
    means = (None, None)
    if options["video_features"]:
        means = (lambda i: cache.means(oof_rows[i]), lambda i: cache.means(test_rows[i]))

    if len(np.unique(folds)) < 2:
        raise Yt8mError(f"the members' OOF rows span {len(np.unique(folds))} fold: stacking "
                        f"needs at least two")

    def labels(i):
        return cache.multi_hot(oof_rows[i])

    model, start_values, records = None, None, []
    for k in np.unique(folds):
        folder = Path(out) / f"fold_{k}"
        held_out = np.flatnonzero(folds == k)
        record_path = folder / FOLD_FILE
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        if record.get("digest") == digest:  # this fold's stacker is done and current
            records.append(record)
            continue
        seed = spec["seed"] * 1000 + int(k)
        keras.utils.set_random_seed(seed)
        if model is None:  # one compiled model for every fold: traced once
            model = build_stacker(len(members_oof), cache.num_classes, options, feature_dim)
            model.compile(keras.optimizers.Adam(options["learning_rate"]),
                          MultiLabelLoss("sum_over_batch_size"))
            model.optimizer.build(model.trainable_variables)
            start_values = [keras.ops.convert_to_numpy(v)
                            for v in (*model.variables, *model.optimizer.variables)]
        else:
            for variable, value in zip((*model.variables, *model.optimizer.variables),
                                       start_values, strict=True):
                variable.assign(value)
        train_rows = np.flatnonzero(folds != k)
        started = time.perf_counter()
        batches = MemberBatches(members_oof, train_rows, options["batch_size"], labels,
                                means[0], shuffle=True, seed=seed)
        history = model.fit(batches, epochs=options["epochs"], verbose=fit_verbosity(progress))
        loss = history.history["loss"][-1]
        if not np.isfinite(loss):
            raise Yt8mError(f"the stacker of fold {k} diverged (loss {loss}); lower "
                            f"stacker.learning_rate (now {options['learning_rate']})")
        evaluator = Evaluator(cache.num_classes, from_logits=True)
        with predictions.writer(folder, "oof", cache.ids[oof_rows[held_out]],
                                cache.num_classes, np.float32) as fold_oof:
            for first, x in MemberBatches(members_oof, held_out, options["batch_size"],
                                          means=means[0]).predict(model):
                fold_oof[first:first + len(x)] = x
                evaluator.update(x, cache.label_lists(oof_rows[held_out[first:first + len(x)]]))
        with predictions.writer(folder, "test", cache.ids[test_rows], cache.num_classes,
                                np.float32) as fold_test:
            for first, x in MemberBatches(members_test, np.arange(len(test_rows)),
                                          options["batch_size"], means=means[1]).predict(model):
                fold_test[first:first + len(x)] = x
        record = {"fold": int(k), "digest": digest, "train_videos": int(len(train_rows)),
                  "final_loss": round(float(loss), 4),
                  "seconds": round(time.perf_counter() - started, 1),
                  "oof": evaluator.result()}
        write_json(record_path, record)
        records.append(record)
    return records


def write_oof(out, records, oof, evaluator, ids, labels, folds):
    """Copy each fold stacker's OOF predictions into `oof` at their rows (`folds == k`), chunk
    by chunk, adding them to `evaluator`; `ids` are the rows' videos, `labels(index)` their
    label lists."""
    for record in records:
        held_out = np.flatnonzero(folds == record["fold"])
        fold = predictions.load(Path(out) / f"fold_{record['fold']}", "oof")
        index = np.arange(len(fold))[row_index(fold, ids[held_out])]
        for chunk in chunks(len(held_out)):
            x = np.asarray(fold.logits[index[chunk]], np.float32)
            evaluator.update(x, labels(held_out[chunk]))
            oof[held_out[chunk]] = x


def write_test(out, records, test, ids):
    """The mean of the fold stackers' test logits into `test`, chunk by chunk."""
    folds = [predictions.load(Path(out) / f"fold_{r['fold']}", "test") for r in records]
    index = [np.arange(len(fold))[row_index(fold, ids)] for fold in folds]
    for chunk in chunks(len(ids)):
        total = np.zeros((chunk.stop - chunk.start, test.shape[1]), np.float64)
        for fold, rows in zip(folds, index, strict=True):
            total += fold.logits[rows[chunk]]
        test[chunk] = (total / len(folds)).astype(np.float32)
