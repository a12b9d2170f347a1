"""Ensembles: mean and cross-fitted weighted blends of members' OOF and test logits."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from yt8m import ensembles, predictions
from yt8m.cli import main
from yt8m.ensembles import streaming
from yt8m.errors import Yt8mError
from yt8m.features.cache import FeatureCache
from yt8m.fileio import output_lock


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
    stale = Path("ensembles/w/.candidates.killed.tmp")  # what a killed weighted build leaves
    stale.mkdir(parents=True)
    (stale / "values").write_bytes(b"0" * 100)
    assert main(["ensemble", "ensembles/w.yaml"]) == 0
    metrics = json.loads(Path("ensembles/w/metrics.json").read_text())
    best = max(s["gap"] for s in metrics["member_oof"].values())
    assert metrics["oof"]["gap"] > best + 0.02
    weights = metrics["weights"]
    assert weights["noise"] < 0.1 < min(weights["low"], weights["high"])
    report = Path("ensembles/w/report.md").read_text()
    assert "Best single model" in report and "`noise`" in report and "correlation" in report
    oof = predictions.load("ensembles/w", "oof")
    np.testing.assert_array_equal(oof.ids, predictions.load("models/low", "oof").ids)
    assert "w: weighted of 3 models" in capsys.readouterr().out
    assert metrics["weight_search"]["candidates"] >= 40  # more when members disagree
    assert not list(Path("ensembles/w").glob(".*.tmp")), "temporary files are deleted"


def _logits(folder, part):
    return np.asarray(predictions.load(folder, part).logits, np.float32)


def _oof_folds(cache):
    """The fold of each row of the members' OOF predictions."""
    position = {video: row for row, video in enumerate(cache.ids.tolist())}
    ids = predictions.load("models/low", "oof").ids.tolist()
    return cache.fold[np.array([position[video] for video in ids])]


def test_weighted_oof_rows_of_fold_k_use_the_weights_fitted_without_it(workspace):
    # "low" knows its classes on folds 0-1 only: the weights fitted without those folds differ
    folds = _oof_folds(workspace)
    low = _logits("models/low", "oof")
    noise = np.random.default_rng(5).normal(0, 1, low.shape).astype(np.float32)
    low[folds >= 2] = noise[folds >= 2]
    predictions.save("models/low", "oof", predictions.load("models/low", "oof").ids, low)
    Path("ensembles/w.yaml").write_text("members: [low, high, noise]\ncombiner: weighted\n")
    ensembles.build("ensembles/w.yaml")
    metrics = json.loads(Path("ensembles/w/metrics.json").read_text())
    members = metrics["members"]
    stack = np.stack([_logits(f"models/{m}", "oof") for m in members])
    oof = _logits("ensembles/w", "oof")
    fold_weights = {int(k): np.array(w) for k, w in metrics["fold_weights"].items()}
    assert sorted(fold_weights) == list(range(workspace.num_folds))
    overall = np.array([metrics["weights"][m] for m in members])
    distinct = [k for k, w in fold_weights.items() if np.abs(w - overall).max() > 0.05]
    assert distinct, (fold_weights, overall)  # else the check below could not tell them apart
    for k, w in fold_weights.items():
        rows = folds == k
        expected = np.tensordot(w / w.sum(), stack[:, rows], axes=1)
        np.testing.assert_allclose(oof[rows], expected, atol=1e-2, err_msg=f"fold {k}")
    for k in distinct:  # and not with the weights fitted on every row
        rows = folds == k
        assert np.abs(oof[rows] - np.tensordot(overall, stack[:, rows], axes=1)).max() > 0.05


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


def test_stack_beats_every_member_and_its_test_logits_are_the_fold_stackers_mean(workspace,
                                                                                capsys):
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
    assert "s: stack of 3 models" in capsys.readouterr().out

    test = predictions.load("ensembles/s", "test")
    np.testing.assert_array_equal(test.ids, predictions.load("models/low", "test").ids)
    per_fold = np.stack([predictions.load(f"ensembles/s/fold_{k}", "test").aligned_to(test.ids)
                         for k in range(workspace.num_folds)]).astype(np.float32)
    mean = per_fold.mean(0, dtype=np.float64)
    for fold in per_fold:  # no single fold's stacker passes for the mean
        assert not np.allclose(fold, mean, rtol=1e-2, atol=1e-2)
    # stored as float16: equal up to its rounding (2**-11 relative)
    np.testing.assert_allclose(np.asarray(test.logits, np.float32), mean, rtol=1e-3, atol=1e-3)
    oof = predictions.load("ensembles/s", "oof")
    row_fold = _oof_folds(workspace)
    for k in range(workspace.num_folds):  # fold k's OOF rows are fold k's stacker's
        fold = predictions.load(f"ensembles/s/fold_{k}", "oof")
        np.testing.assert_array_equal(np.sort(fold.ids), np.sort(oof.ids[row_fold == k]))
        np.testing.assert_allclose(np.asarray(oof.logits[row_fold == k], np.float32),
                                   fold.aligned_to(oof.ids[row_fold == k]), rtol=1e-3, atol=1e-3)


