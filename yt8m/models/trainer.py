"""Out-of-fold training of one model spec over the shard folds: `yt8m train`.

For model id `<id>` (the spec's file stem) and fold k, `models/<id>/fold_<k>/` receives:

    log.csv             one row per epoch (loss, val_gap, val_hit_at_one, val_perr, val_map)
    ../tensorboard/fold_<k>/  the same curves for TensorBoard (`make tensorboard`)
    state.json, backup/ while the fold trains: its committed epochs (`EpochCheckpoint`)
    best.weights.h5     the epoch with the best GAP@20 on fold k
    oof_*.npy           fold k's logits (float32) and ids
    test_*.npy          the test split's logits from this fold's model
    fold.json           written last: config hash, metrics, epochs, speed (the fold is done)

A fold killed at any moment resumes from its last finished epoch to the result an uninterrupted
run has (same variables, data order, dropout seeds, best epoch and early-stopping count); a
damaged checkpoint falls back to the one before it, and says so. When every fold is done,
`models/<id>/` receives the assembled out-of-fold and test predictions (test: the mean of the
fold models' logits), `metrics.json` and `model.keras` (fold 0's model). A spec whose config
hash changed invalidates everything trained from the old one. One `yt8m train` at a time writes
a model folder (`.lock`).

With `distribute` and a cluster in the environment (`distribution`: `YT8M_WORKERS` and
`YT8M_PROCESS_ID`), the same `yt8m train` in every process of the cluster trains each fold as ONE
model over all of them, each process feeding its part of every global batch. The chief (process
0) alone reads and writes the model folder (lock, checkpoints, predictions, fold.json,
metrics.json, TensorBoard, train.log) and takes the decisions that depend on it (which folds are
done, the epoch to resume from, and the variables there), which it sends to the others; each
epoch's held-out scores are the chief's, computed on its own copy of the weights outside the
distribution and sent to the others, so every process stops at the same epoch. The chief also
predicts the held-out and test videos alone, on such a copy of the best epoch's weights. The
others write nothing, so they may share the chief's file system or not.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import keras
import numpy as np

from .. import __version__, predictions
from ..errors import Yt8mError
from ..fileio import LOCK_FILE, atomic_path, output_lock, write_json
from ..metrics import Evaluator
from .distribution import (
    LocalModel,
    data_parallel_scope,
    distribution_record,
    joined_cluster,
    share_from_chief,
)
from .guards import NanGuard, is_chief, is_out_of_memory, log

FOLD_FILE = "fold.json"
REFIT_FILE = "refit.json"


def model_dir(spec_path, models_dir=None):
    spec_path = Path(spec_path)
    return Path(models_dir or spec_path.parent) / spec_path.stem


def labeled_fold_rows(cache):
    """Cache rows of the labeled videos that have a fold: what the folds train on and predict."""
    labeled = np.diff(cache.label_offsets) > 0
    return np.flatnonzero((cache.fold >= 0) & labeled)


def extra_training_rows(cache, training):
    """Labeled videos of the spec's `train_splits` (`training`: a `TrainingSettings`) that belong
    to no fold: every fold trains on them and none predicts them (e.g. the `validate` split when
    the folds cover `train` only)."""
    if not training.train_splits:
        return np.zeros(0, np.int64)
    rows = cache.rows(training.train_splits)
    labeled = np.diff(cache.label_offsets)[rows] > 0
    return rows[labeled & (cache.fold[rows] < 0)]


def data_fingerprint(cache):
    """A short hash of the videos, their order and their folds: new shards change it."""
    digest = hashlib.sha256("\n".join(cache.ids.tolist()).encode())
    digest.update(np.ascontiguousarray(cache.fold, np.int64).tobytes())
    return digest.hexdigest()[:16]


def invalidate_if_changed(out, config_hash, data_hash):
    """Remove outputs trained from another spec or other data; returns True when it did."""
    stale = False
    for path in [out / "metrics.json", *out.glob(f"fold_*/{FOLD_FILE}")]:
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        if (record.get("config_hash"), record.get("data_hash")) != (config_hash, data_hash):
            stale = True
    if stale:
        for child in out.iterdir():
            if child.name == LOCK_FILE:  # held by this run
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    return stale


class FoldModels:
    """One compiled model that every fold of a spec trains in turn.

    Each fold starts from exactly the weights (and dropout seeds) that a fresh build under the
    fold's seed has, and from a zeroed optimizer, so a fold's result does not depend on which
    other folds ran in the same process; but the train and predict functions are traced once
    per process instead of once per fold (seconds per fold for the recurrent and VLAD models).

    In a cluster, `local` is the process's own copy of the model outside the distribution (the
    chief's evaluation and predictions); None otherwise.
    """

    def __init__(self, spec, cache):
        self.spec, self.cache = spec, cache
        self.model, self.optimizer_state = None, None
        self.training = spec.training_settings()
        self.local = None
        if joined_cluster() is not None:
            self.local = LocalModel(self._build_copy)
        self.teacher = None
        if self.training.teacher:
            from .distill import Teacher

            self.teacher = Teacher(self.training.teacher, cache, self.training.teacher_weight)

    def _build_copy(self):
        from . import build
        from .training import compile_model

        return compile_model(build(self.spec, self.cache.num_classes), self.training,
                             self.steps_per_epoch())

    def steps_per_epoch(self):
        """Steps of an average fold's epoch (schedules in epochs use it; the same for all
        folds, so the compiled optimizer fits every fold)."""
        labeled = len(labeled_fold_rows(self.cache))
        per_fold = labeled * (self.cache.num_folds - 1) // self.cache.num_folds + \
            len(extra_training_rows(self.cache, self.training))
        return max(1, per_fold // self.training.batch_size)

    def start(self, fold, train_rows, seed):
        """The model, ready to train fold `fold`, and its training batches."""
        from . import build
        from .training import CacheBatches, compile_model, dtype_policy, set_start_values

        training = self.training
        keras.mixed_precision.set_global_policy(dtype_policy(training))
        keras.utils.set_random_seed(seed)
        if self.model is None:
            model = compile_model(build(self.spec, self.cache.num_classes), training,
                                  self.steps_per_epoch())
            model.optimizer.build(model.trainable_variables)
            self.model = model
            self.optimizer_state = [keras.ops.convert_to_numpy(v)
                                    for v in model.optimizer.variables]
        else:  # the variables a fresh build would start from (it only serves as their source)
            fresh = build(self.spec, self.cache.num_classes)
            for target, source in zip(self.model.variables, fresh.variables, strict=True):
                target.assign(source.value)
            for variable, value in zip(self.model.optimizer.variables, self.optimizer_state,
                                       strict=True):
                variable.assign(value)
        set_start_values(self.model, training, self.cache, train_rows)
        data = CacheBatches(self.cache, train_rows, self.spec.level, training, shuffle=True,
                            seed=seed, teacher=self.teacher, shard=True)
        return self.model, data


def train_fold(spec, out, cache, fold, progress=False, models=None, _attempt=0):
    """Train, validate and predict fold `fold`; returns the fold's record (fold.json).

    Every finished epoch is committed by an `EpochCheckpoint` in `fold_<k>/`; a run killed at
    any moment resumes from the last commit to the result an uninterrupted run has.

    `models`: a `FoldModels` shared by the folds trained in this process.

    In a cluster (see the module), every process trains; the chief alone also predicts and
    writes, and returns the record; the others return None.
    """
    from ..progress import fit_verbosity
    from .callbacks import GapEvaluation
    from .checkpoints import EpochCheckpoint
    from .training import CacheBatches

    training = spec.training_settings()
    models = models or FoldModels(spec, cache)
    chief = is_chief()
    folder = out / f"fold_{fold}"
    if chief:
        folder.mkdir(parents=True, exist_ok=True)
    fold_rows = labeled_fold_rows(cache)
    train_rows = np.concatenate([fold_rows[cache.fold[fold_rows] != fold],
                                 extra_training_rows(cache, training)])
    val_rows = fold_rows[cache.fold[fold_rows] == fold]
    test_rows = cache.rows("test")
    if not len(train_rows) or not len(val_rows):
        raise Yt8mError(f"fold {fold} of {cache.num_folds} has no training or no held-out videos")
    model, data = models.start(fold, train_rows, seed=spec.seed * 1000 + fold)
    checkpoint = EpochCheckpoint(
        folder, {"config_hash": spec.config_hash(), "data_hash": data_fingerprint(cache)},
        monitor="val_gap", patience=training.early_stopping,
        say=lambda line: log(out, line), write=chief)
    initial_epoch = checkpoint.restore(model)
    if initial_epoch:
        log(out, f"{out.name} fold {fold}: resuming after epoch {initial_epoch}", quiet=True)
    elif chief:  # a fresh start: no curves of an earlier, abandoned run
        shutil.rmtree(out / "tensorboard" / f"fold_{fold}", ignore_errors=True)
    data.start_at(initial_epoch)
    held_out = CacheBatches(cache, val_rows, spec.level, training, shuffle=False)
    guard = NanGuard()
    callbacks = [GapEvaluation(held_out, cache.num_classes, pad_to=training.batch_size,
                               local=models.local),
                 guard, checkpoint]
    if chief and all(importlib.util.find_spec(m) for m in ("tensorflow", "tensorboard")):
        callbacks.append(keras.callbacks.TensorBoard(
            str(out / "tensorboard" / f"fold_{fold}"), write_graph=False, profile_batch=0))
    start = time.perf_counter()
    if not checkpoint.finished(training.epochs):
        try:
            # shuffle=False: the loader's own order is a function of (seed, epoch); Keras'
            # batch shuffle draws from the global `random` state, which a resume cannot restore
            model.fit(data, epochs=training.epochs, initial_epoch=initial_epoch,
                      shuffle=False, verbose=fit_verbosity(progress and chief),
                      callbacks=callbacks)
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            frames = f" or num_frames (now {training.num_frames})" \
                if spec.level == "frame" else ""
            raise Yt8mError(
                f"{spec.source}: fold {fold} ran out of memory ({type(e).__name__}). Lower "
                f"training.batch_size (now {training.batch_size}){frames}, or set "
                f"mixed_precision: mixed_bfloat16; then run again: the fold resumes from its "
                f"last finished epoch") from e
    seconds = time.perf_counter() - start
    if guard.where is not None:
        epoch, step = guard.where
        checkpoint.clear()
        raise Yt8mError(f"{spec.source}: training diverged in fold {fold}, epoch {epoch + 1}, at "
                        f"{step} became NaN; lower the learning rate or set clipnorm, then "
                        f"run again. Other folds' outputs are untouched")
    if not chief:
        return None
    if checkpoint.best() is None:
        raise Yt8mError(f"{spec.source}: fold {fold} finished without a best epoch")
    evaluator = Evaluator(cache.num_classes, from_logits=True)

    def finish(best):  # predict and save with the best epoch's weights
        predict_into(folder, "oof", best, spec, cache, val_rows, evaluator)
        predict_into(folder, "test", best, spec, cache, test_rows)
        with atomic_path(folder / "best.weights.h5", suffix=".weights.h5") as tmp:
            best.save_weights(str(tmp))
        if fold == 0:
            with atomic_path(out / "model.keras", suffix=".keras") as tmp:
                best.save(tmp)

    try:
        weights = checkpoint.best_weights(model)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        if _attempt:
            raise
        log(out, f"{folder}: the best epoch's checkpoint is damaged ({type(e).__name__}: {e}); "
                 f"fold {fold} starts again")
        checkpoint.clear()
        if models.local is not None:  # the other processes have moved on
            raise Yt8mError(f"{spec.source}: fold {fold}'s best weights were damaged and are "
                            f"deleted; run the same command again in every process to train "
                            f"the fold again") from e
        return train_fold(spec, out, cache, fold, progress, models, _attempt=1)
    if models.local is None:
        for variable, value in zip(model.weights, weights, strict=True):
            variable.assign(value)
        finish(model)
    else:  # the chief's own copy, outside the distribution
        models.local.run(finish, weights)
    scores = evaluator.result()
    epochs_run = checkpoint.epochs_done
    record = {"fold": fold, "config_hash": spec.config_hash(),
              "data_hash": data_fingerprint(cache), "metrics": scores,
              "epochs": epochs_run, "best_epoch": checkpoint.best()[0] + 1,
              "distribution": distribution_record(), "train_videos": int(len(train_rows)),
              "seconds": round(seconds, 2),
              "examples_per_s": round(len(train_rows) * (epochs_run - initial_epoch)
                                      / max(seconds, 1e-9), 1)}
    write_json(folder / FOLD_FILE, record)
    checkpoint.clear_backups()
    return record


def refit_epochs(records):
    """The epochs a refit model trains: the mean of the folds' best epochs, rounded."""
    return max(1, round(float(np.mean([r["best_epoch"] for r in records]))))


