"""`make bench`: cache build and loader throughput, measured side by side in one run.

Method: a generated competition (real record layout, 60-300 frames per video) is written to a
temporary folder. Each figure is the median of several repeats:
- cache build, one worker process and the default number (one per core, at most one per
  shard), from scratch into an empty folder;
- the same decoding without writing anything, like for like with
- the straightforward alternative on the same shards: `tf.data.TFRecordDataset` with one
  `tf.io.parse_single_sequence_example` + `tf.io.decode_raw` per record, to numpy (decoding only,
  nothing written); these four are timed in turn, one run of each per round after a warm-up
  round, so that all see the same machine load;
- the batch loader over the built cache, shuffled across shards, at the demo (60) and paper (300)
  frame counts, with background threads and without.

Training: a fold of the NeXtVLAD demo spec on the sample competition (`--quick`: frame_logistic
on the benchmark's cache) against a plain `fit` of the same epochs (`bench.train.fold_overhead`),
and the training path per backend and feed (`bench.train.train_path_report`; not with --quick).

Scoring: random predictions over 3862 classes with about 3 labels per video, float64 so that no
two scores tie (where both implementations are defined to agree exactly):
- `yt8m.bench.heap_metrics` (one video and one pair at a time, Python heaps per class) against
  `yt8m.metrics.Evaluator` on the same videos, GAP@20 and mAP;
- the streaming `Evaluator` alone on a million videos (float32 batches of 10,000, fed in turn),
  with the memory its kept top-20 triplets take;
- `Evaluator` (update with label-id lists, then result: all four metrics) against one NumPy
  pass over the same float32 matrix (`scores.max(axis=1)`), 100,000 videos (10,000 with
  `--quick`), timed in turn in one run, as the ratio of their medians: on uniform scores, and
  on logits whose level differs from video to video as a model's do; with `Evaluator`'s
  default threads and with one.

Raw video: Kinetics-sized H.264 videos (340 x 256, 25 fps) written with the sample's renderer;
StNet training batches (the paper's sampling: 7 segments x 5 frames, short side 256, 224 crops),
built by `TrainingClips.__getitem__` one after another, then by a pool of 2 threads calling it
for different batches as Keras' `PyDataset` workers do.

Models: every zoo model at the demo preset with 3862 classes on the backend Keras runs on,
compiled with its training defaults; synthetic uint8 batches of the demo size (32 videos x 32
frames); median time of a `train_on_batch` and of a `predict_on_batch` step after two warm-up
steps (the input pipeline is measured separately above).
"""

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from yt8m.bench.reports import REPORTS
from yt8m.fileio import write_text


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}")


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved_medians(fns, repeats):
    """Median seconds of each of `fns`, run in turn (a warm-up round, then `repeats` rounds) so
    that a change in machine load falls on all of them alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, seconds in zip(fns, times):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
    return [statistics.median(seconds) for seconds in times]


def _tf_per_record(files):
    import tensorflow as tf

    context = {"id": tf.io.FixedLenFeature([], tf.string),
               "labels": tf.io.VarLenFeature(tf.int64)}
    sequence = {"rgb": tf.io.FixedLenSequenceFeature([], tf.string),
                "audio": tf.io.FixedLenSequenceFeature([], tf.string)}
    count = 0
    for record in tf.data.TFRecordDataset([str(f) for f in files]):
        ctx, seq = tf.io.parse_single_sequence_example(record, context, sequence)
        tf.io.decode_raw(seq["rgb"], tf.uint8).numpy()
        tf.io.decode_raw(seq["audio"], tf.uint8).numpy()
        ctx["labels"].values.numpy()
        count += 1
    return count


def _yt8m_decode(files):
    from yt8m.input.schema import VERSIONS, decode, parse
    from yt8m.input.tfrecord import iter_records

    count = 0
    for path in files:
        for index, offset, payload in iter_records(path):
            decode(parse(payload, path, index, offset), VERSIONS["2018"], "frame", path, index)
            count += 1
    return count


def _pass_ratio_scores(kind, videos, classes, labels, rng):
    """float32 scores: uniform, or logits with a level per video (labels' classes raised)."""
    if kind == "uniform":
        return rng.random((videos, classes), dtype=np.float32)
    scores = rng.normal(-7.0, 1.5, (videos, classes)).astype(np.float32)
    scores += rng.normal(0.0, 1.5, (videos, 1)).astype(np.float32)
    for row, ids in enumerate(labels):
        scores[row, ids] += 5.0
    return scores


def _pass_ratio(scores, labels, repeats, from_logits):
    """Median seconds of one `scores.max(axis=1)` pass and of `Evaluator` (update + result)
    with its default threads and with one, timed in turn so that all see the same load."""
    from yt8m.metrics import Evaluator

    def scorer(threads):
        def score():
            evaluator = Evaluator(scores.shape[1], from_logits=from_logits, threads=threads)
            evaluator.update(scores, labels)
            return evaluator.result()
        return score

    return _interleaved_medians([lambda: scores.max(axis=1), scorer(None), scorer(1)], repeats)


def _pass_ratio_rows(quick, classes, rng):
    from yt8m.metrics import Evaluator

    videos, repeats = (10_000, 3) if quick else (100_000, 7)
    threads = Evaluator(classes).threads
    labels = [rng.choice(classes, size=rng.integers(1, 6), replace=False) for _ in range(videos)]
    rows = []
    for kind, name in (("uniform", "uniform [0, 1)"),
                       ("levels", "logits, a level per video")):
        scores = _pass_ratio_scores(kind, videos, classes, labels, rng)
        one_pass, ours, single = _pass_ratio(scores, labels, repeats, kind != "uniform")
        for seconds, used in ((ours, threads), (single, 1)):
            rows.append(f"| {name} | {videos:,} x {classes} | {used} | {seconds:.3f} | "
                        f"{one_pass:.3f} | {seconds / one_pass:.1f}x |")
        del scores
    return repeats, rows


def _scoring_section(quick, repeats):
    from yt8m.bench.heap_metrics import heap_gap_and_map
    from yt8m.metrics import Evaluator

    classes, videos, streamed = 3862, (300 if quick else 3000), (20_000 if quick else 1_000_000)
    rng = np.random.default_rng(0)
    scores = rng.random((videos, classes))
    labels = [rng.choice(classes, size=rng.integers(1, 6), replace=False) for _ in range(videos)]
    dense = np.zeros((videos, classes), np.int8)
    for row, ids in enumerate(labels):
        dense[row, ids] = 1

    def vectorized():
        evaluator = Evaluator(classes)
        evaluator.update(scores, labels)
        return evaluator.result()

    # the first call loads (or compiles) the ranking kernels; time the calls after it
    ours, heap = vectorized(), heap_gap_and_map(scores, dense)
    heap_seconds = _median_time(lambda: heap_gap_and_map(scores, dense), 1)
    ours_seconds = _median_time(vectorized, repeats)
    difference = max(abs(ours["gap"] - heap[0]), abs(ours["map"] - heap[1]))

    batch = rng.random((10_000, classes), dtype=np.float32)
    batch_labels = labels * (10_000 // videos + 1)
    evaluator = Evaluator(classes)

    def stream():
        evaluator.reset()
        for start in range(0, streamed, len(batch)):
            evaluator.update(np.roll(batch, start // len(batch), axis=1),
                             batch_labels[: len(batch)])
        return evaluator.result()

    stream_seconds = _median_time(stream, 1)
    heap_rate_ratio = (streamed / stream_seconds) / (videos / heap_seconds)
    kept = evaluator.kept_bytes
    pass_repeats, pass_rows = _pass_ratio_rows(quick, classes, rng)
    return [
        "# Scoring benchmark (GAP@20, Hit@1, PERR, mAP)",
        "",
        f"{videos:,} videos x {classes} classes, float64 scores without ties; "
        f"the streaming row is {streamed:,} videos x {classes} classes in float32 batches of "
        f"10,000. Heap: 1 run; vectorized: median of {repeats}.",
        "",
        "| method | videos | seconds | videos/s | vs heap |",
        "|---|---:|---:|---:|---:|",
        f"| per-class Python heaps (`yt8m.bench.heap_metrics`, GAP + mAP) | {videos:,} | "
        f"{heap_seconds:.2f} | {videos / heap_seconds:,.0f} | 1.00x |",
        f"| `yt8m.metrics.Evaluator` (all four metrics) | {videos:,} | {ours_seconds:.3f} | "
        f"{videos / ours_seconds:,.0f} | {heap_seconds / ours_seconds:.1f}x |",
        f"| `Evaluator`, streamed | {streamed:,} | {stream_seconds:.1f} | "
        f"{streamed / stream_seconds:,.0f} | {heap_rate_ratio:.1f}x |",
        "",
        f"Largest GAP/mAP difference between the two on the same videos: {difference:.1e}. "
        f"Memory kept by the streaming accumulator after {streamed:,} videos: "
        f"{kept / 1e6:,.0f} MB (top-20 triplets; a dense score matrix would take "
        f"{streamed * classes * 4 / 1e9:,.1f} GB).",
        "",
        "`Evaluator` (update with 1-5 label ids per video as lists, then result) against one "
        "NumPy pass over the same float32 matrix (`scores.max(axis=1)`, one thread), timed in "
        f"turn; medians of {pass_repeats}. Threads: those `Evaluator` ranks with (its default, "
        "then one).",
        "",
        "| float32 scores | videos x classes | threads | Evaluator s | one pass s | ratio |",
        "|---|---|---:|---:|---:|---:|",
        *pass_rows,
        "",
    ]


def _throughput_rows(names, preset, steps, num_classes, mixed_precision, rng):
    import keras

    from yt8m.models import build
    from yt8m.models.registry import parse_spec
    from yt8m.models.training import compile_model, dtype_policy

    rows = []
    for name in names:
        spec = parse_spec({"model": name, "preset": preset})
        training = spec.training_settings()
        batch, frames = training.batch_size, training.num_frames
        policy = mixed_precision or dtype_policy(training)
        keras.mixed_precision.set_global_policy(policy)
        model = compile_model(build(spec, num_classes), training, steps_per_epoch=100)
        if spec.level == "video":
            x = {"means": rng.uniform(-2, 2, (batch, 1152)).astype("float32")}
        else:
            x = {"frames": rng.integers(0, 256, (batch, frames, 1152), dtype=np.uint8),
                 "mask": np.ones((batch, frames), bool)}
        y = (rng.random((batch, num_classes)) < 0.001).astype("float32")
        for _ in range(2):
            model.train_on_batch(x, y)
            model.predict_on_batch(x)
        train = _median_time(lambda m=model, x=x, y=y: m.train_on_batch(x, y), steps)
        infer = _median_time(lambda m=model, x=x: m.predict_on_batch(x), steps)
        shape = f"{batch}" if spec.level == "video" else f"{batch} x {frames}"
        rows.append(f"| `{name}` | {model.count_params():,} | {shape} | {policy} | "
                    f"{batch / train:,.0f} | {batch / infer:,.0f} |")
        del model
    return rows


def model_throughput(names, preset="demo", steps=10, num_classes=3862, mixed_precision=None):
    """Markdown lines: train and inference examples/s of zoo models on synthetic batches.

    Each model runs at its preset's training batch size and frame count, compiled with its
    training defaults, on the backend Keras runs on (`KERAS_BACKEND`); `mixed_precision` is a
    Keras policy such as "mixed_bfloat16" (default: each preset's own, as training resolves it).
    Median step time after two warm-up steps.
    """
    import keras

    rng = np.random.default_rng(0)
    previous = keras.mixed_precision.global_policy()
    try:
        rows = _throughput_rows(names, preset, steps, num_classes, mixed_precision, rng)
    finally:  # each model sets its own policy; leave the caller's as it was
        keras.mixed_precision.set_global_policy(previous)
    device = keras.backend.backend()
    if device == "jax":
        import jax

        device += f" on {jax.devices()[0].device_kind}"
    return [
        f"# Model throughput ({preset} presets, {num_classes} classes, Keras backend {device})",
        "",
        f"Machine: {_machine()}. Synthetic batches at each preset's training batch size and "
        f"frame count; median of {steps} steps after 2 warm-up steps.",
        "",
        "| model | parameters | batch x frames | policy | train examples/s | "
        "inference examples/s |",
        "|---|---:|---:|---|---:|---:|",
        *rows,
        "",
    ]


def _video_section(quick, repeats):
    from concurrent.futures import ThreadPoolExecutor

    from yt8m.features.clip_loader import ClipSampling, TrainingClips
    from yt8m.input.kinetics.dataset import Clip
    from yt8m.input.kinetics.sample import CLASSES, VideoSampleSpec, render
    from yt8m.input.kinetics.video_io import write_video

    count, frames, batch = (4, 30, 2) if quick else (16, 100, 4)
    spec = VideoSampleSpec(frames=frames, fps=25, width=340, height=256)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="yt8m-bench-video-") as tmp:
        clips = []
        for i in range(count):
            path = Path(tmp) / f"{i}.mp4"
            write_video(path, render(CLASSES[i % len(CLASSES)], spec, rng), fps=spec.fps)
            clips.append(Clip(path, str(i), CLASSES[i % len(CLASSES)]))
        batches = TrainingClips(clips, np.zeros(count), ClipSampling(7, 5, 256, 224), batch)

        def serial():
            for i in range(len(batches)):
                batches[i]

        def threads():
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(batches.__getitem__, range(len(batches))))

        base = _median_time(serial, repeats)
        for label, seconds in (("one after another", base),
                               ("2 threads", _median_time(threads, repeats))):
            rows.append(f"| {label} | {len(batches) * batch / seconds:,.1f} | "
                        f"{base / seconds:.2f}x |")
    return ["# StNet clip decoding benchmark", "",
            f"{count} videos of {frames} frames at 340 x 256; batches of {batch} clips of 7 x 5 "
            f"frames, short side 256, 224 crops. Median of {repeats} run(s).", "",
            "| decoding | clips/s | vs one after another |", "|---|---:|---:|", *rows, ""]


def _model_section(quick):
    from yt8m.models.registry import models

    names = ["frame_logistic", "nextvlad"] if quick else list(models())
    return model_throughput(names, "demo", steps=2 if quick else 10)


def _training_section(quick, tmp, progress):
    """A fold's epoch-end work against a plain `fit` (on the sample competition as `make all`
    trains it; quick: the benchmark's own cache), and the training path per backend and feed."""
    from yt8m.bench.train import fold_overhead, train_path_report
    from yt8m.features.writer import build_features
    from yt8m.input.sample import SampleSpec, generate

    if quick:
        root, name, rounds = tmp, "frame_logistic", 1
    else:
        root, name, rounds = tmp / "sample", "nextvlad", 3
        generate(root / "input", SampleSpec(), progress=progress)
        build_features(root / "input", root / "features", num_folds=3, progress=False)
    fold, plain, ratio = fold_overhead(root, name, rounds)
    lines = ["# Training", "",
             f"A fold of the `{name}` demo spec (`train_fold`: the held-out GAP@20 after every "
             f"epoch, the epoch checkpoint, TensorBoard) against a plain `fit` of the same "
             f"model, batches and epochs, in one process after a warm-up of each; median of "
             f"{rounds} interleaved pair(s).", "",
             "| run | fit seconds | vs plain fit |", "|---|---:|---:|",
             f"| plain `fit` | {plain:.2f} | 1.00x |",
             f"| `train_fold` | {fold:.2f} | {ratio:.2f}x |", ""]
    if not quick:
        import importlib.util

        backends = tuple(b for b in ("tensorflow", "jax") if importlib.util.find_spec(b))
        lines += train_path_report(["nextvlad"], "demo", steps=8, backends=backends)
    return lines


def run_benchmarks(output=REPORTS["bench"], quick=False, progress=True):
    """Measure everything the module describes, write the Markdown report to `output` and print
    it; returns the cache and loader table's rows."""
    from yt8m.features.cache import FeatureCache
    from yt8m.features.loader import BatchLoader
    from yt8m.features.writer import build_features, default_workers
    from yt8m.input.sample import SampleSpec, generate

    shards, videos, repeats = (2, 40, 1) if quick else (6, 150, 3)
    spec = SampleSpec(seed=7, train_shards=shards, validate_shards=0, test_shards=0,
                      videos_per_shard=videos)
    rows = []
    with tempfile.TemporaryDirectory(prefix="yt8m-bench-") as tmp:
        tmp = Path(tmp)
        generate(tmp / "input", spec, progress=progress)
        files = sorted((tmp / "input" / "frame").glob("*.tfrecord"))
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        total = shards * videos
        runs = iter(range(10**6))

        def build(workers):
            build_features(tmp / "input", tmp / f"features{next(runs)}", workers=workers,
                           num_folds=2, progress=False)

        timed = _interleaved_medians([lambda: _tf_per_record(files), lambda: _yt8m_decode(files),
                                      lambda: build(1), lambda: build(None)], repeats)
        baseline = timed[0]
        for label, seconds in zip([
            "tf.data + tf.io.parse_single_sequence_example per record (decode only)",
            "yt8m reader + schema decode only (same work as the baseline)",
            "yt8m features, 1 worker (decode, write arrays, checksums)",
            f"yt8m features, default workers ({default_workers(len(files))})",
        ], timed):
            rows.append(("shards -> arrays", label, f"{megabytes / seconds:,.0f} MB/s",
                         f"{total / seconds:,.0f} videos/s", f"{baseline / seconds:.2f}x"))
        build_features(tmp / "input", tmp / "features", num_folds=2, progress=False)
        cache = FeatureCache(tmp / "features")
        all_rows = cache.rows()
        for frames, batch in ((60, 64), (300, 160)):
            for prefetch, workers in ((0, 1), (4, 2)):
                loader = BatchLoader(cache, all_rows, batch_size=batch, num_frames=frames,
                                     shuffle=True, prefetch=prefetch, workers=workers)
                seconds = _median_time(lambda loader=loader: sum(1 for _ in loader), repeats)
                threads = f"{workers} thread(s), prefetch {prefetch}" if prefetch else "inline"
                rows.append(("loader", f"{frames} frames, batch {batch}, shuffled, {threads}",
                             f"{len(all_rows) * frames * 1152 / seconds / 1e6:,.0f} MB/s",
                             f"{len(all_rows) / seconds:,.0f} examples/s", ""))
        training = _training_section(quick, tmp, progress)
    lines = [
        "# Feature cache benchmark",
        "",
        f"Machine: {_machine()}.",
        f"Data: {shards} generated frame-level shards, {total} videos, {megabytes:.0f} MB "
        f"(60-300 frames per video). Median of {repeats} run(s) per row (the shards -> arrays "
        f"rows in turn, after a warm-up run of each); the ratio column is the speed-up over "
        f"the per-record tf.io baseline measured in the same run.",
        "",
        "| stage | method | bytes | items | vs baseline |",
        "|---|---|---:|---:|---:|",
        *[f"| {' | '.join(r)} |" for r in rows],
        "",
        *training,
        *_scoring_section(quick, repeats),
        *_video_section(quick, repeats),
        *_model_section(quick),
    ]
    text = "\n".join(lines)
    write_text(output, text)
    print(text)
    return rows
