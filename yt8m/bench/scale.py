"""`make bench-scale` (`yt8m bench --scale`): every stage's time and peak memory at two sizes.

Method: a synthetic competition is written straight into the feature cache's layout (one frame
per video, about 3 labels per video over 3862 Zipf-distributed classes, 5 shard folds plus a
test split), with synthetic members (float16 OOF and test logits that rank a video's labels
higher, written chunk by chunk). Each stage then runs alone in a fresh Python process (so that
nothing one stage allocated is counted for the next) at N and 4N videos:

- `train`: `yt8m train` of a video-level model (video_logistic, demo, 1 epoch) over every fold,
  its assembly included;
- `mean`, `weighted`, `stack`: `yt8m ensemble` of the three synthetic members;
- `write`, `check`: `yt8m submission write` from a member and `yt8m submission check` of it;
- `evaluate`: GAP@20, Hit@1, PERR and mAP of a member's OOF logits, chunk by chunk;
- `segments`: 2019 segment scores of 10 segments a video over 1,000 scored classes (float16,
  memory-mapped; a class's rated segments score higher): their MAP@100000 against 5 ratings a
  video (`SegmentEvaluator`) and a `Class,Segments` submission written from them.

Peak memory is the process's anonymous resident memory (`RssAnon` in /proc/self/status: the heap
and every array it allocates, not the pages of memory-mapped files, which the kernel can drop),
sampled every 5 ms in a background thread, less the same figure just before the stage starts
(interpreter, numpy and Keras already imported). The growth from N to 4N is what scales: a stage
bounded by a chunk grows by almost nothing, one that holds (videos x classes) float32 grows by
about 15 MB per 1,000 videos (3862 classes).
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

NUM_CLASSES = 3862
FOLDS = 5
STAGES = ("train", "mean", "weighted", "stack", "write", "check", "evaluate", "segments")
SEGMENTS_PER_VIDEO, SCORED = 10, 1000
MEMBERS = ("m0", "m1", "m2")


def _anon_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Samples the process's anonymous resident memory while inside; `.peak` is the growth in
    bytes over the value on entry."""

    def __init__(self, interval=0.005):
        self.interval, self.peak = interval, 0

    def _watch(self):
        while not self._done.is_set():
            self.peak = max(self.peak, _anon_bytes() - self.base)
            self._done.wait(self.interval)

    def __enter__(self):
        self.base, self._done = _anon_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _anon_bytes() - self.base)


def _labels(rng, n):
    """1 to 5 distinct Zipf-distributed labels per video (about 3), as CSR (offsets, ids)."""
    draws = np.sort(np.minimum(rng.zipf(1.3, (n, 5)) - 1, NUM_CLASSES - 1), axis=1)
    keep = np.ones(draws.shape, bool)
    keep[:, 1:] = draws[:, 1:] != draws[:, :-1]  # sorted: a repeat sits next to its twin
    keep &= np.arange(5) < rng.integers(1, 6, n)[:, None]
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int64)
    return offsets, draws[keep].astype(np.int32)


def write_cache(features, videos, test_videos, seed=0, frames=1):
    """A synthetic frame-level cache of `videos` labeled videos in 2 * FOLDS shards (`frames`
    random frames each) and `test_videos` test videos, with folds.csv; written without
    TFRecords."""
    from yt8m.features.convert import FEATURE_DIM
    from yt8m.features.folds import assign_folds
    from yt8m.fileio import write_json
    from yt8m.input.schema import FRAME_FEATURES

    rng = np.random.default_rng(seed)
    root = Path(features) / "frame"
    shards, entries = [], []
    per = -(-videos // (2 * FOLDS))
    plan = [(f"train{i:04d}", "train", min(per, videos - i * per)) for i in range(2 * FOLDS)]
    plan.append(("test0000", "test", test_videos))
    for name, split, n in plan:
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "ids.npy", np.array([f"{name}-{i:07d}" for i in range(n)]))
        if split == "test":
            offsets, ids = np.zeros(n + 1, np.int64), np.zeros(0, np.int32)
        else:
            offsets, ids = _labels(rng, n)
        np.save(d / "label_offsets.npy", offsets)
        np.save(d / "labels.npy", ids)
        np.save(d / "frame_offsets.npy", np.arange(n + 1, dtype=np.int64) * frames)
        np.save(d / "frames.npy", rng.integers(0, 256, (n * frames, FEATURE_DIM), dtype=np.uint8))
        np.save(d / "means.npy", rng.normal(size=(n, FEATURE_DIM)).astype(np.float32))
        labeled = int(np.count_nonzero(np.diff(offsets)))
        entries.append({"name": name, "split": split, "source": f"synthetic/{name}",
                        "videos": n, "labeled_videos": labeled, "frames": n * frames,
                        "skipped_records": 0, "truncated_videos": 0, "zero_frame_videos": 0,
                        "crc32c": 0})
        shards.append((name, split, labeled))
    assign_folds(features, shards, FOLDS)
    write_json(root / "manifest.json", {
        "format": 1, "level": "frame", "version": "2018", "num_classes": NUM_CLASSES,
        "max_frames": 300, "feature_sizes": dict(FRAME_FEATURES), "feature_dim": FEATURE_DIM,
        "input": "synthetic", "fold_splits": ["train", "validate"], "shards": entries})


