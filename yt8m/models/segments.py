"""2019: fine-tune a trained frame-level model on rated segments, out of fold, and score segments.

A frame-level spec with a `segments:` section (`epochs`, `learning_rate`, `batch_size`) gets a
segment stage once its folds are trained (`yt8m segments models/<id>.yaml`). For each fold k:

1. fold k's video model (`fold_<k>/best.weights.h5`) is fine-tuned on the rated segments of the
   validate videos of the other folds: each rated segment's five frames are an example whose
   loss counts only its rated classes (label weight 1 on them, 0 elsewhere), as the 2019
   winners fine-tuned;
2. it scores every 5-second segment of fold k's rated videos (out of fold) and of the test
   videos: the segment's frames alone go through the model.

Folds without rated videos of their own (the rated validate shards are few next to the train
shards) are left out; the test scores are the mean of the folds fine-tuned.

Scores are kept for the scored classes only (`input/segment_label_ids.csv`, or every class),
in `models/<id>/segments/`: per fold `fold_<k>/{oof,test}_*` with `fold.json` written last;
then `oof_*` (every rated video's segments, in cache order), `test_*` (the folds' mean logits)
and `metrics.json` with the out-of-fold MAP@K (`yt8m.segment_metrics`). Segment ids are
`<video id>:<start second>`. A run killed at any moment redoes at most the fold it was in:
finished folds are kept while the spec's settings and the data are unchanged.
"""

import json
import shutil
import time

import keras
import numpy as np
from keras import ops

from .. import predictions
from ..errors import Yt8mError
from ..features.cache import csr_positions
from ..features.segments import (
    FOLDER,
    SEGMENT_SECONDS,
    SegmentRatings,
    scored_classes,
    segment_grid,
    segment_ids,
    segment_keys,
)
from ..fileio import output_lock, write_json

SEGMENT_KEYS = {"epochs": int, "learning_rate": float, "batch_size": int}
DEFAULTS = {"epochs": 3, "learning_rate": 1e-3, "batch_size": 64}


class RatedLoss(keras.losses.Loss):
    """Binary cross-entropy on logits over the rated classes only: `y_true` is the targets and
    the label weights side by side, (batch, 2 * classes)."""

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        classes = ops.shape(y_pred)[-1]
        targets, weights = y_true[:, :classes], y_true[:, classes:]
        loss = ops.binary_crossentropy(targets, y_pred, from_logits=True)
        return ops.sum(weights * loss, axis=-1)


class SegmentBatches(keras.utils.PyDataset):
    """Batches of segments' frames (`{"frames", "mask"}`, 5 frames each); with `ratings` (each
    segment's rated classes and ratings as CSR: offsets, classes, ratings), `RatedLoss`'s packed
    labels too, made dense one batch at a time. A shuffled order is a function of (seed,
    epoch)."""

    def __init__(self, cache, rows, starts, batch_size, ratings=None, shuffle=False, seed=0):
        super().__init__()
        self.cache, self.rows, self.starts = cache, np.asarray(rows), np.asarray(starts)
        self.ratings = ratings
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = 0

    def __len__(self):
        return -(-len(self.rows) // self.batch_size)

    def _order(self):
        if not self.shuffle:
            return np.arange(len(self.rows))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.rows))

    def __getitem__(self, index):
        take = self._order()[index * self.batch_size : (index + 1) * self.batch_size]
        width = self.cache.feature_dim
        frames = np.zeros((len(take), SEGMENT_SECONDS, width), np.uint8)
        mask = np.zeros((len(take), SEGMENT_SECONDS), bool)
        for i, (row, start) in enumerate(zip(self.rows[take], self.starts[take], strict=True)):
            window = self.cache.frames(int(row))[start : start + SEGMENT_SECONDS]
            frames[i, : len(window)] = window
            mask[i, : len(window)] = True
        inputs = {"frames": frames, "mask": mask}
        if self.ratings is None:
            return (inputs,)
        offsets, classes, ratings = self.ratings
        lo, hi = offsets[take], offsets[take + 1]
        which = np.repeat(np.arange(len(take)), hi - lo)
        pick = csr_positions(lo, hi)
        packed = np.zeros((len(take), 2, self.cache.num_classes), np.float32)
        packed[which, 0, classes[pick]] = ratings[pick] > 0
        packed[which, 1, classes[pick]] = 1.0  # label weight on the rated classes only
        return inputs, packed.reshape(len(take), -1)

    def on_epoch_end(self):
        self.epoch += 1


def settings(spec):
    return DEFAULTS | (spec.segments or {})


