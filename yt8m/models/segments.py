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
from pathlib import Path

import keras
import numpy as np
from keras import ops

from .. import predictions
from ..errors import Yt8mError
from ..fileio import write_json
from ..input.sample import SCORED_CLASSES, SEGMENT_SECONDS
from ..segment_metrics import SegmentEvaluator

SEGMENT_KEYS = {"epochs": int, "learning_rate": float, "batch_size": int}
DEFAULTS = {"epochs": 3, "learning_rate": 1e-3, "batch_size": 64}
FOLDER = "segments"
_KEY = 4096  # segments a video may have at most, in the (row, segment) keys


def segment_grid(cache, rows):
    """(rows, starts): every 5-second segment of each row, in row order (the last one may
    hold fewer than 5 frames)."""
    rows = np.asarray(rows, np.int64)
    count = -(-cache.num_frames[rows].astype(np.int64) // SEGMENT_SECONDS)
    first = np.repeat(np.cumsum(count) - count, count)
    return np.repeat(rows, count), (np.arange(count.sum()) - first) * SEGMENT_SECONDS


def segment_ids(cache, rows, starts):
    return np.array([f"{cache.ids[r]}:{s}" for r, s in zip(rows.tolist(), starts.tolist(),
                                                            strict=True)])


def scored_classes(input_dir, num_classes):
    """The scored class ids: `segment_label_ids.csv` in `input_dir` (column `Index`), or every
    class when there is none."""
    path = Path(input_dir) / SCORED_CLASSES
    if not path.exists():
        return np.arange(num_classes)
    lines = path.read_text().split()
    if not lines or lines[0] != "Index":
        raise Yt8mError(f"{path}: expected a header 'Index' and one class id per line")
    try:
        classes = np.unique(np.array(lines[1:], np.int64))
    except ValueError:
        raise Yt8mError(f"{path}: class ids must be integers") from None
    if classes.size == 0 or classes[0] < 0 or classes[-1] >= num_classes:
        raise Yt8mError(f"{path}: class ids must be in [0, {num_classes}), at least one")
    return classes


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
        pick = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])
        packed = np.zeros((len(take), 2, self.cache.num_classes), np.float32)
        packed[which, 0, classes[pick]] = ratings[pick] > 0
        packed[which, 1, classes[pick]] = 1.0  # label weight on the rated classes only
        return inputs, packed.reshape(len(take), -1)

    def on_epoch_end(self):
        self.epoch += 1


def _keys(rows, starts):
    return np.asarray(rows, np.int64) * _KEY + np.asarray(starts, np.int64) // SEGMENT_SECONDS


