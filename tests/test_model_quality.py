"""Every demo model learns the sample competition better than a mean-pooled logistic baseline.

Slow (about four minutes on two cores): run by `make test-slow`, which CI runs.
"""

import keras
import pytest

from yt8m.features.build import build_features
from yt8m.features.cache import FeatureCache
from yt8m.input.sample import SampleSpec, generate
from yt8m.metrics import evaluate
from yt8m.models import build
from yt8m.models.registry import parse_spec
from yt8m.models.training import CacheBatches, predict_logits, prepare

# The sample competition's generator at a size two cores train every demo model on in minutes:
# 200 classes, 1,800 training and 300 held-out videos.
QUALITY = SampleSpec(seed=5, num_classes=200, train_shards=12, validate_shards=2, test_shards=0,
                     videos_per_shard=150, min_frames=60, max_frames=150)
MARGIN = 0.02
# Pinned, so that later changes to the demo defaults cannot silently weaken the bar.
TRAINING = {"epochs": 8, "batch_size": 32, "learning_rate": 2e-3, "num_frames": 32}
# model -> the baseline it must beat, trained the same way (same data, epochs, frames, seed)
BASELINE = {"nextvlad": "frame_logistic", "attention_cluster": "frame_logistic",
            "attention_lstm": "frame_logistic", "gated_netvlad": "frame_logistic",
            "dbof": "frame_logistic", "mix_nextvlad": "frame_logistic",
            "video_moe": "video_logistic"}


@pytest.fixture(scope="module")
def competition(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    generate(root / "input", QUALITY, progress=False)
    build_features(root / "input", root / "features", workers=1, progress=False)
    return FeatureCache(root / "features")


_SCORES = {}


def held_out_gap(cache, name):
    if name not in _SCORES:
        keras.utils.set_random_seed(0)
        spec = parse_spec({"model": name, "preset": "demo", "training": TRAINING})
        training = spec.settings()[1]
        model = build(spec, cache.num_classes)
        train, held_out = cache.rows("train"), cache.rows("validate")
        model.fit(prepare(model, training, cache, train, spec.level),
                  epochs=training["epochs"], verbose=0)
        batches = CacheBatches(cache, held_out, spec.level, training, shuffle=False)
        _SCORES[name] = evaluate(predict_logits(model, batches), cache.label_lists(held_out),
                                 from_logits=True)["gap"]
    return _SCORES[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BASELINE))
def test_demo_model_beats_the_mean_pooled_logistic_baseline(competition, name):
    baseline = held_out_gap(competition, BASELINE[name])
    assert baseline > 0.4  # the baseline itself learns (chance is about 0.02)
    assert held_out_gap(competition, name) > baseline + MARGIN
