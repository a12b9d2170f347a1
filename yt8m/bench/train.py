"""`yt8m bench --train-path`: examples/s of the real training path, per backend and feed.

Method: a synthetic frame-level cache (`bench.scale.write_cache`: random uint8 frames, as many
per video as the preset reads, Zipf labels over 3,862 classes) feeds `CacheBatches` (the loader,
its frame sampling and dequantisation-free uint8 batches) into the compiled `fit` step of a zoo
model built, compiled and dtype-policied exactly as `yt8m train` does. Each measurement runs in a
fresh process with `KERAS_BACKEND` set, so backends can be compared on one machine: two epochs of
warm-up (tracing, the first steps), then the median of `repeats` timed epochs of `steps` steps.
The runs of all backends and feeds are interleaved, so a change in the machine's load falls on
every row alike; the ratio column compares each row with the first one.

Feeds: `look-ahead 2`, the training default (the next batches are assembled in a background
thread while the step runs), and `look-ahead 0` (each batch assembled when the step asks).
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _settings(name, preset):
    from yt8m.models.registry import parse_spec

    spec = parse_spec({"model": name, "preset": preset})
    return spec, spec.training_settings()


def prepare(root, name, preset, steps):
    """A cache with enough labeled videos for `steps` batches of the preset per epoch."""
    from yt8m.bench.scale import FOLDS, write_cache

    _, training = _settings(name, preset)
    videos = training.batch_size * steps * FOLDS // (FOLDS - 1) + 2 * FOLDS
    write_cache(Path(root) / "features", videos, test_videos=1, frames=training.num_frames)


def run(name, preset, steps, look_ahead, root, repeats):
    """In this process: warm up, then time `repeats` epochs; returns examples/s (median)."""
    import keras
    import numpy as np

    from yt8m.features.cache import FeatureCache
    from yt8m.models import build
    from yt8m.models.trainer import labeled_fold_rows
    from yt8m.models.training import CacheBatches, compile_model, dtype_policy

    spec, training = _settings(name, preset)
    cache = FeatureCache(Path(root) / "features")
    rows = labeled_fold_rows(cache)
    batch = training.batch_size
    rows = rows[cache.fold[rows] != 0][:batch * steps]  # of one fold's training rows, `steps`
    keras.mixed_precision.set_global_policy(dtype_policy(training))
    model = compile_model(build(spec, cache.num_classes), training, steps_per_epoch=steps)
    data = CacheBatches(cache, rows, spec.level, training, shuffle=True, look_ahead=look_ahead)
    if len(data) != steps:
        raise RuntimeError(f"{root}: {len(data)} batches per epoch, {steps} wanted")
    model.fit(data, epochs=2, shuffle=False, verbose=0)
    seconds = []
    for epoch in range(2, 2 + repeats):
        start = time.perf_counter()
        model.fit(data, epochs=epoch + 1, initial_epoch=epoch, shuffle=False, verbose=0)
        seconds.append(time.perf_counter() - start)
    device = keras.backend.backend()
    if device == "jax":
        import jax

        device += f" on {jax.devices()[0].device_kind}"
    return {"examples_per_s": batch * steps / float(np.median(seconds)), "device": device,
            "batch": batch, "frames": training.num_frames,
            "policy": keras.mixed_precision.global_policy().name}


def measure(backend, name, preset, steps, look_ahead, root, repeats=3, timeout=3600):
    """`run` in a fresh process under `backend`; returns its dict."""
    from yt8m.bench.scale import fresh_process

    return fresh_process("yt8m.bench.train", [name, preset, steps, look_ahead, root, repeats],
                         f"{name} under {backend}", {"KERAS_BACKEND": backend}, timeout)


def train_path_report(names, preset="demo", steps=8, backends=("tensorflow", "jax"),
                      look_aheads=(2, 0), rounds=2, repeats=3, work=None):
    """Markdown lines: every (model, backend, feed) row, median over `rounds` interleaved
    rounds of each run's median epoch."""
    from yt8m.bench import _machine

    lines = [f"# Training path ({preset} presets, 3,862 classes)", "",
             f"Machine: {_machine()}. Method: `yt8m.bench.train` (fresh process per run, "
             f"{steps} steps per timed epoch, median of {repeats} epochs after 2 warm-up "
             f"epochs; {rounds} interleaved rounds, their median).", "",
             "| model | backend | batch x frames | policy | feed | train examples/s | "
             "vs first row |",
             "|---|---|---:|---|---|---:|---:|"]
    with tempfile.TemporaryDirectory(dir=work, prefix="yt8m-bench-train-") as tmp:
        for name in names:
            root = Path(tmp) / name
            prepare(root, name, preset, steps)
            runs = [(b, a) for b in backends for a in look_aheads]
            results = {run_: [] for run_ in runs}
            for _ in range(rounds):
                for backend, look_ahead in runs:
                    results[backend, look_ahead].append(
                        measure(backend, name, preset, steps, look_ahead, root, repeats))
            first = None
            for backend, look_ahead in runs:
                speeds = [r["examples_per_s"] for r in results[backend, look_ahead]]
                speed, last = statistics.median(speeds), results[backend, look_ahead][-1]
                first = first or speed
                lines.append(f"| `{name}` | {last['device']} | {last['batch']} x "
                             f"{last['frames']} | {last['policy']} | look-ahead {look_ahead} | "
                             f"{speed:,.0f} | {speed / first:.2f}x |")
    return lines + [""]


def fold_overhead(root, name="nextvlad", rounds=3):
    """Seconds of `fit` inside `train_fold` (the held-out GAP after every epoch, the epoch
    checkpoint, TensorBoard) against a plain `fit` of the same model, batches and epochs, in
    this process; pairs after one warm-up of each (tracing), medians. Returns
    (fold, plain, ratio)."""
    import shutil

    import keras

    from yt8m.features.cache import FeatureCache
    from yt8m.models import trainer as oof
    from yt8m.models.registry import load_spec

    root = Path(root)
    spec_path = root / f"{name}.yaml"
    spec_path.write_text(f"model: {name}\npreset: demo\n")
    spec, cache = load_spec(spec_path), FeatureCache(root / "features")
    models, out = oof.FoldModels(spec, cache), root / "models" / name
    rows = oof.labeled_fold_rows(cache)
    train_rows = rows[cache.fold[rows] != 0]
    epochs = spec.training_settings().epochs

    def plain():
        model, data = models.start(0, train_rows, seed=0)
        start = time.perf_counter()
        model.fit(data, epochs=epochs, shuffle=False, verbose=0)
        return time.perf_counter() - start

    def fold():
        shutil.rmtree(out, ignore_errors=True)
        return oof.train_fold(spec, out, cache, 0, models=models)["seconds"]

    plain(), fold()
    pairs = [(fold(), plain()) for _ in range(rounds)]
    keras.backend.clear_session()
    folds, plains = [p[0] for p in pairs], [p[1] for p in pairs]
    return (statistics.median(folds), statistics.median(plains),
            statistics.median(f / p for f, p in pairs))


if __name__ == "__main__":
    name, preset, steps, look_ahead, root, repeats = sys.argv[1:7]
    print(json.dumps(run(name, preset, int(steps), int(look_ahead), root, int(repeats))),
          flush=True)
