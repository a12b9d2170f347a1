"""The 2019 chain: a segment-rated sample, segment fine-tuning out of fold, a `Class,Segments`
submission scored against the answer key, and a killed segment stage resuming."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yt8m.cli import main
from yt8m.errors import Yt8mError
from yt8m.features.cache import FeatureCache
from yt8m.features.segments import SegmentRatings, scored_classes, segment_grid
from yt8m.features.writer import build_features
from yt8m.input.sample import SampleSpec, generate
from yt8m.models import segments
from yt8m.models import trainer as oof
from yt8m.models.registry import parse_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = SampleSpec(seed=19, version="2019", num_classes=60, scored_classes=40, train_shards=4,
                  validate_shards=2, test_shards=1, videos_per_shard=60, max_frames=100)
MODEL = ("model: frame_logistic\npreset: demo\nseed: 0\n"
         "training: {epochs: 4, num_frames: 32, mixed_precision: float32}\n"
         "segments: {epochs: 2, batch_size: 32}\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2019 sample whose frame_logistic spec has its two folds trained."""
    root = tmp_path_factory.mktemp("seg2019")
    generate(root / "input", SPEC, progress=False)
    build_features(root / "input", root / "features", workers=1, num_folds=2, progress=False)
    (root / "models").mkdir()
    (root / "models" / "logistic.yaml").write_text(MODEL)
    oof.train(root / "models" / "logistic.yaml", features=root / "features")
    return root


def _segments_cli(root, models, *kill_at):
    kill = [*kill_at, "--"] if kill_at else ["--"]
    return subprocess.run([sys.executable, str(ROOT / "tests" / "kill_at.py"), *kill, "segments",
                           str(root / "models" / "logistic.yaml"), "--quiet", "--features",
                           str(root / "features"), "--input", str(root / "input"), "--models",
                           str(models)], capture_output=True, text=True, cwd=ROOT)


def _copy_model(root, name):
    target = root / name / "logistic"
    if target.exists():
        shutil.rmtree(target.parent)
    shutil.copytree(root / "models" / "logistic", target,
                    ignore=shutil.ignore_patterns("segments"))
    return target.parent


def test_segment_chain_from_the_cli(trained, capsys):
    root = trained
    args = ["--features", str(root / "features"), "--input", str(root / "input")]
    main(["segments", str(root / "models" / "logistic.yaml"), "--quiet", *args])
    folder = root / "models" / "logistic" / "segments"
    metrics = json.loads((folder / "metrics.json").read_text())
    cache = FeatureCache(root / "features")
    ratings = SegmentRatings(cache)
    # the out-of-fold MAP is the pooled scores' against the validate ratings ...
    chance = ratings.evaluator(ratings.rated_rows, np.array(metrics["scored_classes"]), 100_000)
    rng = np.random.default_rng(0)
    chance.update(rng.random((len(segment_grid(cache, ratings.rated_rows)[0]), 40)))
    assert metrics["oof"]["map"] > chance.result()["map"] + 0.2 and metrics["oof"]["map"] > 0.6
    assert metrics["oof"]["classes"] >= 20 and len(metrics["folds"]) == 2
    # fine-tuning on the other folds' rated segments beats the video model's own scores
    assert all(f["map"] > f["map_before"] + 0.01 for f in metrics["folds"]), metrics["folds"]
    # ... over every 5-second segment of the rated videos, scored classes only
    oof_ids = np.load(folder / "oof_ids.npy")
    assert np.load(folder / "oof_logits.npy", mmap_mode="r").shape == (len(oof_ids), 40)
    assert len(oof_ids) == int(np.ceil(cache.num_frames[ratings.rated_rows] / 5).sum())
    main(["submission", "write", "--competition", "youtube8m-2019", "--output",
          str(root / "submissions"), "--roots", str(root / "models"), *args])
    out = capsys.readouterr().out
    path = root / "submissions" / "logistic_segments.csv"
    assert path.read_text().startswith("Class,Segments\n")
    assert "scored against" in out and "MAP@100000" in out
    test_map = float(out.split("MAP@100000 ")[-1].split()[0])
    assert test_map > 0.6, out
    main(["submission", "check", str(path), *args])
    assert "a valid segments-level submission, 40 rows" in capsys.readouterr().out
    # a second run keeps the finished folds; a retrained video fold redoes its segment fold
    before = {k: (folder / f"fold_{k}" / "fold.json").stat().st_mtime_ns for k in (0, 1)}
    main(["segments", str(root / "models" / "logistic.yaml"), "--quiet", *args])
    assert {k: (folder / f"fold_{k}" / "fold.json").stat().st_mtime_ns for k in (0, 1)} == before
    weights = root / "models" / "logistic" / "fold_1" / "best.weights.h5"
    weights.write_bytes(weights.read_bytes())  # as a retrained fold's new file
    main(["segments", str(root / "models" / "logistic.yaml"), "--quiet", *args])
    assert (folder / "fold_0" / "fold.json").stat().st_mtime_ns == before[0]
    assert (folder / "fold_1" / "fold.json").stat().st_mtime_ns != before[1]


@pytest.fixture(scope="module")
def reference(trained):
    """The segment stage run once, uninterrupted, in a copy of the trained model."""
    folder = _copy_model(trained, "reference")
    run = _segments_cli(trained, folder)
    assert run.returncode == 0, run.stderr
    return folder