def train_refit(spec, out, cache, models, progress=False):
    """Train one model on every labeled video for the epochs the folds chose (`refit_epochs`)
    and predict the test videos with it, into `<out>/refit/`; returns (record, trained now).

    Like a fold it commits every epoch (`EpochCheckpoint`, no monitor: the last epoch is the
    model) and resumes from the last commit; `refit.json` is written last. The schedule's steps
    per epoch stay the folds' (one compiled optimizer for all), so an epoch-based decay comes
    about 1/K of the epoch early with K folds.

    In a cluster the chief reads the folds' records (and an earlier refit's) and tells the
    others; every process trains; the chief alone predicts and writes (the others return
    (None, trained now))."""
    from ..progress import fit_verbosity
    from .checkpoints import EpochCheckpoint

    folder, chief = out / "refit", is_chief()
    done = share_from_chief(json.loads((folder / REFIT_FILE).read_text())
                            if chief and (folder / REFIT_FILE).is_file() else None)
    if done is not None:
        return (done if chief else None), False
    training = spec.training_settings()
    records = []
    if chief:
        folder.mkdir(parents=True, exist_ok=True)
        records = [json.loads((out / f"fold_{k}" / FOLD_FILE).read_text())
                   for k in range(cache.num_folds)]
    epochs = share_from_chief(refit_epochs(records) if chief else None)
    rows = np.concatenate([labeled_fold_rows(cache), extra_training_rows(cache, training)])
    model, data = models.start(-1, rows, seed=spec.seed * 1000 + 999)
    checkpoint = EpochCheckpoint(
        folder, {"config_hash": spec.config_hash(), "data_hash": data_fingerprint(cache),
                 "epochs": epochs}, say=lambda line: log(out, line), write=chief)
    initial_epoch = checkpoint.restore(model)
    data.start_at(initial_epoch)
    guard, start = NanGuard(), time.perf_counter()
    if not checkpoint.finished(epochs):
        model.fit(data, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
                  verbose=fit_verbosity(progress and chief), callbacks=[guard, checkpoint])
    seconds = time.perf_counter() - start
    if guard.where is not None:
        checkpoint.clear()
        raise Yt8mError(f"{spec.source}: the refit model diverged in epoch "
                        f"{guard.where[0] + 1}; lower the learning rate or set clipnorm, then "
                        f"run again (the folds are kept)")
    if not chief:
        return None, True

    def finish(trained):
        with atomic_path(folder / "best.weights.h5", suffix=".weights.h5") as tmp:
            trained.save_weights(str(tmp))
        predict_into(folder, "test", trained, spec, cache, cache.rows("test"))

    if models.local is None:
        finish(model)
    else:  # the chief's own copy of the trained weights, outside the distribution
        models.local.run(finish, model)
    record = {"config_hash": spec.config_hash(), "data_hash": data_fingerprint(cache),
              "epochs": epochs, "fold_best_epochs": [r["best_epoch"] for r in records],
              "train_videos": int(len(rows)), "seconds": round(seconds, 2)}
    write_json(folder / REFIT_FILE, record)
    checkpoint.clear_backups()
    return record, True