def write_member(cache, folder, quality, seed, agreement=0.7):
    """OOF and test float16 logits, chunk by chunk, plus a metrics.json. As trained models'
    logits do, the members share most of their signal: a class prior (log frequency of a Zipf
    law) and a per-video part drawn alike for every member (`agreement` of the noise's
    variance), the rest the member's own noise; each video's labels score `quality` higher."""
    from yt8m import predictions
    from yt8m.fileio import write_json

    own = np.random.default_rng(seed)
    prior = -1.3 * np.log1p(np.arange(NUM_CLASSES)) - 1.0
    labeled = np.flatnonzero((cache.fold >= 0) & (np.diff(cache.label_offsets) > 0))
    for p, (part, rows) in enumerate((("oof", labeled), ("test", cache.rows("test")))):
        with predictions.writer(folder, part, cache.ids[rows], NUM_CLASSES) as out:
            for i, chunk in enumerate(predictions.chunks(len(rows))):
                shape = (chunk.stop - chunk.start, NUM_CLASSES)
                shared = np.random.default_rng([p, i]).normal(0.0, 1.0, shape)
                logits = prior + np.sqrt(agreement) * shared + \
                    np.sqrt(1 - agreement) * own.normal(0.0, 1.0, shape)
                for j, labels in enumerate(cache.label_lists(rows[chunk])):
                    logits[j, labels] += quality
                out[chunk] = logits
    write_json(Path(folder) / "metrics.json", {"id": Path(folder).name, "model": "synthetic",
                                               "preset": "bench", "config_hash": str(seed)})


