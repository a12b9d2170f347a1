"""Training and evaluating a raw-video spec (StNet) on a Kinetics-style dataset: `yt8m train`.

For model id `<id>` (the spec's file stem), `models/<id>/` receives:

    log.csv              one row per epoch (loss, accuracy, top-5 accuracy)
    tensorboard/         the same curves for TensorBoard (`make tensorboard`)
    model.keras          the trained model (training-time segments and crop)
    validate_scores.npz  video_ids, labels, scores (videos, clips, classes): every clip's softmax
    test_scores.npz      video_ids, scores: the same for the test split (when there is one)
    skipped.csv          the videos left out as unreadable or too short (when asked to skip)
    metrics.json         written last: clip- and video-level top-1/top-5 on `validate`, ...
    train.log            what happened, time-stamped
    state.json, backup/  while it trains: the committed epochs (`EpochCheckpoint`; a change of
                         the spec or the videos starts again)

Training is the reference's: SGD with momentum, the learning rate x`lr_decay` at 1/3 and 2/3 of
the steps, L2 on every kernel, softmax cross-entropy, one random clip per video per epoch. An
interrupted run resumes from its last finished epoch to the result of an uninterrupted one.
Evaluation rebuilds the network for `test_segments` segments and `test_crop` centre crops (the
weights do not depend on either), scores `test_clips` clips per video and averages their
softmax for the video.
"""

import hashlib
import importlib.util
import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from ..errors import Yt8mError
from ..features.clip_loader import ClipSampling, TrainingClips, predict_videos, scan
from ..fileio import atomic_path, output_lock, write_json, write_text
from ..input.kinetics.dataset import class_names, read_split
from ..predictions import source_metrics
from ..progress import fit_verbosity
from .checkpoints import EpochCheckpoint, require_optimizer_built
from .clip_specs import load_clip_spec
from .guards import NanGuard, is_out_of_memory, log
from .training import dtype_policy


def top_k_accuracy(scores, labels, k):
    """Share of rows of `scores` (n, classes) whose label is among their k highest scores."""
    if not len(labels):
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((top == np.asarray(labels)[:, None]).any(axis=1).mean())


def accuracy_report(scores, labels):
    """Clip- and video-level top-1/top-5 of `scores` (videos, clips, classes): a clip is scored
    alone; a video by the mean of its clips' softmax."""
    videos, clips = scores.shape[:2]
    clip_scores = scores.reshape(videos * clips, -1)
    clip_labels = np.repeat(labels, clips)
    video_scores = scores.mean(axis=1)
    return {"clip_top1": top_k_accuracy(clip_scores, clip_labels, 1),
            "clip_top5": top_k_accuracy(clip_scores, clip_labels, 5),
            "video_top1": top_k_accuracy(video_scores, labels, 1),
            "video_top5": top_k_accuracy(video_scores, labels, 5),
            "videos": int(videos), "clips": int(videos * clips)}


def _splits(data, skip):
    """{split: Split} of the dataset's train split and whichever of validate/test it has."""
    data = Path(data)
    if not data.is_dir():
        raise Yt8mError(f"{data}: no such dataset folder; run `make sample-video` for the sample "
                        f"competition or set `data:` in the spec")
    splits = {"train": read_split(data, "train", skip_missing=skip)}
    for name in ("validate", "test"):
        if (data / f"{name}.csv").is_file() or (data / name).is_dir():
            splits[name] = read_split(data, name, skip_missing=skip)
    return splits