def predict_into(folder, part, model, spec, cache, rows, evaluator=None, progress=False):
    """Write `model`'s float32 logits of the cache's `rows` as `folder`'s `part` predictions,
    batch by batch at their rows (memory stays that of a batch; with the spec's `top_k`, the
    scores come from the dense batches before they are reduced). The one path by which a trained
    model predicts: a fold's held-out and test videos, a refit model's, and `yt8m predict`.
    `evaluator`: an `Evaluator` also updated with each batch and its labels."""
    from .training import CacheBatches, predict_logits

    training = spec.training_settings()
    with predictions.writer(folder, part, cache.ids[rows], cache.num_classes, np.float32,
                            spec.top_k) as out:
        if len(rows):
            predict_logits(model, CacheBatches(cache, rows, spec.level, training, False),
                           out=out, evaluator=evaluator, progress=progress)


def write_mean(parts, folder, part, ids, num_classes, top_k, evaluator=None, labels=None):
    """`folder`'s `part` predictions: the float64 mean of the `parts` (loaded `Predictions` of
    the same videos, e.g. the fold models' test logits), chunk by chunk; `evaluator` is updated
    with each chunk's mean and `labels(chunk)`."""
    for each in parts:
        if not np.array_equal(each.ids, ids):
            raise Yt8mError(f"{each.path}: {len(each.ids)} predictions that are not the "
                            f"{len(ids)} videos in the cache's order; predict them again")
    with predictions.writer(folder, part, ids, num_classes, top_k=top_k) as mean:
        for chunk in predictions.chunks(len(ids)):
            total = np.zeros((chunk.stop - chunk.start, num_classes), np.float64)
            for each in parts:
                total += each.logits[chunk]
            total /= len(parts)
            mean[chunk] = total
            if evaluator is not None:
                evaluator.update(total.astype(np.float32), labels(chunk))


