"""Out of fold, every demo model learns a generated competition better than its baseline.

Each model is the demo preset's architecture trained over 2 folds with one pinned schedule (the
same for the models and their baselines), and its pooled OOF GAP@20 must beat the mean-pooled
logistic baseline's OOF GAP (video-level models: the video-level logistic baseline) by a margin.
The competition has ordered classes (`SampleSpec.ordered_classes`): twins whose key segments
show the same two motifs in opposite orders, which only a model reading the frames in order
tells apart; the LSTM and the GRU beat the baseline through them.
The schedule is longer than the demo presets' own: `make all`'s four epochs on the sample show
the pipeline in its time budget but stop the frame-level models long before they converge.

Slow (about ten minutes on two cores): run by `make test-slow`, which CI runs.
"""

import pytest

from yt8m.features.writer import build_features
from yt8m.input.sample import SampleSpec, generate
from yt8m.models import trainer as oof

# The sample competition's generator at a size two cores train every demo model on in minutes:
# 200 classes, 2,100 labeled videos in 14 shards, 2 folds.
QUALITY = SampleSpec(seed=5, num_classes=200, train_shards=12, validate_shards=2, test_shards=1,
                     videos_per_shard=150, min_frames=60, max_frames=150, ordered_classes=0.6)
MARGIN = 0.02
# Pinned, so that later changes to the demo defaults cannot silently weaken the bar.
TRAINING = ("{epochs: 8, batch_size: 32, learning_rate: 2.0e-3, num_frames: 32, "
            "mixed_precision: float32}")
# model -> the baseline it must beat
BASELINE = {"nextvlad": "frame_logistic", "attention_cluster": "frame_logistic",
            "attention_lstm": "frame_logistic", "gated_netvlad": "frame_logistic",
            "dbof": "frame_logistic", "mix_nextvlad": "frame_logistic",
            "gated_netrvlad": "frame_logistic", "netfv": "frame_logistic",
            "lstm": "frame_logistic", "gru": "frame_logistic", "soft_dbof": "frame_logistic",
            "video_moe": "video_logistic"}


@pytest.fixture(scope="module")
def competition(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    generate(root / "input", QUALITY, progress=False)
    build_features(root / "input", root / "features", workers=1, num_folds=2, progress=False)
    (root / "models").mkdir()
    return root


_SCORES = {}


def oof_gap(root, name):
    if name not in _SCORES:
        spec = root / "models" / f"{name}.yaml"
        spec.write_text(f"model: {name}\npreset: demo\nseed: 0\ntraining: {TRAINING}\n")
        metrics, _ = oof.train(spec, features=root / "features")
        labeled = (QUALITY.train_shards + QUALITY.validate_shards) * QUALITY.videos_per_shard
        assert metrics["oof"]["videos"] == labeled  # every labeled video, once
        _SCORES[name] = metrics["oof"]["gap"]
        print(f"{name}: OOF GAP@20 {_SCORES[name]:.4f}")  # shown with -s
    return _SCORES[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BASELINE))
def test_demo_model_beats_the_mean_pooled_logistic_baseline_out_of_fold(competition, name):
    baseline = oof_gap(competition, BASELINE[name])
    assert baseline > 0.4  # the baseline itself learns (chance is about 0.02)
    assert oof_gap(competition, name) > baseline + MARGIN