def test_stacker_folds_are_trained_again_when_a_member_changes_and_only_then(workspace):
    Path("ensembles/s.yaml").write_text(STACK.format(epochs=1) + "  batch_size: 256\n")
    ensembles.build("ensembles/s.yaml")
    records = sorted(Path("ensembles/s").glob("fold_*/fold.json"))
    assert len(records) == workspace.num_folds

    def stamps():
        return [p.stat().st_mtime_ns for p in records]

    def fold_test():
        return [np.asarray(predictions.load(p.parent, "test").logits) for p in records]

    before, test_before = stamps(), fold_test()
    other = predictions.load("models/noise", "test")  # a model outside the spec changes
    predictions.save("models/other", "test", other.ids, np.asarray(other.logits) + 1)
    ensembles.build("ensembles/s.yaml")
    assert stamps() == before, "unchanged members: every fold is read back"

    noise = predictions.load("models/noise", "test")  # a member's predictions are rewritten
    predictions.save("models/noise", "test", noise.ids, np.asarray(noise.logits, np.float32) * 3)
    ensembles.build("ensembles/s.yaml")
    after = stamps()
    assert all(a != b for a, b in zip(after, before, strict=True))
    assert all(not np.array_equal(a, b) for a, b in zip(fold_test(), test_before, strict=True))

    Path("models/low/metrics.json").write_text(json.dumps({"config_hash": "retrained"}))
    ensembles.build("ensembles/s.yaml")  # a member's metrics change (it was retrained)
    assert all(a != b for a, b in zip(stamps(), after, strict=True))

    after = stamps()
    Path("ensembles/s.yaml").write_text(STACK.format(epochs=2) + "  batch_size: 256\n")  # new spec
    ensembles.build("ensembles/s.yaml")
    assert all(a != b for a, b in zip(stamps(), after, strict=True))


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


@pytest.mark.parametrize("name", ["oof_logits.npy", "oof_ids.npy", "test_logits.npy",
                                  "test_ids.npy"])
def test_a_truncated_member_file_is_named_with_the_fix(workspace, capsys, name):
    path = Path("models/high") / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(Yt8mError, match=f"models/high/{name}: .*truncated or damaged"):
        predictions.load("models/high", name.split("_")[0])
    Path("ensembles/m.yaml").write_text("members: [low, high]\ncombiner: mean\n")
    assert main(["ensemble", "ensembles/m.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"models/high/{name}" in err and "retrain" in err, err
    Path(path).write_bytes(b"")
    with pytest.raises(Yt8mError, match=f"models/high/{name}: .*truncated or damaged"):
        predictions.load("models/high", name.split("_")[0])


@pytest.mark.parametrize("part, value", [("oof", np.nan), ("test", np.inf)])
def test_a_member_with_non_finite_logits_is_named(workspace, capsys, part, value):
    saved = predictions.load("models/high", part)
    logits = np.asarray(saved.logits, np.float32)
    logits[[1, 4, 7], 3] = value
    logits[4, 9] = -np.inf
    predictions.save("models/high", part, saved.ids, logits)
    for combiner in ("mean", "weighted"):
        Path("ensembles/m.yaml").write_text(f"members: [low, high]\ncombiner: {combiner}\n")
        assert main(["ensemble", "ensembles/m.yaml"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert f"models/high: 3 of its {len(logits)} {part} rows hold NaN or infinite" in err, err
    assert not Path("ensembles/m/test_logits.npy").exists()


def test_non_finite_rows_are_counted_chunk_by_chunk():
    logits = np.zeros((11, 4), np.float16)
    logits[[0, 5, 10], [1, 2, 3]] = [np.nan, np.inf, -np.inf]
    logits[5, 0] = np.nan
    assert predictions.non_finite_rows(logits, chunk_rows=2) == 3
    assert predictions.non_finite_rows(logits[1:5]) == 0


def test_a_second_writer_of_an_ensemble_is_refused_naming_the_first(workspace, capsys):
    Path("ensembles/m.yaml").write_text("members: [low, high]\ncombiner: mean\n")
    with output_lock(Path("ensembles/m"), "a test holding it"):
        assert main(["ensemble", "ensembles/m.yaml"]) == 2
        err = capsys.readouterr().err
        assert f"ensembles/m/ is being written by process {os.getpid()} (a test holding it" in err
        assert not Path("ensembles/m/test_logits.npy").exists()
    assert main(["ensemble", "ensembles/m.yaml"]) == 0


def test_rows_are_located_by_sorting_and_strays_named(tmp_path):
    among = np.array(["v3", "v1", "v2", "v9"])
    np.testing.assert_array_equal(streaming.locate(["v2", "v7", "v3", "v9"], among), [2, -1, 0, 3])
    predictions.save(tmp_path, "oof", among, np.zeros((4, 2)))
    saved = predictions.load(tmp_path, "oof")
    assert streaming.row_index(saved, among) == slice(None)
    np.testing.assert_array_equal(streaming.row_index(saved, among[::-1]), [3, 2, 1, 0])
    with pytest.raises(Yt8mError, match="1 missing \\(e.g. v5\\), 2 unexpected"):
        streaming.row_index(saved, ["v1", "v5", "v9"])
