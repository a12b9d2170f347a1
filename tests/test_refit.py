"""`training: {refit: true}`: one more model on every labeled video for the epochs the folds chose;
its test logits become the source's, the out-of-fold rows stay the folds'. Adding it keeps the
trained folds, and a refit killed mid-epoch resumes to the uninterrupted result."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yt8m import predictions
from yt8m.features.cache import FeatureCache
from yt8m.models.trainer import refit_epochs

ROOT = Path(__file__).resolve().parents[1]
# dropout (attention_cluster): the refit's dropout seeds must survive a resume too
SPEC = ("model: attention_cluster\npreset: demo\nseed: 4\n"
        "training: {{epochs: 3, num_frames: 16, batch_size: 16{refit}}}\n")
BACKUP = "yt8m.models.checkpoints:EpochCheckpoint._save_backup"

# both train a spec's five folds in subprocesses first (about 1.5 minutes): with the slow tests
pytestmark = [pytest.mark.xdist_group("refit"), pytest.mark.slow]


def _yt8m(root, *args, kill_at=None):
    kill = [*kill_at, "--"] if kill_at else ["--"]
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_at.py"), *kill, *args],
                         cwd=root, env=env, capture_output=True, text=True, timeout=900)
    return run


def _spec(root, refit):
    (root / "models" / "ac.yaml").write_text(SPEC.format(refit=", refit: true" if refit else ""))


@pytest.fixture(scope="module")
def trained(tiny_features, tmp_path_factory):
    """A workspace whose spec's folds are trained without a refit."""
    root = tmp_path_factory.mktemp("refit") / "ws"
    (root / "models").mkdir(parents=True)
    (root / "features").symlink_to(tiny_features)
    _spec(root, refit=False)
    run = _yt8m(root, "train", "models/ac.yaml", "--quiet")
    assert run.returncode == 0, run.stderr
    return root


def _copy(root, name):
    other = root.parent / name
    shutil.copytree(root, other, symlinks=True)
    return other


def test_a_refit_trains_on_every_labeled_video_and_its_test_logits_are_the_sources(trained):
    root = _copy(trained, "refit_on")
    out = root / "models" / "ac"
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("fold_*/fold.json")}
    oof_before = np.array(predictions.load(out, "oof").logits)
    fold_mean = np.array(predictions.load(out, "test").logits)
    _spec(root, refit=True)
    run = _yt8m(root, "train", "models/ac.yaml", "--quiet")
    assert run.returncode == 0, run.stderr
    # the folds were kept (refit is not part of what the folds were trained from)
    assert {p: p.stat().st_mtime_ns for p in out.glob("fold_*/fold.json")} == stamps
    metrics = json.loads((out / "metrics.json").read_text())
    record = json.loads((out / "refit" / "refit.json").read_text())
    assert metrics["test_from"] == "refit" and metrics["refit"] == record
    assert record["epochs"] == refit_epochs(metrics["folds"])
    assert record["fold_best_epochs"] == [f["best_epoch"] for f in metrics["folds"]]
    cache = FeatureCache(root / "features")
    assert record["train_videos"] == len(cache.rows(folds=range(cache.num_folds)))
    np.testing.assert_array_equal(predictions.load(out, "oof").logits, oof_before)
    test = np.asarray(predictions.load(out, "test").logits, np.float32)
    refit = np.load(out / "refit" / "test_logits.npy")
    np.testing.assert_array_equal(test, refit.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(predictions.load(out, "folds_test").logits, fold_mean)
    assert np.abs(test - fold_mean).max() > 0.05  # another model, not the fold mean again
    # turning it off restores the fold mean as the source's test logits, the folds still kept
    _spec(root, refit=False)
    run = _yt8m(root, "train", "models/ac.yaml", "--quiet")
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(predictions.load(out, "test").logits, fold_mean)
    assert not predictions.exists(out, "folds_test")
    assert json.loads((out / "metrics.json").read_text())["test_from"] == "fold mean"


def test_a_refit_killed_mid_run_resumes_to_the_uninterrupted_result(trained):
    results = {}
    for name, kill in (("whole", None), ("killed", [BACKUP, "2"])):
        root = _copy(trained, f"refit_{name}")
        _spec(root, refit=True)
        if kill:  # SIGKILL as the refit's second epoch writes its backup
            run = _yt8m(root, "train", "models/ac.yaml", "--quiet", kill_at=kill)
            assert run.returncode == -signal.SIGKILL, run.stderr
            assert not (root / "models" / "ac" / "refit" / "refit.json").exists()
        run = _yt8m(root, "train", "models/ac.yaml", "--quiet")
        assert run.returncode == 0, run.stderr
        folder = root / "models" / "ac" / "refit"
        results[name] = ((folder / "log.csv").read_text(), np.load(folder / "test_logits.npy"))
    assert results["killed"][0] == results["whole"][0]  # every epoch's loss, digit for digit
    np.testing.assert_allclose(results["killed"][1], results["whole"][1], rtol=0, atol=1e-6)