def prepare(root, videos):
    """Cache, members, specs and a submission under `root` for a run at `videos` videos."""
    from yt8m.features.cache import FeatureCache

    root = Path(root)
    write_cache(root / "features", videos, test_videos=max(1, videos // 4))
    cache = FeatureCache(root / "features")
    for i, name in enumerate(MEMBERS):
        write_member(cache, root / "models" / name, quality=2.5 + 0.3 * i, seed=i)
    (root / "models" / "vlog.yaml").write_text(
        "model: video_logistic\npreset: demo\ntraining: {epochs: 1, batch_size: 256}\n")
    (root / "ensembles").mkdir(exist_ok=True)
    for combiner in ("mean", "weighted", "stack"):
        extra = "stacker: {epochs: 1}\n" if combiner == "stack" else ""
        (root / "ensembles" / f"{combiner}.yaml").write_text(
            f"members: [{', '.join(MEMBERS)}]\ncombiner: {combiner}\n{extra}")
    (root / "input").mkdir(exist_ok=True)
    write_segment_scores(root / "segments", videos * SEGMENTS_PER_VIDEO)


def write_segment_scores(folder, count, seed=0):
    """`count` segments' float16 scores over `SCORED` classes, 5 ratings per 10 segments (half
    of them positive, scored higher), written chunk by chunk."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scores = np.lib.format.open_memmap(folder / "scores.npy", "w+", np.float16, (count, SCORED))
    rated = rng.choice(count, count // 2, replace=False)
    labels = rng.integers(0, SCORED, len(rated))
    ratings = (rng.random(len(rated)) < 0.5).astype(np.float32)
    for start in range(0, count, 65536):
        stop = min(start + 65536, count)
        scores[start:stop] = rng.standard_normal((stop - start, SCORED), np.float32)
    bump = rng.random(len(rated)).astype(np.float32) * 3 * ratings
    scores[rated, labels] += bump.astype(np.float16)
    scores.flush()
    np.savez(folder / "ratings.npz", segments=rated, labels=labels, ratings=ratings)


def _segment_stage(folder):
    """MAP@100000 of the synthetic segment scores, then a submission written from them."""
    from yt8m.predictions import chunks
    from yt8m.segment_metrics import SegmentEvaluator
    from yt8m.submissions import segments

    scores = np.load(folder / "scores.npy", mmap_mode="r")
    ratings = np.load(folder / "ratings.npz")
    evaluator = SegmentEvaluator(np.arange(SCORED), ratings["segments"], ratings["labels"],
                                 ratings["ratings"])
    for chunk in chunks(len(scores)):
        evaluator.update(scores[chunk])
    evaluator.result()
    ids = [f"v{i // SEGMENTS_PER_VIDEO}:{5 * (i % SEGMENTS_PER_VIDEO)}"
           for i in range(len(scores))]
    segments.write(folder / "bench.csv", ids, scores, np.arange(SCORED))


def run_stage(stage, root):
    """Run one stage in this process (from `root`); returns {seconds, peak_bytes}."""
    os.chdir(root)
    from yt8m import predictions
    from yt8m.cli import main

    if stage in ("train", "stack"):
        import keras  # imported before measuring, as the interpreter is

        keras.backend.clear_session()
    if stage == "check" and not Path("submissions/bench.csv").is_file():
        main(["submission", "write", "--source", "models/m2", "--id", "bench", "--force"])
    argv = {"train": ["train", "models/vlog.yaml", "--quiet"],
            "mean": ["ensemble", "ensembles/mean.yaml"],
            "weighted": ["ensemble", "ensembles/weighted.yaml"],
            "stack": ["ensemble", "ensembles/stack.yaml"],
            "write": ["submission", "write", "--source", "models/m2", "--id", "bench",
                      "--force"],
            "check": ["submission", "check", "submissions/bench.csv"]}.get(stage)
    start = time.perf_counter()
    with PeakMemory() as memory:
        if stage == "segments":
            _segment_stage(Path("segments"))
        elif argv is not None:
            code = main(argv)
            if code:
                raise SystemExit(f"stage {stage} failed with exit code {code}")
        else:
            from yt8m.features.cache import FeatureCache
            from yt8m.metrics import Evaluator

            cache = FeatureCache("features")
            member = predictions.load("models/m0", "oof")
            rows = np.flatnonzero((cache.fold >= 0) & (np.diff(cache.label_offsets) > 0))
            evaluator = Evaluator(NUM_CLASSES, from_logits=True)
            for chunk in predictions.chunks(len(rows)):
                evaluator.update(np.asarray(member.logits[chunk], np.float32),
                                 cache.label_lists(rows[chunk]))
            evaluator.result()
    return {"seconds": time.perf_counter() - start, "peak_bytes": memory.peak}


def fresh_process(module, args, what, env=None, timeout=3600):
    """Run `python -m module args...` in a fresh process and return the dict it prints last
    as a JSON line; `what` names the run in the error if it fails."""
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"} | (env or {})
    done = subprocess.run([sys.executable, "-m", module, *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"{what}: exit {done.returncode}\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def measure(stage, root, timeout=3600):
    """`run_stage` in a fresh process; returns its dict."""
    return fresh_process("yt8m.bench.scale", [stage, root], f"stage {stage} at {root}",
                         timeout=timeout)


def scale_table(sizes=(10_000, 40_000), stages=STAGES, work=None):
    """Markdown table of every stage at each size, with the growth."""
    lines = ["| stage | " + " | ".join(f"{n:,} videos: s, MB" for n in sizes) +
             " | growth MB | time ratio |", "|---|" + "---|" * (len(sizes) + 2)]
    results = {}
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for n in sizes:
            root = Path(tmp) / str(n)
            prepare(root, n)
            for stage in stages:
                results[stage, n] = measure(stage, root)
    for stage in stages:
        cells = [f"{results[stage, n]['seconds']:.1f}, "
                 f"{results[stage, n]['peak_bytes'] / 2**20:.0f}" for n in sizes]
        first, last = results[stage, sizes[0]], results[stage, sizes[-1]]
        growth = (last["peak_bytes"] - first["peak_bytes"]) / 2**20
        ratio = last["seconds"] / max(first["seconds"], 1e-9)
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {growth:+.0f} | {ratio:.1f} |")
    return "\n".join(lines), results


if __name__ == "__main__":
    print(json.dumps(run_stage(sys.argv[1], sys.argv[2])), flush=True)
