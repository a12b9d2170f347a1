"""Shared fixtures: small generated competitions, built once per test session (per xdist worker)."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from yt8m.features.writer import build_features
from yt8m.input.sample import SampleSpec, generate
from yt8m.input.schema import Video, encode
from yt8m.input.tfrecord import write_records

REAL_SHARD = (Path(__file__).resolve().parents[2] / "shared" / "real_samples"
              / "yt8m_v2_video_validate0067.tfrecord")

# Small enough to build in seconds, large enough that class structure shows.
TINY = SampleSpec(train_shards=4, validate_shards=1, test_shards=1, videos_per_shard=30,
                  min_frames=60, max_frames=150)


@pytest.fixture(scope="session")
def tiny_input(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "input"
    generate(root, TINY, progress=False)
    return root


@pytest.fixture
def workspace(tiny_input, tmp_path):
    """A private copy of the tiny input (tests may damage it) and an empty features/ folder."""
    import shutil

    shutil.copytree(tiny_input, tmp_path / "input")
    return tmp_path / "input", tmp_path / "features"


@pytest.fixture(scope="session")
def tiny_features(tiny_input, tmp_path_factory):
    features = tmp_path_factory.mktemp("tiny_features")
    build_features(tiny_input, features, workers=1, progress=False)
    return features


def make_video(vid, frames=5, labels=(1, 2), seed=0, **overrides):
    rng = np.random.default_rng(seed)
    video = Video(id=vid, labels=None if labels is None else np.asarray(labels, np.int64),
                  rgb=rng.integers(0, 256, (frames, 1024), dtype=np.uint8),
                  audio=rng.integers(0, 256, (frames, 128), dtype=np.uint8),
                  mean_rgb=rng.uniform(-2, 2, 1024).astype(np.float32),
                  mean_audio=rng.uniform(-2, 2, 128).astype(np.float32))
    return dataclasses.replace(video, **overrides)


def write_shard(path, videos, version="2018", level="frame"):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_records(path, [encode(v, version, level) for v in videos])
    return path
