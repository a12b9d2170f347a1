"""Ensembles at scale: each combiner's memory is bounded by its chunks, not by the number of
videos, and the weighted search's candidate scheme finds what the dense search finds.

A synthetic competition (a feature cache holding ids, labels and folds only, and float16 members
whose logits share a signal, as trained models' do) is blended at two sizes in subprocesses;
the peak of the memory numpy allocates there (`tracemalloc`: arrays, not the members'
memory-maps) must grow far less than loading the members would need.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yt8m import predictions
from yt8m.ensembles.blending import Candidates, dense_gap, fit_weights, gap_of_triplets
from yt8m.features.cache import FeatureCache
from yt8m.metrics import Evaluator

MEMBERS, CLASSES, FOLDS = 3, 1000, 4


def write_competition(root, videos, members=MEMBERS, classes=CLASSES, folds=FOLDS,
                      test_videos=None, seed=0):
    """`root/features` (the cache's layout without frames: `folds` labeled shards, one fold
    each, and a test shard) and `root/models/m<i>` holding float16 OOF and test logits."""
    root, rng = Path(root), np.random.default_rng(seed)
    test_videos = test_videos or videos // 4
    cache = root / "features" / "frame"
    shards, table = [], ["shard,split,fold,num_folds,videos"]
    sizes = [videos // folds + (i < videos % folds) for i in range(folds)] + [test_videos]
    prior = 1.0 / np.arange(1, classes + 1) ** 0.8
    for i, size in enumerate(sizes):
        name, split = f"s{i}", "train" if i < folds else "test"
        counts = rng.integers(1, 6, size) if split == "train" else np.zeros(size, np.int64)
        labels = rng.choice(classes, int(counts.sum()), p=prior / prior.sum()).astype(np.int32)
        folder = cache / name
        folder.mkdir(parents=True)
        np.save(folder / "ids.npy", np.array([f"{name}v{j}" for j in range(size)]))
        np.save(folder / "label_offsets.npy", np.concatenate([[0], np.cumsum(counts)]))
        np.save(folder / "labels.npy", labels)
        np.save(folder / "frame_offsets.npy", np.zeros(size + 1, np.int64))
        shards.append({"name": name, "split": split, "videos": size,
                       "labeled_videos": int((counts > 0).sum())})
        if split == "train":
            table.append(f"{name},train,{i},{folds},{size}")
    (cache / "manifest.json").write_text(json.dumps({
        "num_classes": classes, "feature_sizes": {"rgb": 1024, "audio": 128},
        "fold_splits": ["train"], "shards": shards}))
    (root / "features" / "folds.csv").write_text("\n".join(table) + "\n")
    features = FeatureCache(root / "features")
    bias = (np.log(prior) * 1.5 - 2).astype(np.float32)
    for part, rows in (("oof", features.rows("train")), ("test", features.rows("test"))):
        truth = features.multi_hot(rows) * 5
        shared = rng.standard_normal(truth.shape, np.float32) + truth + bias
        for m in range(members):
            logits = shared + rng.standard_normal(truth.shape, np.float32) * (0.5 + 0.2 * m)
            predictions.save(root / "models" / f"m{m}", part, features.ids[rows], logits)
    (root / "ensembles").mkdir()
    return features


CHILD = """
import sys, time, tracemalloc
from yt8m import ensembles
tracemalloc.start()
start = time.perf_counter()
metrics = ensembles.build(sys.argv[1], "features", "models")
print(time.perf_counter() - start, tracemalloc.get_traced_memory()[1], metrics["oof"]["gap"])
"""


def peak(root, combiner, extra=""):
    """(seconds, peak bytes numpy allocated, OOF GAP) of one ensemble built in a subprocess."""
    spec = Path(root) / "ensembles" / f"{combiner}.yaml"
    members = ", ".join(f"m{m}" for m in range(MEMBERS))
    spec.write_text(f"members: [{members}]\ncombiner: {combiner}\n{extra}")
    done = subprocess.run([sys.executable, "-c", CHILD, str(spec)], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seconds, peak_bytes, gap = done.stdout.split()[-3:]
    return float(seconds), int(peak_bytes), float(gap)


SIZES = (5_000, 20_000)  # OOF videos


@pytest.fixture(scope="module")
def sizes(tmp_path_factory):
    """The same synthetic competition at both sizes."""
    roots = {}
    for videos in SIZES:
        roots[videos] = tmp_path_factory.mktemp(f"scale{videos}")
        write_competition(roots[videos], videos)
    return roots


def _check_growth(sizes, combiner, extra=""):
    """4x the videos: the peak grows by far less than one float32 copy of the members' new rows
    (180 MB; about 1 KB a video is expected: the evaluators' kept top-20 triplets, ids, folds)."""
    small, large = (peak(sizes[n], combiner, extra) for n in SIZES)
    dense = (SIZES[1] - SIZES[0]) * CLASSES * 4 * MEMBERS
    print(f"{combiner}: {small[0]:.1f} s, {small[1] / 2**20:.0f} MB at {SIZES[0]} OOF videos; "
          f"{large[0]:.1f} s, {large[1] / 2**20:.0f} MB at {SIZES[1]}")
    assert large[1] - small[1] < dense / 4, (combiner, small, large, dense)


@pytest.mark.slow  # `make test-slow`, run by CI
def test_mean_memory_does_not_grow_with_the_videos(sizes):
    _check_growth(sizes, "mean")


@pytest.mark.slow  # `make test-slow`, run by CI
def test_weighted_memory_does_not_grow_with_the_videos(sizes):
    _check_growth(sizes, "weighted")


@pytest.mark.slow
def test_stack_memory_does_not_grow_with_the_videos(sizes):
    _check_growth(sizes, "stack", "stacker: {epochs: 1, batch_size: 256}\n")


@pytest.mark.parametrize("noise", [0.3, 3.0])
def test_candidate_search_finds_the_dense_search_weights(tmp_path, noise):
    """Exact by construction (rows whose top 20 could leave the candidates are blended densely):
    the same weights and GAP as the dense search on every fold, with correlated members and
    with nearly independent ones (some rows then fall back)."""
    cache = write_competition(tmp_path, 600, classes=300, test_videos=10)
    rows = cache.rows("train")
    parts = [predictions.load(tmp_path / "models" / f"m{m}", "oof").logits
             for m in range(MEMBERS)]
    if noise > 1:  # members with their own noise: the candidates barely overlap
        rng = np.random.default_rng(1)
        parts = [np.asarray(p, np.float32) + rng.normal(0, noise, p.shape).astype(np.float16)
                 for p in parts]
        parts = [p.astype(np.float16) for p in parts]
    stack = np.stack([np.asarray(p, np.float32) for p in parts])
    folds = cache.fold[rows]

    def labels(index):
        return cache.label_lists(rows[index])

    candidates = Candidates(parts, labels, tmp_path)
    for chunk in (slice(0, 256), slice(256, 600)):
        candidates.add(chunk.start, stack[:, chunk])
    try:
        for k in (*range(FOLDS), None):
            keep = np.ones(len(rows), bool) if k is None else folds != k
            fast = fit_weights(lambda mix, w, keep=keep: candidates.gap(mix, w, keep), MEMBERS)
            dense = fit_weights(dense_gap(stack[:, keep], labels(np.flatnonzero(keep))),
                                MEMBERS)
            np.testing.assert_array_equal(fast[0], dense[0])
            assert fast[1] == pytest.approx(dense[1], rel=1e-12, abs=0)
    finally:
        candidates.close()
    assert not list(tmp_path.glob(".candidates.*"))
    share = candidates.fallback / candidates.scored
    assert (share > 0) if noise > 1 else (share < 0.05), share  # > 0: the fallback ran


@pytest.mark.parametrize("levels", [7, 10_000])
def test_gap_of_triplets_is_the_evaluators_gap_ties_included(levels):
    rng = np.random.default_rng(levels)
    scores = (rng.integers(0, levels, (300, 20)) / levels).astype(np.float32)
    classes = np.argsort(rng.random((300, 50)), axis=1)[:, :20]
    labels = [rng.choice(50, rng.integers(0, 5), replace=False) for _ in range(300)]
    evaluator = Evaluator(50, from_logits=True)
    evaluator.update_top_k(classes, scores, labels)
    hits = np.array([np.isin(c, lab) for c, lab in zip(classes, labels, strict=True)])
    positives = sum(len(lab) for lab in labels)
    assert gap_of_triplets(scores.ravel(), hits.ravel(), positives) == \
        pytest.approx(evaluator.result()["gap"], rel=1e-12, abs=0)