def assemble(spec, out, cache):
    """Pool the folds into `oof_*`/`test_*` predictions and `metrics.json`; returns metrics.

    Streams row chunks: the OOF rows go to their place in the cache's row order, the test
    logits are the float64 mean of the fold models' chunks, and the scores come from the folds'
    float32 logits, so memory is that of a chunk whatever the number of videos.
    """
    rows = labeled_fold_rows(cache)
    test_rows = cache.rows("test")
    records, evaluator, covered = [], Evaluator(cache.num_classes, from_logits=True), 0
    folds = [out / f"fold_{fold}" for fold in range(cache.num_folds)]
    store = {"num_classes": cache.num_classes, "top_k": spec.top_k}
    with predictions.writer(out, "oof", cache.ids[rows], cache.num_classes,
                            top_k=spec.top_k) as oof:
        for folder in folds:
            records.append(json.loads((folder / FOLD_FILE).read_text()))
            part = predictions.load(folder, "oof")
            fold_rows = rows[cache.fold[rows] == records[-1]["fold"]]
            if not np.array_equal(part.ids, cache.ids[fold_rows]):
                raise Yt8mError(f"{part.path}: the fold's out-of-fold predictions are not its "
                                f"videos in the cache's order; train the fold again (delete "
                                f"{folder})")
            at = np.searchsorted(rows, fold_rows)
            for chunk in predictions.chunks(len(fold_rows)):
                logits = np.asarray(part.logits[chunk], np.float32)
                oof[at[chunk]] = logits
                evaluator.update(logits, cache.label_lists(fold_rows[chunk]))
            covered += len(fold_rows)
        if covered != len(rows):
            raise Yt8mError(f"{out}: the folds' out-of-fold predictions do not cover every "
                            f"labeled video exactly once ({covered} for {len(rows)} videos)")
        scores = evaluator.result()
    ids = cache.ids[test_rows]
    fold_tests = [predictions.load(folder, "test") for folder in folds]
    refit = None
    if spec.training_settings().refit:  # the refit model's test logits are the source's
        refit = json.loads((out / "refit" / REFIT_FILE).read_text())
        write_mean(fold_tests, out, "folds_test", ids, cache.num_classes, spec.top_k)
        write_mean([predictions.load(out / "refit", "test")], out, "test", ids,
                   cache.num_classes, spec.top_k)
    else:
        write_mean(fold_tests, out, "test", ids, cache.num_classes, spec.top_k)
        for path in predictions.files(out, "folds_test"):
            path.unlink()
    metrics = {"id": out.name, "model": spec.model, "preset": spec.preset, "level": cache.level,
               "config_hash": spec.config_hash(), "data_hash": data_fingerprint(cache),
               "oof": scores, "folds": records, "predictions": store, "refit": refit,
               "test_from": "refit" if refit else "fold mean",
               "teacher": _teacher_record(spec),
               "seconds": round(sum(r["seconds"] for r in records), 1),
               "backend": keras.backend.backend(),
               "dtype_policy": keras.mixed_precision.global_policy().name,
               "yt8m_version": __version__}
    write_json(out / "metrics.json", metrics)
    return metrics


