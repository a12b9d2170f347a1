"""Ensembles: mean and cross-fitted weighted blends of members' OOF and test logits."""

import json
from pathlib import Path

import numpy as np
import pytest

from yt8m import ensembles, predictions
from yt8m.cli import main
from yt8m.errors import Yt8mError
from yt8m.features.cache import FeatureCache


def _member(cache, rows, name, informative, rng, noise):
    """Logits that rank the true labels of the `informative` classes high, noise elsewhere."""
    truth = cache.multi_hot(rows)
    logits = rng.normal(0, 1, truth.shape).astype(np.float32)
    keep = np.zeros(truth.shape[1], bool)
    keep[informative] = True
    logits[:, keep] += (truth[:, keep] * 4 - 2) + rng.normal(0, noise, (len(rows), keep.sum()))
    return logits


@pytest.fixture
def workspace(tiny_features, tmp_path, monkeypatch):
    """Two members that know different halves of the classes, and a third that is noise."""
    monkeypatch.chdir(tmp_path)
    Path("features").symlink_to(tiny_features)
    cache = FeatureCache("features")
    rows = cache.rows(folds=range(cache.num_folds))
    test_rows = cache.rows("test")
    rng = np.random.default_rng(0)
    half = cache.num_classes // 2
    for name, informative in (("low", np.arange(half)), ("high", np.arange(half, 2 * half)),
                              ("noise", np.arange(0))):
        folder = Path("models") / name
        predictions.save(folder, "oof", cache.ids[rows],
                         _member(cache, rows, name, informative, rng, 1.0))
        predictions.save(folder, "test", cache.ids[test_rows],
                         rng.normal(0, 1, (len(test_rows), cache.num_classes)))
    Path("ensembles").mkdir()
    return cache


def test_weighted_blend_beats_every_member_and_is_cross_fitted(workspace, capsys):
    Path("ensembles/w.yaml").write_text("members: [low, high, noise]\ncombiner: weighted\n")
    assert main(["ensemble", "ensembles/w.yaml"]) == 0
    metrics = json.loads(Path("ensembles/w/metrics.json").read_text())
    best = max(s["gap"] for s in metrics["member_oof"].values())
    assert metrics["oof"]["gap"] > best + 0.02
    weights = metrics["weights"]
    assert weights["noise"] < 0.1 < min(weights["low"], weights["high"])
    assert len(metrics["fold_weights"]) == workspace.num_folds
    report = Path("ensembles/w/report.md").read_text()
    assert "Best single model" in report and "`noise`" in report and "correlation" in report
    oof = predictions.load("ensembles/w", "oof")
    np.testing.assert_array_equal(oof.ids, predictions.load("models/low", "oof").ids)
    assert "w: weighted of 3 models" in capsys.readouterr().out


def test_mean_of_logits_and_of_probabilities(workspace):
    for space in ("logits", "probabilities"):
        Path("ensembles/m.yaml").write_text(
            f"members: [low, high]\ncombiner: mean\nspace: {space}\n")
        metrics = ensembles.build("ensembles/m.yaml")
        low = np.asarray(predictions.load("models/low", "test").logits, np.float32)
        high = np.asarray(predictions.load("models/high", "test").logits, np.float32)
        test = np.asarray(predictions.load("ensembles/m", "test").logits, np.float32)
        if space == "logits":
            expected = (low + high) / 2
        else:
            p = (1 / (1 + np.exp(-low)) + 1 / (1 + np.exp(-high))) / 2
            expected = np.log(p) - np.log1p(-p)
        np.testing.assert_allclose(test, expected, atol=2e-2)
        assert metrics["space"] == space


def test_members_that_disagree_on_videos_are_refused(workspace):
    oof = predictions.load("models/high", "oof")
    predictions.save("models/high", "oof", oof.ids[::-1], np.asarray(oof.logits)[::-1])
    Path("ensembles/m.yaml").write_text("members: [low, high]\ncombiner: mean\n")
    with pytest.raises(Yt8mError, match="models/high: its oof predictions cover other videos or "
                                        "another row order than models/low"):
        ensembles.build("ensembles/m.yaml")