def _fingerprint(spec, cache, classes):
    from .trainer import data_fingerprint

    return {"config_hash": spec.config_hash(), "data_hash": data_fingerprint(cache),
            "segments": settings(spec), "classes": int(len(classes))}


def _predict(model, batches, classes, evaluator=None, writer=None):
    """The scored classes' logits of every batch, into `evaluator` and/or `writer` (rows in
    batch order)."""
    row = 0
    for (inputs,) in batches:
        logits = np.asarray(model.predict_on_batch(inputs), np.float32)[:, classes]
        if evaluator is not None:
            evaluator.update(logits)
        if writer is not None:
            writer[row : row + len(logits)] = logits
        row += len(logits)


def train_fold(spec, out, cache, ratings, classes, fold, top_k, progress=False):
    """Fine-tune fold `fold`'s model on the other folds' rated segments and score its own
    rated videos' segments and the test videos'; returns the fold's record."""
    from ..progress import fit_verbosity
    from . import build
    from .training import dtype_policy

    folder = out / FOLDER / f"fold_{fold}"
    weights_path = out / f"fold_{fold}" / "best.weights.h5"
    if not weights_path.exists():
        raise Yt8mError(f"{weights_path} is missing: train the model's folds first "
                        f"(`yt8m train {spec.source}`)")
    own = ratings.rated_rows[cache.fold[ratings.rated_rows] == fold]
    others = ratings.rated_rows[cache.fold[ratings.rated_rows] != fold]
    if not len(own) or not len(others):
        raise Yt8mError(f"fold {fold} has no rated videos of its own or none to fine-tune on; "
                        f"the segment stage needs rated validate videos in at least two folds")
    shutil.rmtree(folder, ignore_errors=True)  # a fold is redone whole
    folder.mkdir(parents=True)
    seg = settings(spec)
    keras.mixed_precision.set_global_policy(dtype_policy(spec.training_settings()))
    keras.utils.set_random_seed(spec.seed * 1000 + fold)
    model = build(spec, cache.num_classes)
    model.load_weights(str(weights_path))
    model.compile(optimizer=keras.optimizers.Adam(seg["learning_rate"]), loss=RatedLoss())
    before = ratings.evaluator(own, classes, top_k)  # the video model's own segment scores
    _predict(model, SegmentBatches(cache, *segment_grid(cache, own), seg["batch_size"]),
             classes, before)
    rows, starts, rated = ratings.examples(others, classes)
    started = time.perf_counter()
    data = SegmentBatches(cache, rows, starts, seg["batch_size"], rated, shuffle=True,
                          seed=spec.seed * 1000 + fold)
    model.fit(data, epochs=seg["epochs"], shuffle=False, verbose=fit_verbosity(progress))
    seconds = time.perf_counter() - started
    evaluator = ratings.evaluator(own, classes, top_k)
    for part, part_rows in (("oof", own), ("test", cache.rows("test"))):
        batches = SegmentBatches(cache, *segment_grid(cache, part_rows), seg["batch_size"])
        with predictions.writer(folder, part, segment_ids(cache, part_rows), len(classes),
                                dtype=np.float32) as out_array:
            _predict(model, batches, classes, evaluator if part == "oof" else None, out_array)
    record = _fingerprint(spec, cache, classes) | {"video_weights": _weights_stamp(out, fold),
        "fold": fold, "metrics": evaluator.result(), "before": before.result(),
        "examples": int(len(rows)),
        "seconds": round(seconds, 2)}
    write_json(folder / "fold.json", record)
    return record


def _weights_stamp(out, fold):
    """The video fold's best weights as trained (size and time): a retrained fold redoes its
    segment fold."""
    stat = (out / f"fold_{fold}" / "best.weights.h5").stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _done(out, fold, fingerprint):
    """Fold `fold`'s committed record when it was made with these settings, data and video
    weights, else None."""
    path = out / FOLDER / f"fold_{fold}" / "fold.json"
    weights = out / f"fold_{fold}" / "best.weights.h5"
    if not path.exists() or not weights.exists():
        return None
    record = json.loads(path.read_text())
    wanted = fingerprint | {"video_weights": _weights_stamp(out, fold)}
    return record if all(record.get(k) == v for k, v in wanted.items()) else None


