"""A `yt8m train` killed at a chosen moment (SIGKILL, as `kill -9` or the out-of-memory killer
would) resumes to the result of an uninterrupted run: the same epochs in every fold, the same
logs, the same out-of-fold logits. The kills come from `tests/kill_at.py`."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# dropout (attention_cluster) makes the dropout seed generators part of what must be restored
SPEC = ("model: attention_cluster\npreset: demo\nseed: 5\n"
        "training: {epochs: 3, num_frames: 16, batch_size: 16}\n")
FOLDS = ["--fold", "0", "--fold", "1"]
COMMIT = "yt8m.models.checkpoints:EpochCheckpoint._commit"

pytestmark = pytest.mark.xdist_group("resume")  # one worker: these share a reference run


def _workspace(root, tiny_features):
    root.mkdir()
    (root / "features").symlink_to(tiny_features)
    (root / "models").mkdir()
    (root / "models" / "ac.yaml").write_text(SPEC)
    return root


def _yt8m(root, *args, kill_at=None):
    kill = [*kill_at, "--"] if kill_at else ["--"]
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(ROOT / "tests" / "kill_at.py"), *kill, *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)


def _train(root, kill_at=None):
    return _yt8m(root, "train", "models/ac.yaml", *FOLDS, "--quiet", kill_at=kill_at)


def _result(root):
    """Per fold: the record, the log and the out-of-fold logits."""
    result = {}
    for fold in (0, 1):
        folder = root / "models" / "ac" / f"fold_{fold}"
        record = json.loads((folder / "fold.json").read_text())
        result[fold] = {"record": record, "log": (folder / "log.csv").read_text(),
                        "oof": np.load(folder / "oof_logits.npy")}
    return result


@pytest.fixture(scope="module")
def reference(tiny_features, tmp_path_factory):
    root = _workspace(tmp_path_factory.mktemp("resume") / "uninterrupted", tiny_features)
    run = _train(root)
    assert run.returncode == 0, run.stderr
    return _result(root)


def _assert_same_result(root, reference):
    got = _result(root)
    for fold in (0, 1):
        want, have = reference[fold], got[fold]
        assert have["record"]["epochs"] == want["record"]["epochs"] == 3
        assert have["record"]["best_epoch"] == want["record"]["best_epoch"]
        assert have["log"] == want["log"]  # every epoch's loss and GAP, digit for digit
        np.testing.assert_allclose(have["oof"], want["oof"], rtol=0, atol=1e-6)
        assert have["record"]["metrics"]["gap"] == pytest.approx(
            want["record"]["metrics"]["gap"], abs=1e-9)
    assert not list((root / "models" / "ac").rglob("backup/*"))  # finished folds keep no backup


def _killed(run):
    return run.returncode == -signal.SIGKILL


def test_a_fold_killed_before_its_epoch_commit_resumes_and_later_folds_train_every_epoch(
        tiny_features, tmp_path, reference):
    root = _workspace(tmp_path / "w", tiny_features)
    # the 2nd commit is fold 0's epoch 2: its backup is written, the state still says epoch 1
    assert _killed(_train(root, kill_at=[COMMIT, "2"]))
    state = json.loads((root / "models/ac/fold_0/state.json").read_text())
    assert len(state["history"]) == 1
    assert _train(root).returncode == 0
    _assert_same_result(root, reference)


@pytest.mark.slow  # `make test-slow`, run by CI
def test_a_kill_in_the_middle_of_writing_a_checkpoint_never_blocks_the_rerun(
        tiny_features, tmp_path, reference):
    root = _workspace(tmp_path / "w", tiny_features)
    # numpy's savez writes its zip archive's directory last: a kill there leaves a file that no
    # zip reader opens (the 2nd archive written is fold 0's backup after epoch 2)
    assert _killed(_train(root, kill_at=["zipfile:ZipFile._write_end_record", "2"]))
    assert list((root / "models/ac/fold_0/backup").glob(".epoch_2.npz.*"))  # the torn write
    assert _train(root).returncode == 0
    _assert_same_result(root, reference)


@pytest.mark.slow  # `make test-slow`, run by CI
def test_a_damaged_checkpoint_falls_back_to_the_one_before_it_and_says_so(
        tiny_features, tmp_path, reference):
    root = _workspace(tmp_path / "w", tiny_features)
    assert _killed(_train(root, kill_at=[COMMIT, "3"]))  # epochs 1 and 2 of fold 0 committed
    newest = root / "models/ac/fold_0/backup/epoch_2.npz"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # e.g. a disk error
    run = _train(root)
    assert run.returncode == 0, run.stderr
    said = (root / "models/ac/train.log").read_text()
    assert "the checkpoint after epoch 2 is damaged" in said
    assert "resuming from the checkpoint after epoch 1" in said
    _assert_same_result(root, reference)


@pytest.mark.slow  # `make test-slow`, run by CI
def test_a_kill_after_the_last_epoch_before_the_fold_is_written(tiny_features, tmp_path,
                                                                reference):
    root = _workspace(tmp_path / "w", tiny_features)
    # the second prediction writer opened is fold 0's test logits, after its three epochs and
    # its out-of-fold logits are written
    assert _killed(_train(root, kill_at=["yt8m.predictions:writer", "2"]))
    assert (root / "models/ac/fold_0/oof_logits.npy").exists()
    assert not (root / "models/ac/fold_0/fold.json").exists()
    assert _train(root).returncode == 0
    _assert_same_result(root, reference)


def test_a_second_train_of_the_same_spec_names_the_process_that_holds_it(tiny_features,
                                                                         tmp_path):
    from yt8m.fileio import output_lock

    root = _workspace(tmp_path / "w", tiny_features)
    with output_lock(root / "models" / "ac", "a test holding the lock"):
        run = _train(root)
    assert run.returncode == 2
    assert f"models/ac/ is being written by process {os.getpid()} (a test holding the lock" \
        in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.slow  # `make test-slow`, run by CI
def test_specs_trained_side_by_side_give_what_each_gives_alone(tiny_features, tmp_path,
                                                               reference):
    """`yt8m train --jobs 2` (what `make all` runs): each spec's folds are what a run of it alone
    gives, and a spec that fails is named while the others finish."""
    root = _workspace(tmp_path / "w", tiny_features)
    (root / "models" / "vl.yaml").write_text(
        "model: video_logistic\npreset: demo\ntraining: {epochs: 2, batch_size: 16}\n")
    (root / "models" / "bad.yaml").write_text("model: video_logistic\ntraining: {epochs: 0}\n")
    run = _yt8m(root, "train", "models/ac.yaml", "models/bad.yaml", "models/vl.yaml", *FOLDS,
                "--quiet", "--jobs", "2")
    assert run.returncode == 2
    assert "bad: error: models/bad.yaml: training: epochs must be at least 1" in run.stderr
    assert "1 of 3 specs failed (models/bad.yaml)" in run.stderr
    assert "Traceback" not in run.stderr
    _assert_same_result(root, reference)
    assert json.loads((root / "models/vl/fold_1/fold.json").read_text())["epochs"] == 2