STACK = "members: [low, high, noise]\ncombiner: stack\nstacker:\n  epochs: {epochs}\n"


def test_stack_beats_every_member_out_of_fold_and_resumes(workspace, capsys):
    Path("ensembles/s.yaml").write_text(STACK.format(epochs=6))
    assert main(["ensemble", "ensembles/s.yaml"]) == 0
    metrics = json.loads(Path("ensembles/s/metrics.json").read_text())
    best = max(s["gap"] for s in metrics["member_oof"].values())
    assert metrics["oof"]["gap"] > best + 0.02
    folds = metrics["stacker_folds"]
    assert [r["fold"] for r in folds] == list(range(workspace.num_folds))
    labeled = len(predictions.load("models/low", "oof"))
    for record in folds:  # each fold's stacker never trained on the rows it scored
        assert record["train_videos"] + record["oof"]["videos"] == labeled
    assert metrics["stacker"]["epochs"] == 6 and metrics["weights"] is None
    assert "Each fold's stacker" in Path("ensembles/s/report.md").read_text()
    test = predictions.load("ensembles/s", "test")
    np.testing.assert_array_equal(test.ids, predictions.load("models/low", "test").ids)
    assert np.isfinite(np.asarray(test.logits, np.float32)).all()
    assert "s: stack of 3 models" in capsys.readouterr().out

    # a second run reads the finished folds back; a changed spec trains them again
    written = {p: p.stat().st_mtime_ns for p in Path("ensembles/s").glob("fold_*/fold.json")}
    again = ensembles.build("ensembles/s.yaml")
    assert again["oof"]["gap"] == pytest.approx(metrics["oof"]["gap"], abs=1e-6)
    assert {p: p.stat().st_mtime_ns for p in written} == written
    Path("ensembles/s.yaml").write_text(STACK.format(epochs=1))
    ensembles.build("ensembles/s.yaml")
    assert all(p.stat().st_mtime_ns != t for p, t in written.items())


def test_stack_with_the_video_features(workspace):
    Path("ensembles/v.yaml").write_text(STACK.format(epochs=1) + "  video_features: true\n")
    metrics = ensembles.build("ensembles/v.yaml")
    assert metrics["stacker"]["video_features"] is True
    assert 0 < metrics["oof"]["gap"] <= 1
    assert len(predictions.load("ensembles/v", "oof")) == len(predictions.load("models/low", "oof"))


@pytest.mark.parametrize("text, message", [
    ("members: [low]\ncombiner: mean\n", "at least two distinct model ids"),
    ("members: [low, high]\ncombiner: median\n", "combiner must be one of"),
    ("members: [low, high]\ncombiner: mean\nweights: [1, 2]\n", "unknown keys \\['weights'\\]"),
    ("members: [low, high]\ncombiner: mean\nstacker: {epochs: 2}\n",
     "only apply to combiner: stack"),
    ("members: [low, high]\ncombiner: stack\nstacker: {depth: 2}\n", "unknown stacker keys"),
    ("members: [low, high]\ncombiner: stack\nstacker: {epochs: 0}\n",
     "stacker.epochs must be a positive integer"),
    ("members: [low, high]\ncombiner: stack\nstacker: {output_gating: yes}\n",
     "stacker.output_gating must be a positive integer"),
    ("members: [low, high]\ncombiner: stack\nstacker: {learning_rate: -1.0}\n",
     "stacker.learning_rate must be a number > 0"),
])
def test_bad_specs_name_the_file_and_the_key(workspace, text, message):
    Path("ensembles/bad.yaml").write_text(text)
    with pytest.raises(Yt8mError, match=f"ensembles/bad.yaml: .*{message}"):
        ensembles.build("ensembles/bad.yaml")