def open_cache(spec, features="features", level="frame"):
    """The feature cache `spec` trains on at `level`; a frame-level model on a video-level
    cache is refused (it has no frames to read)."""
    from ..features.cache import FeatureCache

    if level == "video" and spec.level != "video":
        raise Yt8mError(f"{spec.source}: {spec.model} is a frame-level model and "
                        f"{features}/video/ holds video-level features only; build the frame "
                        f"cache (make features LEVEL=frame) or train the video-level specs")
    return FeatureCache(features, level)


def _teacher_record(spec):
    """The distillation teacher's record for metrics.json (None without one)."""
    from .distill import fingerprint

    training = spec.training_settings()
    if not training.teacher:
        return None
    teacher = Path(training.teacher)
    oof = predictions.source_metrics(teacher).get("oof") or {}
    return {"source": str(teacher), "weight": training.teacher_weight,
            "oof_gap": oof.get("gap"), "fingerprint": fingerprint(teacher)}


def train(spec_path, folds=None, features="features", models_dir=None, progress=False,
          distribute=False, level="frame"):
    """Train the missing folds of a spec (all, or those in `folds`), then assemble if complete.

    `level`: the cache to train on, `features/<level>/` (video-level models train on either:
    the video-level features, or the frame cache's frame means).
    `distribute`: data parallelism over the local devices (see `data_parallel_scope`), or over
    the processes of the cluster that the environment describes (see the module), which this
    process joins first.

    Returns (metrics or None when folds are still missing, folds trained now); (None, folds
    trained now) in a cluster's processes other than the chief.
    """
    from .distribution import cluster_from_environment, join_cluster
    from .registry import load_spec

    spec = load_spec(spec_path)
    cluster = cluster_from_environment() if distribute else None
    if cluster is not None:  # before the backend computes anything
        join_cluster(cluster)
    keras.backend.clear_session()  # nothing of an earlier spec trained in this process lingers
    cache = open_cache(spec, features, level)
    if cache.num_folds < 2:
        raise Yt8mError(f"{features}/folds.csv assigns no folds; build the features first")
    out = model_dir(spec_path, models_dir)
    if not is_chief():  # the chief alone reads and writes the model folder
        return _train_folds(spec, spec_path, out, cache, folds, progress, distribute)
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out, f"yt8m train {spec_path}"):
        return _train_folds(spec, spec_path, out, cache, folds, progress, distribute)


