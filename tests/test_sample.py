import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY, make_video, write_shard
from yt8m.errors import Yt8mError
from yt8m.features.build import build_features
from yt8m.features.cache import FeatureCache
from yt8m.features.quantization import dequantize
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
    generate(tmp_path / "b", spec, progress=False)
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