class SegmentRatings:
    """The validate ratings located among the segments: `segment_grid` of every rated row,
    and for each rating its segment's index there, class and rating."""

    def __init__(self, cache):
        row, start, label, rating = cache.segment_ratings(cache.rows("validate"))
        if not row.size:
            raise Yt8mError(f"{cache.root}: no validate video carries segment ratings; the "
                            f"segment stage needs the 2019 segment-rated validate shards")
        self.cache = cache
        self.rated_rows = np.unique(row)
        self.grid_rows, self.grid_starts = segment_grid(cache, self.rated_rows)
        keys, wanted = _keys(self.grid_rows, self.grid_starts), _keys(row, start)
        at = np.searchsorted(keys, wanted).clip(0, len(keys) - 1)
        bad = (keys[at] != wanted) | (start % SEGMENT_SECONDS != 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise Yt8mError(f"{cache.root}: video {cache.ids[row[i]]} has a rating of segment "
                            f"{start[i]}, which is not the start of one of its 5-second "
                            f"segments ({cache.num_frames[row[i]]} frames kept)")
        self.segment, self.row, self.label, self.rating = at, row, label, rating

    def examples(self, rows, classes):
        """Training examples of the ratings of `rows`, one per rated segment: (rows, starts,
        (offsets, classes, ratings)), the segment's ratings of the scored `classes` as CSR
        (ratings of other classes are left out)."""
        column = np.searchsorted(classes, self.label).clip(0, len(classes) - 1)
        keep = np.flatnonzero(np.isin(self.row, rows) & (classes[column] == self.label))
        keep = keep[np.argsort(self.segment[keep], kind="stable")]
        unique, counts = np.unique(self.segment[keep], return_counts=True)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return (self.grid_rows[unique], self.grid_starts[unique],
                (offsets, self.label[keep], self.rating[keep]))

    def evaluator(self, rows, classes, top_k):
        """A `SegmentEvaluator` of the ratings of `rows`, with segments numbered as
        `segment_grid(cache, rows)` numbers them (rows sorted)."""
        rows = np.unique(rows)
        grid = _keys(*segment_grid(self.cache, rows))
        keep = np.isin(self.row, rows)
        at = np.searchsorted(grid, _keys(self.grid_rows[self.segment[keep]],
                                         self.grid_starts[self.segment[keep]]))
        return SegmentEvaluator(classes, at, self.label[keep], self.rating[keep], top_k=top_k)


def settings(spec):
    return DEFAULTS | (spec.segments or {})


def _fingerprint(spec, cache, classes):
    from .oof import data_fingerprint

    return {"config_hash": spec.config_hash(), "data_hash": data_fingerprint(cache),
            "segments": settings(spec), "classes": int(len(classes))}


def _predict(model, batches, writer, classes, evaluator=None):
    row = 0
    for (inputs,) in batches:
        logits = np.asarray(model.predict_on_batch(inputs), np.float32)[:, classes]
        if evaluator is not None:
            evaluator.update(logits)
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
    _, training = spec.settings()
    keras.mixed_precision.set_global_policy(dtype_policy(training))
    keras.utils.set_random_seed(spec.seed * 1000 + fold)
    model = build(spec, cache.num_classes)
    model.load_weights(str(weights_path))
    model.compile(optimizer=keras.optimizers.Adam(seg["learning_rate"]), loss=RatedLoss())
    own_rows, own_starts = segment_grid(cache, np.sort(own))
    own_batches = SegmentBatches(cache, own_rows, own_starts, seg["batch_size"])
    before = ratings.evaluator(own, classes, top_k)  # the video model's own segment scores
    for (inputs,) in own_batches:
        before.update(np.asarray(model.predict_on_batch(inputs), np.float32)[:, classes])
    rows, starts, rated = ratings.examples(others, classes)
    started = time.perf_counter()
    data = SegmentBatches(cache, rows, starts, seg["batch_size"], rated, shuffle=True,
                          seed=spec.seed * 1000 + fold)
    model.fit(data, epochs=seg["epochs"], shuffle=False, verbose=fit_verbosity(progress))
    seconds = time.perf_counter() - started
    evaluator = ratings.evaluator(own, classes, top_k)
    for part, part_rows in (("oof", own), ("test", cache.rows("test"))):
        grid_rows, grid_starts = segment_grid(cache, np.sort(part_rows))
        batches = SegmentBatches(cache, grid_rows, grid_starts, seg["batch_size"])
        with predictions.writer(folder, part, segment_ids(cache, grid_rows, grid_starts),
                                len(classes), dtype=np.float32) as out_array:
            _predict(model, batches, out_array, classes,
                     evaluator if part == "oof" else None)
    record = _fingerprint(spec, cache, classes) | {
        "fold": fold, "metrics": evaluator.result(), "before": before.result(),
        "examples": int(len(rows)),
        "seconds": round(seconds, 2)}
    write_json(folder / "fold.json", record)
    return record


def _done(folder, fingerprint):
    path = folder / "fold.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if all(record.get(k) == v for k, v in fingerprint.items()) else None


def run(spec_path, features="features", input_dir="input", models_dir=None, top_k=None,
        progress=False):
    """The segment stage of one spec; returns its metrics (also `segments/metrics.json`)."""
    from ..segment_metrics import MAX_SEGMENTS
    from .oof import log, model_dir, open_cache
    from .registry import load_spec

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
    for fold in folds:
        record = _done(out / FOLDER / f"fold_{fold}", fingerprint)
        if record is None:
            record = train_fold(spec, out, cache, ratings, classes, fold, top_k, progress)
            log(out, f"{out.name} segments fold {fold}: MAP@{top_k} "
                     f"{record['metrics']['map']:.4f} ({record['examples']} rated segments, "
                     f"{record['seconds']:.1f} s)", quiet=not progress)
        records.append(record)
    metrics = _assemble(out / FOLDER, cache, ratings, classes, top_k, fingerprint, records)
    log(out, f"{out.name} segments: out-of-fold MAP@{top_k} {metrics['oof']['map']:.4f} over "
             f"{metrics['oof']['classes']} classes", quiet=not progress)
    return metrics


def _assemble(folder, cache, ratings, classes, top_k, fingerprint, records):
    """Pool the folds' out-of-fold scores in cache order (scored from their float32 values)
    and average their test scores."""
    rows = ratings.rated_rows
    grid_rows, grid_starts = segment_grid(cache, rows)
    grid = _keys(grid_rows, grid_starts)
    part_of, row_in_part = np.full(len(grid), -1), np.zeros(len(grid), np.int64)
    parts = []
    for i, record in enumerate(records):
        part = predictions.load(folder / f"fold_{record['fold']}", "oof")
        at = np.searchsorted(grid, _keys(*segment_grid(cache, rows[cache.fold[rows] ==
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
    ids = segment_ids(cache, grid_rows, grid_starts)
    with predictions.writer(folder, "oof", ids, len(classes)) as pooled:
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
