"""`yt8m predict`: a trained source scores a split of any cache without retraining, through the
same path as training's test predictions."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from yt8m import predictions
from yt8m.cli import main
from yt8m.features.cache import FeatureCache
from yt8m.features.writer import build_features

SPEC = "model: frame_logistic\npreset: demo\nseed: 2\ntraining: {epochs: 2, num_frames: 16}\n"


@pytest.fixture(scope="module")
def trained(tiny_input, tiny_features, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    (root / "features").symlink_to(tiny_features)
    (root / "models").mkdir()
    (root / "models" / "flog.yaml").write_text(SPEC)
    # a cache of "new" shards: the test shard alone, under another name
    new_input = root / "new_input" / "frame"
    new_input.mkdir(parents=True)
    shutil.copy(next((tiny_input / "frame").glob("test*.tfrecord")),
                new_input / "test0099.tfrecord")
    shutil.copy(tiny_input / "vocabulary.csv", root / "new_input")  # the sample's class count
    build_features(root / "new_input", root / "new_features", workers=1, progress=False)
    return root


@pytest.fixture
def workspace(trained, monkeypatch):
    monkeypatch.chdir(trained)
    if not Path("models/flog/metrics.json").exists():
        assert main(["train", "models/flog.yaml", "--quiet"]) == 0
    return trained


def _logits(folder, part="test"):
    return np.asarray(predictions.load(folder, part).logits, np.float32)


def test_predicting_the_test_split_reproduces_trainings_test_predictions(workspace, capsys):
    capsys.readouterr()
    assert main(["predict", "models/flog", "--quiet", "--force"]) == 0
    out = Path("models/flog/predict/test-mean")
    assert f"{out}: 30 test videos scored by flog (mean)" in capsys.readouterr().out
    np.testing.assert_array_equal(predictions.load(out, "test").ids,
                                  predictions.load("models/flog", "test").ids)
    np.testing.assert_array_equal(_logits(out), _logits("models/flog"))
    record = json.loads((out / "predict.json").read_text())
    assert record["scores"] is None and len(record["models"]) == 5  # unlabeled; 5 fold models
    assert not list(out.parent.glob("*.partial"))
    # nothing is replaced without --force
    assert main(["predict", "models/flog", "--quiet"]) == 2
    assert "predictions exist already; pass --force" in capsys.readouterr().err
    # the output is a source for a submission
    assert main(["submission", "write", "--source", str(out), "--id", "rescored"]) == 0
    assert "wrote submissions/rescored.csv (30 videos" in capsys.readouterr().out


def test_one_fold_model_scores_a_labeled_split_as_it_scored_its_held_out_videos(workspace):
    cache = FeatureCache("features")
    rows = cache.rows("validate")
    fold = int(cache.fold[rows[0]])  # the validate shard is one fold's held-out videos
    assert main(["predict", "models/flog", "--split", "validate", "--which", f"fold:{fold}",
                 "--quiet", "--force"]) == 0
    out = Path(f"models/flog/predict/validate-fold_{fold}")
    got = predictions.load(out, "test")
    np.testing.assert_array_equal(got.ids, cache.ids[rows])
    held = predictions.load(f"models/flog/fold_{fold}", "oof")  # float32, as fold k wrote them
    at = {video: i for i, video in enumerate(held.ids)}
    theirs = np.asarray(held.logits)[[at[video] for video in got.ids]]
    np.testing.assert_array_equal(_logits(out), theirs.astype(np.float16).astype(np.float32))
    record = json.loads((out / "predict.json").read_text())
    assert record["scores"]["videos"] == len(rows) and record["scores"]["gap"] > 0.05


def test_a_cache_of_new_shards_is_scored_like_the_training_caches_test_split(workspace):
    Path("models/flog/predict/new.partial").mkdir(parents=True, exist_ok=True)  # a killed run's
    assert main(["predict", "models/flog", "--features", "new_features", "--out",
                 "models/flog/predict/new", "--quiet", "--force"]) == 0
    np.testing.assert_array_equal(_logits("models/flog/predict/new"), _logits("models/flog"))
    assert not Path("models/flog/predict/new.partial").exists()


@pytest.mark.parametrize("args, message", [
    (["models/flog", "--which", "refit"],
     "models/flog/refit/: no refit model; set training: {refit: true}"),
    (["models/flog", "--which", "fold:7"], "models/flog: no fold 7; its folds are [0, 1, 2, 3, 4]"),
    (["models/flog", "--features", "new_features", "--split", "train"],
     "new_features/frame: the train split has no videos"),
    (["models/none"], "models/none/metrics.json: not a trained model"),
])
def test_bad_requests_are_one_line_naming_the_file_and_the_fix(workspace, capsys, args, message):
    capsys.readouterr()
    assert main(["predict", *args, "--quiet", "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_spec_changed_since_training_is_refused(workspace, capsys):
    spec = Path("models/flog.yaml")
    original = spec.read_text()
    try:
        spec.write_text(original.replace("seed: 2", "seed: 3"))
        assert main(["predict", "models/flog", "--quiet", "--force"]) == 2
        assert "models/flog.yaml: changed since models/flog/ was trained" in \
            capsys.readouterr().err
    finally:
        spec.write_text(original)