def run(spec_path, features="features", input_dir="input", models_dir=None, top_k=None,
        progress=False):
    """The segment stage of one spec; returns its metrics (also `segments/metrics.json`)."""
    from ..segment_metrics import MAX_SEGMENTS
    from .registry import load_spec
    from .trainer import log, model_dir, open_cache

    spec = load_spec(spec_path)
    if spec.segments is None:
        raise Yt8mError(f"{spec.source}: no `segments:` section; add one (e.g. "
                        f"`segments: {{epochs: 3}}`) to fine-tune the model on rated segments")
    top_k = top_k or MAX_SEGMENTS
    cache = open_cache(spec, features)
    out = model_dir(spec_path, models_dir)
    classes = scored_classes(input_dir, cache.num_classes)
    ratings = SegmentRatings(cache)
    fingerprint = _fingerprint(spec, cache, classes)
    records = []
    folds = np.unique(cache.fold[ratings.rated_rows]).tolist()
    if len(folds) < 2:
        raise Yt8mError(f"{cache.root}: every rated validate video is in fold {folds[0]}; the "
                        f"segment stage fine-tunes each fold's model on the other folds' rated "
                        f"segments, so it needs rated videos in at least two folds (add "
                        f"validate shards, or build the features with fewer folds)")
    skipped = sorted(set(range(cache.num_folds)) - set(folds))
    if skipped:  # nothing of their own to score out of fold
        log(out, f"{out.name} segments: folds {skipped} hold no rated videos; their models are "
                 f"not fine-tuned", quiet=not progress)
    (out / FOLDER).mkdir(parents=True, exist_ok=True)
    with output_lock(out / FOLDER, f"yt8m segments {spec_path}"):  # one writer at a time
        for fold in folds:
            record = _done(out, fold, fingerprint)
            if record is None:
                record = train_fold(spec, out, cache, ratings, classes, fold, top_k, progress)
                log(out, f"{out.name} segments fold {fold}: MAP@{top_k} "
                         f"{record['metrics']['map']:.4f} ({record['examples']} rated "
                         f"segments, {record['seconds']:.1f} s)", quiet=not progress)
            records.append(record)
        metrics = _assemble(out / FOLDER, cache, ratings, classes, top_k, fingerprint, records)
    log(out, f"{out.name} segments: out-of-fold MAP@{top_k} {metrics['oof']['map']:.4f} over "
             f"{metrics['oof']['classes']} classes", quiet=not progress)
    return metrics


def _assemble(folder, cache, ratings, classes, top_k, fingerprint, records):
    """Pool the folds' out-of-fold scores in cache order (scored from their float32 values)
    and average their test scores."""
    (folder / "metrics.json").unlink(missing_ok=True)  # written last, for these parts
    rows = ratings.rated_rows
    grid = segment_keys(*segment_grid(cache, rows))
    part_of, row_in_part = np.full(len(grid), -1), np.zeros(len(grid), np.int64)
    parts = []
    for i, record in enumerate(records):
        part = predictions.load(folder / f"fold_{record['fold']}", "oof")
        at = np.searchsorted(grid, segment_keys(*segment_grid(cache, rows[cache.fold[rows] ==
                                                                   record["fold"]])))
        if len(part.ids) != len(at):
            raise Yt8mError(f"{folder}/fold_{record['fold']}: {len(part.ids)} out-of-fold "
                            f"segments where its videos have {len(at)}; delete the folder and "
                            f"run `yt8m segments` again")
        part_of[at], row_in_part[at] = i, np.arange(len(at))
        parts.append(part)
    if (part_of < 0).any():
        raise Yt8mError(f"{folder}: no fold scored {int((part_of < 0).sum())} rated segments; "
                        f"run `yt8m segments` again")
    evaluator = ratings.evaluator(rows, classes, top_k)
    with predictions.writer(folder, "oof", segment_ids(cache, rows), len(classes)) as pooled:
        for chunk in predictions.chunks(len(grid)):  # in segment order, as the evaluator counts
            block = np.empty((chunk.stop - chunk.start, len(classes)), np.float32)
            for i in np.unique(part_of[chunk]):
                sel = part_of[chunk] == i
                block[sel] = parts[i].logits[row_in_part[chunk][sel]]
            evaluator.update(block)
            pooled[chunk] = block
    tests = [predictions.load(folder / f"fold_{r['fold']}", "test") for r in records]
    with predictions.writer(folder, "test", tests[0].ids, len(classes)) as mean:
        for chunk in predictions.chunks(len(tests[0].ids)):
            mean[chunk] = sum(np.asarray(t.logits[chunk], np.float32) for t in tests) / len(tests)
    metrics = fingerprint | {"oof": evaluator.result(), "top_k": top_k,
                             "scored_classes": classes.tolist(),
                             "folds": [{"fold": r["fold"], **r["metrics"],
                                        "map_before": r["before"]["map"]} for r in records]}
    write_json(folder / "metrics.json", metrics)
    return metrics