def _same_run_as_chief(spec, cache, wanted):
    """In a cluster, stop a process whose spec, features or folds are not the chief's (it would
    train another model than the one the chief records)."""
    if joined_cluster() is None:
        return
    own = [spec.config_hash(), data_fingerprint(cache), list(wanted)]
    chiefs = share_from_chief(own)
    if chiefs != own:
        raise Yt8mError(f"this process of the cluster trains {own} (config hash, data hash, "
                        f"folds) and the chief {chiefs}: give every process the same spec, "
                        f"features and folds")


def _train_folds(spec, spec_path, out, cache, folds, progress, distribute):
    chief = is_chief()
    if chief and invalidate_if_changed(out, spec.config_hash(), data_fingerprint(cache)):
        log(out, f"{spec_path} or the features changed since {out}/ was trained: its old "
                 f"outputs were removed")
    wanted = range(cache.num_folds) if folds is None else folds
    _same_run_as_chief(spec, cache, wanted)
    trained, models = [], FoldModels(spec, cache)
    for fold in wanted:
        if not 0 <= fold < cache.num_folds:
            raise Yt8mError(f"fold {fold} does not exist; folds are 0..{cache.num_folds - 1}")
    with data_parallel_scope(distribute):
        for fold in wanted:
            if share_from_chief(chief and (out / f"fold_{fold}" / FOLD_FILE).is_file()):
                continue
            try:
                record = train_fold(spec, out, cache, fold, progress, models)
            except Yt8mError as e:
                log(out, f"{out.name} fold {fold} failed: {e}")
                raise
            trained.append(fold)
            if record is None:  # a process of a cluster other than the chief
                continue
            log(out, f"{out.name} fold {fold}: GAP@20 {record['metrics']['gap']:.4f} "
                     f"({record['epochs']} epochs, {record['examples_per_s']:.0f} examples/s, "
                     f"{record['seconds']:.1f} s)")
        done = share_from_chief(chief and all((out / f"fold_{k}" / FOLD_FILE).is_file()
                                              for k in range(cache.num_folds)))
        refit_now = False
        if done and spec.training_settings().refit:
            record, refit_now = train_refit(spec, out, cache, models, progress)
            if refit_now and record is not None:
                log(out, f"{out.name} refit: {record['epochs']} epochs on "
                         f"{record['train_videos']} videos ({record['seconds']:.1f} s)")
    if not done or not chief:
        return None, trained
    previous = predictions.source_metrics(out)
    store = previous.get("predictions") or {}
    # the form the spec asked for at the last assembly: a later `yt8m compact` is kept (same
    # scores); False: no metrics.json, or one from before top_k
    stored = store.get("compacted_from", store.get("top_k", False))
    refit_changed = bool(previous.get("refit")) != spec.training_settings().refit
    if trained or refit_now or refit_changed or stored != spec.top_k:
        return assemble(spec, out, cache), trained
    os.utime(out / "metrics.json")  # current for this spec: Make's file target is satisfied
    return json.loads((out / "metrics.json").read_text()), trained