def data_fingerprint(splits):
    """A short hash of every video's id, label, size and modification time."""
    digest = hashlib.sha256()
    for name, split in splits.items():
        for clip in split.clips:
            stat = clip.path.stat()
            digest.update(f"{name},{clip.video_id},{clip.label},{clip.path},{stat.st_size},"
                          f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _save_scores(path, **arrays):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _save_model(model, path):
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def _labels(clips, classes, where):
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({c.label for c in clips if c.label not in index})
    if unknown:
        raise Yt8mError(f"{where}: label {unknown[0]!r} is not a class of the training split")
    return np.array([index[c.label] for c in clips], np.int32)


def up_to_date(out, spec, fingerprint):
    """metrics.json when `out` was trained from this spec and these videos, else None."""
    metrics = source_metrics(out)
    if metrics.get("config") == spec.config_hash() and metrics.get("data") == fingerprint:
        return metrics
    return None


def _compile(model, settings, steps_per_epoch, classes):
    total = settings.epochs * steps_per_epoch
    lr, decay = settings.learning_rate, settings.lr_decay
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [max(1, total // 3), max(2, 2 * total // 3)], [lr, lr * decay, lr * decay**2])
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=settings.momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                 keras.metrics.SparseTopKCategoricalAccuracy(min(5, classes), name="top5")])


class EpochSeed(keras.callbacks.Callback):
    """Tells the training clips which epoch Keras runs (a resumed run starts past 0)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)


def train(spec_path, models_dir=None, progress=False, skip_bad=False):
    """Train and evaluate one raw-video spec; returns (metrics, trained: bool)."""
    start = time.time()
    spec_path = Path(spec_path)
    spec = load_clip_spec(spec_path)
    arch, settings = spec.settings()[0], spec.training_settings()
    skip = skip_bad or settings.skip_bad_videos
    out = Path(models_dir or spec_path.parent) / spec_path.stem
    splits = _splits(spec.data, skip)
    fingerprint = data_fingerprint(splits)
    done = up_to_date(out, spec, fingerprint)
    if done:
        return done, False
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out, f"yt8m train {spec_path}"):
        return _train(spec, spec_path, out, arch, settings, splits, fingerprint, skip, progress,
                      start), True


def _train(spec, spec_path, out, arch, settings, splits, fingerprint, skip, progress, start):
    for stale in ("metrics.json", "skipped.csv"):  # of another spec or other videos
        (out / stale).unlink(missing_ok=True)
    classes = class_names(splits["train"])
    length = arch["segment_length"]
    sides = settings.short_side, settings.long_side
    train_sampling = ClipSampling(arch["segments"], length, sides[0], arch["image_size"],
                                  sides[1])
    test_sampling = ClipSampling(settings.test_segments, length, sides[0], settings.test_crop,
                                 sides[1])
    usable, skipped = {}, []
    for name, split in splits.items():
        usable[name], bad = scan(split.clips, length, skip, settings.workers * 2, progress,
                                 f"{name} videos")
        skipped += [(name, str(p), why) for p, why in bad]
        skipped += [(name, where, f"missing video {stem}") for where, stem in split.missing]
    if skipped:
        write_text(out / "skipped.csv", pd.DataFrame(skipped, columns=["split", "video", "problem"])
                   .to_csv(index=False))
        log(out, f"{out.name}: skipped {len(skipped)} unusable videos (listed in "
                  f"{out / 'skipped.csv'})", quiet=not progress)
    train_labels = _labels(usable["train"], classes, f"{spec.data}/train")

    keras.utils.set_random_seed(spec.seed)
    # every spec sets its own policy: one process may train several specs in turn
    keras.mixed_precision.set_global_policy(dtype_policy(settings))
    model = spec.build(len(classes))
    if settings.pretrained:
        from .pretrained import load_imagenet

        count = load_imagenet(model, settings.pretrained, length)
        log(out, f"{out.name}: {count} ResNet layers initialised from {settings.pretrained}",
             quiet=not progress)
    batches = TrainingClips(usable["train"], train_labels, train_sampling,
                            settings.batch_size, seed=spec.seed, skip_bad=skip,
                            cache_frames=settings.cache_frames, workers=settings.workers,
                            use_multiprocessing=settings.use_multiprocessing)
    _compile(model, settings, len(batches), len(classes))
    require_optimizer_built(model)
    checkpoint = EpochCheckpoint(out, {"config": spec.config_hash(), "data": fingerprint},
                                 say=lambda line: log(out, line))
    initial_epoch = checkpoint.restore(model)
    if not initial_epoch:
        shutil.rmtree(out / "tensorboard", ignore_errors=True)
    guard = NanGuard()
    callbacks = [EpochSeed(batches), guard, checkpoint]
    if all(importlib.util.find_spec(m) for m in ("tensorflow", "tensorboard")):  # tf.summary
        callbacks.append(keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False,
                                                     profile_batch=0))
    try:
        model.fit(batches, epochs=settings.epochs, initial_epoch=initial_epoch,
                  shuffle=False, callbacks=callbacks, verbose=fit_verbosity(progress))
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        raise Yt8mError(f"{spec.source}: out of memory ({type(e).__name__}). Lower "
                        f"training.batch_size (now {settings.batch_size}), or set "
                        f"mixed_precision: mixed_bfloat16; then run again: training resumes "
                        f"from its last finished epoch") from e
    if guard.where is not None:
        checkpoint.clear()
        raise Yt8mError(f"{spec.source}: training diverged: the loss became NaN in epoch "
                        f"{guard.where[0] + 1}, {guard.where[1]}; lower the learning rate "
                        f"(now {settings.learning_rate}) and run again")
    _save_model(model, out / "model.keras")

    test_model = spec.build(len(classes), segments=test_sampling.segments,
                            image_size=test_sampling.crop)
    test_model.set_weights(model.get_weights())
    predict = dict(sampling=test_sampling, clips_per_video=settings.test_clips,
                   batch_size=settings.eval_batch_size, workers=settings.workers,
                   progress=progress)
    metrics = {"model": spec.model, "preset": spec.preset, "config": spec.config_hash(),
               "data": fingerprint, "dataset": spec.data, "classes": classes,
               "pretrained": settings.pretrained}
    last = checkpoint.history[-1]
    metrics["train"] = {"epochs": checkpoint.epochs_done, "loss": last["loss"],
                        "accuracy": last["accuracy"]}
    for name in ("validate", "test"):
        clips = usable.get(name)
        if not clips:
            continue
        scores = predict_videos(test_model, clips, what=f"{name} videos", **predict)
        arrays = {"video_ids": np.array([c.video_id for c in clips]), "scores": scores,
                  "classes": np.array(classes)}
        if all(c.label is not None for c in clips):
            labels = _labels(clips, classes, f"{spec.data}/{name}")
            arrays["labels"] = labels
            metrics[name] = accuracy_report(scores, labels)
        _save_scores(out / f"{name}_scores.npz", **arrays)
    metrics["skipped"] = {name: sum(1 for s in skipped if s[0] == name) for name in splits}
    metrics["seconds"] = round(time.time() - start, 1)
    write_json(out / "metrics.json", metrics)
    checkpoint.clear_backups()
    summary = json.dumps(metrics.get("validate", {}))
    log(out, f"{out.name}: {metrics['train']['epochs']} epochs, {metrics['seconds']} s; "
              f"validate {summary}", quiet=True)
    return metrics
