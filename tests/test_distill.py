"""Distillation: `training: {teacher: ..., teacher_weight: w}` trains a model out of fold on the
teacher's out-of-fold soft targets mixed with the labels."""

import json
from pathlib import Path

import numpy as np
import pytest

from yt8m import predictions
from yt8m.cli import main
from yt8m.errors import Yt8mError
from yt8m.features.cache import FeatureCache
from yt8m.fileio import write_json
from yt8m.models.distill import Teacher
from yt8m.models.registry import load_spec

STUDENT = ("model: video_logistic\npreset: demo\nseed: 1\n"
           "training: {{epochs: 8, learning_rate: 0.03, batch_size: 16, teacher: teacher,\n"
           "           teacher_weight: {weight}}}\n")


def _teacher(folder, cache, logits, level="frame"):
    """A teacher folder holding `logits` as the OOF rows of every labeled video in a fold."""
    rows = cache.rows(folds=range(cache.num_folds))
    folder.mkdir(exist_ok=True)
    predictions.save(folder, "oof", cache.ids[rows], logits(len(rows), cache.num_classes))
    write_json(folder / "metrics.json", {"id": folder.name, "level": level,
                                         "oof": {"gap": 0.5}})
    return rows


def test_targets_mix_the_teachers_probabilities_with_the_labels(tiny_features, tmp_path):
    cache = FeatureCache(tiny_features)
    rng = np.random.default_rng(0)
    rows = _teacher(tmp_path / "t", cache,
                    lambda n, c: rng.normal(0, 3, (n, c)).astype(np.float32))
    teacher = Teacher(tmp_path / "t", cache, weight=0.3)
    stored = predictions.load(tmp_path / "t", "oof")
    batch = rows[[7, 2, 40, 11]]  # any order: a shuffled batch
    labels = cache.multi_hot(batch)
    at = [list(stored.ids).index(v) for v in cache.ids[batch]]
    soft = 1 / (1 + np.exp(-np.asarray(stored.logits[at], np.float64)))
    np.testing.assert_allclose(teacher.targets(batch, labels), 0.3 * soft + 0.7 * labels,
                               atol=1e-6)
    # a video outside the folds (no teacher row) keeps its labels
    outside = cache.rows("test")[:2]
    np.testing.assert_array_equal(teacher.targets(outside, np.ones((2, cache.num_classes))),
                                  np.ones((2, cache.num_classes)))


def test_a_teacher_without_every_labeled_video_or_at_another_level_is_refused(tiny_features,
                                                                             tmp_path):
    cache = FeatureCache(tiny_features)
    rows = _teacher(tmp_path / "t", cache, lambda n, c: np.zeros((n, c), np.float32))
    predictions.save(tmp_path / "t", "oof", cache.ids[rows[5:]],
                     np.zeros((len(rows) - 5, cache.num_classes), np.float32))
    with pytest.raises(Yt8mError, match=f"no out-of-fold prediction for 5 of the {len(rows)} "):
        Teacher(tmp_path / "t", cache)
    _teacher(tmp_path / "v", cache, lambda n, c: np.zeros((n, c), np.float32), level="video")
    with pytest.raises(Yt8mError, match="built on video-level features, the student trains on "
                                        "frame-level"):
        Teacher(tmp_path / "v", cache)
    with pytest.raises(Yt8mError, match="the teacher has no out-of-fold predictions"):
        Teacher(tmp_path / "none", cache)


@pytest.mark.slow
def test_the_student_learns_the_teachers_targets_out_of_fold(tiny_features, tmp_path,
                                                             monkeypatch, capsys):
    """A teacher that always says "class 7" (and weight 1) makes a student that ranks class 7
    first for nearly every held-out video, which the labels alone never would; the held-out
    scores are still against the labels; a rebuilt teacher retrains the student."""
    monkeypatch.chdir(tmp_path)
    Path("features").symlink_to(tiny_features)
    cache = FeatureCache("features")

    def class_seven(n, c):
        logits = np.full((n, c), -8.0, np.float32)
        logits[:, 7] = 8.0
        return logits

    _teacher(Path("teacher"), cache, class_seven)
    Path("models").mkdir()
    Path("models/student.yaml").write_text(STUDENT.format(weight=1.0))
    assert main(["train", "models/student.yaml", "--quiet"]) == 0
    oof = predictions.load("models/student", "oof")
    top = np.asarray(oof.logits, np.float32).argmax(axis=1)
    assert (top == 7).mean() > 0.6  # measured 0.79; trained on the labels alone, 0
    labels_of_7 = cache.multi_hot(cache.rows(folds=range(cache.num_folds)))[:, 7].mean()
    assert labels_of_7 < 0.5  # the labels alone would not put class 7 first
    metrics = json.loads(Path("models/student/metrics.json").read_text())
    assert metrics["teacher"]["source"] == "teacher" and metrics["teacher"]["weight"] == 1.0
    assert metrics["oof"]["hit_at_one"] == pytest.approx(labels_of_7, abs=0.1)  # vs the labels
    capsys.readouterr()
    assert main(["train", "models/student.yaml", "--quiet"]) == 0
    assert "student: up to date" in capsys.readouterr().out
    # a rebuilt teacher changes what the student was trained from: it will retrain
    before = load_spec("models/student.yaml").config_hash()
    assert before == metrics["config_hash"]
    write_json(Path("teacher/metrics.json"), {"id": "teacher", "oof": {"gap": 0.6}})
    assert load_spec("models/student.yaml").config_hash() != before


def test_teacher_weight_outside_zero_to_one_is_refused(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(STUDENT.format(weight=1.5))
    assert main(["size", str(spec)]) == 2
    assert "training: teacher_weight must be between 0 and 1, got 1.5" in capsys.readouterr().err
