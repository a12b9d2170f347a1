import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY, make_video, write_shard
from yt8m.errors import Yt8mError
from yt8m.features.cache import FeatureCache
from yt8m.features.writer import build_features
from yt8m.input.quantization import dequantize
from yt8m.input.sample import VERTICALS, VOCABULARY_COLUMNS, SampleSpec, _World, generate
from yt8m.metrics import gap

# Big enough for a linear model to learn the frequent classes; still seconds to build.
LEARNABLE = SampleSpec(seed=11, train_shards=6, validate_shards=2, test_shards=0,
                       videos_per_shard=80, max_frames=150)


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    root = tmp_path_factory.mktemp("learnable")
    generate(root / "input", LEARNABLE, progress=False)
    build_features(root / "input", root / "features", workers=1, progress=False)
    return FeatureCache(root / "features")


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_layout_vocabulary_and_answer_key(tiny_input, tiny_features):
    names = sorted(p.name for p in (tiny_input / "frame").iterdir())
    assert names == ["test0000.tfrecord", "train0000.tfrecord", "train0001.tfrecord",
                     "train0002.tfrecord", "train0003.tfrecord", "validate0000.tfrecord"]
    vocab = pd.read_csv(tiny_input / "vocabulary.csv")
    assert tuple(vocab.columns) == VOCABULARY_COLUMNS
    assert list(vocab["Index"]) == list(range(TINY.num_classes)) and TINY.num_classes == 1000
    assert set(vocab["Vertical1"]) == set(VERTICALS)
    assert vocab["KnowledgeGraphId"].str.match(r"^/m/0[0-9a-z]{5}$").all()
    cache = FeatureCache(tiny_features)
    train = cache.rows("train")
    labels = cache.labels_flat[cache.label_offsets[train[0]]:cache.label_offsets[train[-1] + 1]]
    counts = np.bincount(labels, minlength=TINY.num_classes)
    assert (vocab["TrainVideoCount"].to_numpy() == counts).all()
    solution = pd.read_csv(tiny_input / "solution.csv", dtype=str)
    assert list(solution["VideoId"]) == list(cache.ids[cache.rows("test")])
    assert solution["Labels"].str.match(r"^\d+( \d+)*$").all()
    frames = cache.num_frames
    assert frames.min() >= TINY.min_frames and frames.max() <= TINY.max_frames


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    spec = SampleSpec(train_shards=1, validate_shards=0, test_shards=1, videos_per_shard=4,
                      max_frames=70, num_classes=200)
    generate(tmp_path / "a", spec, progress=False)
    # another process: protobuf's map order is not the same from one process to the next
    subprocess.run([sys.executable, "-c", "import sys; from yt8m.input.sample import SampleSpec, "
                    "generate; generate(sys.argv[1], SampleSpec(**eval(sys.argv[2])), "
                    "progress=False)", str(tmp_path / "b"), repr(spec.__dict__)], check=True)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    generate(tmp_path / "c", SampleSpec(**{**spec.__dict__, "seed": 5}), progress=False)
    assert _digest(tmp_path / "c")["train0000.tfrecord"] != _digest(tmp_path / "a")[
        "train0000.tfrecord"]


def test_regeneration_is_a_no_op_and_real_data_is_never_touched(tmp_path):
    spec = SampleSpec(train_shards=1, validate_shards=0, test_shards=0, videos_per_shard=2,
                      max_frames=60, num_classes=50)
    assert generate(tmp_path, spec, progress=False)["written"]
    stamp = (tmp_path / "frame" / "train0000.tfrecord").stat().st_mtime_ns
    assert not generate(tmp_path, spec, progress=False)["written"]
    assert (tmp_path / "frame" / "train0000.tfrecord").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "sample.json").read_text())["complete"]
    real = write_shard(tmp_path / "frame" / "train0093.tfrecord", [make_video("real")])
    before = real.read_bytes()
    with pytest.raises(Yt8mError, match="frame/train0093.tfrecord.*refusing to mix"):
        generate(tmp_path, spec, force=True, progress=False)
    assert real.read_bytes() == before


def test_statistics_look_like_youtube8m(learnable):
    cache = learnable
    rows = cache.rows(["train", "validate"])
    per_video = np.diff(cache.label_offsets)[rows]
    assert 2.6 < per_video.mean() < 3.4 and per_video.min() >= 1 and per_video.max() <= 9
    frames = cache.num_frames[rows]
    assert frames.min() >= 60 and frames.max() <= 150 and frames.std() > 20
    freq = np.bincount(cache.labels_flat, minlength=LEARNABLE.num_classes)
    # Zipf-like: frequency falls with the class id, over orders of magnitude.
    assert freq[:10].sum() > 5 * freq[100:110].sum() > 0
    assert (freq > 0).sum() > 300
    # Label pairs share a vertical far more often than independent labels would.
    vertical = _World(LEARNABLE).vertical
    pairs = [(a, b) for labels in cache.label_lists(rows)
             for i, a in enumerate(labels) for b in labels[i + 1:]]
    same = np.mean([vertical[a] == vertical[b] for a, b in pairs])
    share = np.bincount(vertical[cache.labels_flat], minlength=len(VERTICALS))
    chance = ((share / share.sum()) ** 2).sum()
    assert same > 2 * chance, (same, chance)


def _ridge(x, y, lam=10.0):
    mu, ym = x.mean(0), y.mean(0)
    xc = x - mu
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y - ym))
    return lambda z: (z - mu) @ w + ym


def _scored(cache, rows, top, scores):
    full = np.full((len(rows), cache.num_classes), -1e9, np.float32)
    full[:, top] = scores
    return full