def _train_in_worker(spec_path, folds, features, models_dir, distribute, level):
    """`train` in a worker process of `train_many`: (metrics, trained, error text). Errors travel
    as text: a Yt8mError subclass need not survive pickling."""
    try:
        metrics, trained = train(spec_path, folds, features, models_dir, progress=False,
                                 distribute=distribute, level=level)
        return metrics, trained, None
    except Yt8mError as e:
        return None, [], str(e)


def train_many(spec_paths, jobs, folds=None, features="features", models_dir=None,
               distribute=False, level="frame"):
    """Train several specs in `jobs` worker processes, each taking the next spec as it finishes
    one (one TensorFlow start-up per worker); yields (spec path, metrics, trained, error text)
    as each spec ends, an error not stopping the others.

    Why: a small model leaves most of a multi-core CPU idle (its steps are too short to spread
    over the cores), so two specs side by side on two cores train about 1.4x faster than one
    after the other. Each spec's result is the one it has trained alone (every fold seeds itself
    and starts from fresh variables). The workers die with this process.
    """
    import concurrent.futures as cf
    import multiprocessing

    from ..fileio import die_with_parent

    with cf.ProcessPoolExecutor(max_workers=min(jobs, len(spec_paths)),
                                mp_context=multiprocessing.get_context("spawn"),
                                initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_train_in_worker, str(path), folds, features, models_dir,
                               distribute, level): path for path in spec_paths}
        for future in cf.as_completed(futures):
            yield (futures[future], *future.result())