@pytest.mark.parametrize("kill_at", [
    ("yt8m.models.segments:train_fold", "2"),              # fold 0 done, fold 1 not started
    ("yt8m.models.segments:_predict", "2", "after"),      # fold 0: test scores not committed
    ("yt8m.models.segments:_assemble", "1"),               # both folds done, nothing pooled
])
def test_a_killed_segment_stage_resumes_to_the_same_result(trained, reference, kill_at):
    killed = _copy_model(trained, "killed")
    run = _segments_cli(trained, killed, *kill_at)
    assert run.returncode == -signal.SIGKILL, run.stderr
    run = _segments_cli(trained, killed)
    assert run.returncode == 0, run.stderr
    for part in ("oof", "test"):
        for suffix in ("logits", "ids"):
            name = f"logistic/segments/{part}_{suffix}.npy"
            np.testing.assert_array_equal(np.load(killed / name), np.load(reference / name))
    same = [json.loads((d / "logistic/segments/metrics.json").read_text())["oof"]
            for d in (killed, reference)]
    assert same[0] == same[1]


def test_segment_settings_are_checked():
    base = {"model": "frame_logistic", "preset": "demo"}
    assert parse_spec(base | {"segments": {"epochs": 2}}).segments == {"epochs": 2}
    assert parse_spec(base | {"segments": None}).segments == {}
    assert parse_spec(base).segments is None
    with pytest.raises(Yt8mError, match="unknown key 'epoch'"):
        parse_spec(base | {"segments": {"epoch": 2}})
    with pytest.raises(Yt8mError, match="learning_rate must be above 0"):
        parse_spec(base | {"segments": {"learning_rate": 0}})
    with pytest.raises(Yt8mError, match="only frame-level models"):
        parse_spec({"model": "video_logistic", "segments": {}})


def test_the_stage_names_what_is_missing(trained, tmp_path):
    spec = tmp_path / "plain.yaml"
    spec.write_text("model: frame_logistic\npreset: demo\n")
    with pytest.raises(Yt8mError, match="no `segments:` section"):
        segments.run(spec, trained / "features", trained / "input", tmp_path)
    spec.write_text(MODEL)
    with pytest.raises(Yt8mError, match="best.weights.h5 is missing"):
        segments.run(spec, trained / "features", trained / "input", tmp_path)
    bad = tmp_path / "input"
    bad.mkdir()
    (bad / "segment_label_ids.csv").write_text("Index\n3\n99\n")
    with pytest.raises(Yt8mError, match=r"class ids must be in \[0, 60\)"):
        scored_classes(bad, 60)


def test_ratings_off_the_segment_grid_are_named(trained, monkeypatch):
    cache = FeatureCache(trained / "features")
    row, start, label, rating = cache.segment_ratings()
    start = start.copy()
    start[0] = 3
    monkeypatch.setattr(FeatureCache, "segment_ratings",
                        lambda self, rows=None: (row, start, label, rating))
    with pytest.raises(Yt8mError, match=f"video {cache.ids[row[0]]} has a rating of segment 3"):
        SegmentRatings(cache)


@pytest.mark.parametrize("combiner", ["mean", "weighted"])
def test_segment_ensembles_blend_out_of_fold_and_feed_the_submission(trained, tmp_path,
                                                                     combiner):
    from yt8m.ensembles import build as build_ensemble
    from yt8m.predictions import load

    root = trained
    other = root / "models" / "other.yaml"
    if not (root / "models" / "other" / "segments" / "metrics.json").exists():
        other.write_text(MODEL.replace("seed: 0", "seed: 1").replace("epochs: 4", "epochs: 2"))
        oof.train(other, features=root / "features")
    for name in ("logistic", "other"):
        segments.run(root / "models" / f"{name}.yaml", root / "features", root / "input")
    spec = tmp_path / f"seg_{combiner}.yaml"
    spec.write_text(f"members: [logistic, other]\ncombiner: {combiner}\nsegments: true\n")
    metrics = build_ensemble(spec, root / "features", root / "models")
    folder = tmp_path / spec.stem / "segments"
    members = [load(root / "models" / m / "segments", "oof") for m in ("logistic", "other")]
    blended = load(folder, "oof")
    cache = FeatureCache(root / "features")
    ratings = SegmentRatings(cache)
    fold = cache.fold[segment_grid(cache, ratings.rated_rows)[0]]
    for k, weights in metrics["fold_weights"].items():  # fold k: weights fitted without it
        rows = fold == int(k)
        expected = sum(w * np.asarray(m.logits[rows], np.float32)
                       for w, m in zip(weights, members, strict=True))
        np.testing.assert_allclose(np.asarray(blended.logits[rows], np.float32), expected,
                                   atol=2e-2)  # float16 storage
    if combiner == "mean":
        assert metrics["weights"] == {"logistic": 0.5, "other": 0.5}
    evaluator = ratings.evaluator(ratings.rated_rows, np.array(metrics["scored_classes"]),
                                  100_000)
    evaluator.update(np.asarray(blended.logits, np.float32))
    assert abs(evaluator.result()["map"] - metrics["oof"]["map"]) < 0.02
    assert metrics["oof"]["map"] > 0.6
    main(["submission", "write", "--competition", "2019", "--source", str(tmp_path / spec.stem),
          "--output", str(tmp_path / "subs"), "--features", str(root / "features"), "--input",
          str(root / "input")])
    assert (tmp_path / "subs" / f"{spec.stem}_segments.csv").read_text().startswith(
        "Class,Segments\n")