def test_learnable_from_frames_beyond_the_mean_and_from_audio(learnable):
    """A linear model on video means learns; pooling its frame scores and adding audio help."""
    cache = learnable
    train, valid = cache.rows("train"), cache.rows("validate")
    y_train, y_valid = cache.multi_hot(train), cache.multi_hot(valid)
    top = np.argsort(-y_train.sum(0))[:100]
    x_train, x_valid = cache.means(train), cache.means(valid)
    model = _ridge(x_train, y_train[:, top])
    mean_gap = gap(_scored(cache, valid, top, model(x_valid)), y_valid)
    rgb_model = _ridge(x_train[:, :1024], y_train[:, top])
    rgb_gap = gap(_scored(cache, valid, top, rgb_model(x_valid[:, :1024])), y_valid)
    window = 5
    pooled = []
    for row in valid:  # best 5-frame window of each class's frame scores
        s = np.cumsum(np.vstack([np.zeros((1, len(top))),
                                 model(dequantize(cache.frames(row)))]), axis=0)
        pooled.append(((s[window:] - s[:-window]) / window).max(0))
    frame_gap = gap(_scored(cache, valid, top, np.stack(pooled)), y_valid)
    chance = gap(np.random.default_rng(0).random(y_valid.shape), y_valid)
    assert chance < 0.01
    assert mean_gap > 0.25, mean_gap
    assert frame_gap > mean_gap + 0.03, (frame_gap, mean_gap)
    assert mean_gap > rgb_gap + 0.04, (mean_gap, rgb_gap)


def test_ordered_twins_differ_only_in_the_order_of_their_motifs(tmp_path):
    """Twin classes look alike in the mean over frames; their motifs come in opposite orders."""
    spec = SampleSpec(seed=7, num_classes=40, train_shards=5, validate_shards=0, test_shards=0,
                      videos_per_shard=60, max_frames=150, ordered_classes=0.5)
    generate(tmp_path / "input", spec, progress=False)
    build_features(tmp_path / "input", tmp_path / "features", workers=1, progress=False)
    cache = FeatureCache(tmp_path / "features")
    world = _World(spec)
    assert len(world.motifs) >= 8  # a sizeable share of the 40 classes, in twin pairs
    labels = cache.multi_hot(cache.rows()).astype(bool)
    checked = 0
    for c, (first, second) in world.motifs.items():
        mate = world.twin[c]
        assert world.motifs[mate][0] is second and world.motifs[mate][1] is first
        rows = np.flatnonzero(labels[:, c] & ~labels[:, mate])
        if len(rows) < 5:
            continue
        checked += 1
        in_order, mean_gap = [], []
        for row in rows:
            rgb = dequantize(cache.frames(row))[:, :1024]
            in_order.append(np.argmax(rgb @ first) < np.argmax(rgb @ second))
            # over the frames, the two motifs show about equally
            mean_gap.append(rgb.mean(0) @ (first - second) / (rgb.mean(0) @ (first + second)))
        assert np.mean(in_order) > 0.9, c
        assert abs(np.median(mean_gap)) < 0.2, c
        assert np.allclose(world.prototypes["rgb"][c], world.prototypes["rgb"][mate])
    assert checked >= 2


def test_2019_sample_rates_validate_segments_where_the_class_shows(tmp_path):
    """Validate videos carry ratings of their scored labels, the test videos' are the answer key,
    and the evidence is local: scoring each rated segment from its own frames ranks segments
    better than giving every segment its video's score."""
    from yt8m.segment_metrics import SegmentEvaluator

    spec = SampleSpec(seed=19, version="2019", num_classes=60, scored_classes=40, train_shards=4,
                      validate_shards=2, test_shards=1, videos_per_shard=100, max_frames=150)
    generate(tmp_path / "input", spec, progress=False)
    build_features(tmp_path / "input", tmp_path / "features", workers=1, progress=False)
    cache = FeatureCache(tmp_path / "features")
    scored = pd.read_csv(tmp_path / "input" / "segment_label_ids.csv")["Index"].to_numpy()
    assert len(scored) == 40 and set(scored) <= set(range(60))
    answer = pd.read_csv(tmp_path / "input" / "segment_solution.csv")
    assert set(answer["Rating"]) == {0, 1} and set(answer["Class"]) <= set(scored)
    test_ids = set(cache.ids[cache.rows("test")])
    assert {s.split(":")[0] for s in answer["Segment"]} <= test_ids
    row, start, label, rating = cache.segment_ratings()
    assert set(cache.split[row]) == {"validate"} and set(label) <= set(scored)
    assert set(start % 5) == {0} and 0.4 < rating.mean() < 0.8
    train = cache.rows("train")
    model = _ridge(cache.means(train), cache.multi_hot(train))
    valid = np.unique(row)
    index, windows, videos = {}, [], []
    for r in valid:  # every 5-second segment of the rated videos
        x = dequantize(cache.frames(r))
        video_score = model(x.mean(0, keepdims=True))[0]
        for s in range(0, len(x), 5):
            index[(r, s)] = len(windows)
            windows.append(model(x[s:s + 5].mean(0, keepdims=True))[0])
            videos.append(video_score)
    segments = [index[(r, s)] for r, s in zip(row, start, strict=True)]
    maps = {}
    for name, scores in (("window", windows), ("video", videos)):
        ev = SegmentEvaluator(scored, segments, label, rating)
        ev.update(np.stack(scores))
        maps[name] = ev.result()["map"]
    assert maps["window"] > maps["video"] + 0.1, maps
