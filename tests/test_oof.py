"""Out-of-fold training: coverage, resume, invalidation, NaN handling, and a submission from it."""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from yt8m import predictions
from yt8m.cli import main
from yt8m.errors import Yt8mError
from yt8m.features.cache import FeatureCache
from yt8m.models import trainer as oof
from yt8m.models.callbacks import GapEvaluation

SPEC = "model: frame_logistic\npreset: demo\nseed: 3\ntraining: {epochs: 2, num_frames: 16}\n"


@pytest.fixture
def workspace(tiny_input, tiny_features, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input").symlink_to(tiny_input)
    (tmp_path / "features").symlink_to(tiny_features)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "flog.yaml").write_text(SPEC)
    return FeatureCache("features")


def test_every_labeled_video_gets_one_oof_prediction_and_reruns_do_nothing(workspace, capsys):
    cache = workspace
    assert main(["train", "models/flog.yaml", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "flog: trained; OOF GAP@20" in out
    labeled = cache.rows(folds=range(cache.num_folds))
    got = predictions.load("models/flog", "oof")
    np.testing.assert_array_equal(got.ids, cache.ids[labeled])  # cache row order
    test = predictions.load("models/flog", "test")
    np.testing.assert_array_equal(test.ids, cache.ids[cache.rows("test")])
    metrics = json.loads(Path("models/flog/metrics.json").read_text())
    assert len(metrics["folds"]) == cache.num_folds == 5
    assert metrics["oof"]["videos"] == len(labeled)
    assert metrics["oof"]["gap"] > 0.05  # learned something (chance is about 1e-3 here)
    # the test logits are the mean of the fold models' logits
    folds = [predictions.load(f"models/flog/fold_{k}", "test").logits for k in range(5)]
    np.testing.assert_allclose(np.asarray(test.logits, np.float32), np.mean(folds, axis=0),
                               atol=2e-2)
    assert main(["train", "models/flog.yaml", "--quiet"]) == 0
    assert "flog: up to date" in capsys.readouterr().out
    assert main(["leaderboard"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "models/flog" in line)
    assert f"{metrics['oof']['gap']:.4f}" in row and "frame_logistic" in row
    assert main(["submission", "write"]) == 0
    assert "wrote submissions/flog.csv (30 videos" in capsys.readouterr().out


def test_same_spec_same_result_and_a_changed_spec_retrains(workspace, capsys):
    assert main(["train", "models/flog.yaml", "--fold", "1", "--quiet"]) == 0
    first = json.loads(Path("models/flog/fold_1/fold.json").read_text())["metrics"]["gap"]
    assert "other folds are still to train" in capsys.readouterr().out
    spec = Path("models/flog.yaml")
    spec.write_text(SPEC.replace("seed: 3", "seed: 4"))
    assert main(["train", "models/flog.yaml", "--fold", "1", "--quiet"]) == 0
    assert "changed since" in capsys.readouterr().out
    spec.write_text(SPEC)
    assert main(["train", "models/flog.yaml", "--fold", "1", "--quiet"]) == 0
    again = json.loads(Path("models/flog/fold_1/fold.json").read_text())["metrics"]["gap"]
    assert again == pytest.approx(first, abs=1e-6)


def test_an_interrupted_fold_resumes_from_its_last_epoch(workspace, monkeypatch):
    original = GapEvaluation.on_epoch_end
    seen = []

    def counting(self, epoch, logs=None):
        original(self, epoch, logs)
        seen.append(epoch)
        if seen == [0, 1]:  # interrupted at the end of epoch 2, after epoch 1 was backed up
            raise KeyboardInterrupt

    monkeypatch.setattr(GapEvaluation, "on_epoch_end", counting)
    spec = "models/flog.yaml"
    Path(spec).write_text(SPEC.replace("epochs: 2", "epochs: 3"))
    with pytest.raises(KeyboardInterrupt):
        oof.train(spec, [0])
    assert not Path("models/flog/fold_0", oof.FOLD_FILE).exists()
    seen.clear()
    metrics, trained = oof.train(spec, [0])
    assert trained == [0] and metrics is None
    assert seen == [1, 2]  # resumed: epoch 1 is not trained again
    log = Path("models/flog/fold_0/log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["0", "1", "2"]
    assert json.loads(Path("models/flog/fold_0/fold.json").read_text())["epochs"] == 3


def test_divergence_names_model_fold_and_epoch(workspace):
    path = "models/nan.yaml"
    Path(path).write_text(SPEC.replace("num_frames: 16", "num_frames: 16, learning_rate: 1.0e+30"))
    with pytest.raises(Yt8mError, match=r"nan.yaml: training diverged in fold 2, epoch \d+"):
        oof.train(path, [2])
    assert not (oof.model_dir(path) / "fold_2" / oof.FOLD_FILE).exists()


def test_nan_guard_stops_at_the_first_bad_step():
    guard = oof.NanGuard()
    guard.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    guard.on_epoch_begin(3)
    guard.on_train_batch_end(6, {"loss": 1.0})
    guard.on_train_batch_end(7, {"loss": float("nan")})
    assert guard.where == (3, "step 8") and guard.model.stop_training


def test_the_data_fingerprint_follows_videos_order_and_folds():
    from types import SimpleNamespace

    base = SimpleNamespace(ids=np.array(["a", "b"]), fold=np.array([0, 1]))
    same = SimpleNamespace(ids=np.array(["a", "b"]), fold=np.array([0, 1]))
    moved = SimpleNamespace(ids=np.array(["a", "b"]), fold=np.array([1, 0]))
    more = SimpleNamespace(ids=np.array(["a", "b", "c"]), fold=np.array([0, 1, 1]))
    fingerprints = {oof.data_fingerprint(c) for c in (base, moved, more)}
    assert len(fingerprints) == 3 and oof.data_fingerprint(same) == oof.data_fingerprint(base)


def test_a_fold_trains_the_same_alone_or_after_another_fold(workspace):
    # One compiled model serves every fold of a process; each fold must still start from its
    # own seed's weights, dropout state and a fresh optimizer.
    spec = Path("models/nv.yaml")
    spec.write_text("model: nextvlad\npreset: demo\nseed: 1\n"
                    "training: {epochs: 2, num_frames: 8}\n")
    oof.train(spec, [1], models_dir="alone")
    oof.train(spec, [0, 1], models_dir="shared")
    alone = predictions.load("alone/nv/fold_1", "oof")
    shared = predictions.load("shared/nv/fold_1", "oof")
    np.testing.assert_array_equal(alone.ids, shared.ids)
    np.testing.assert_allclose(alone.logits, shared.logits, atol=1e-4)
    assert np.abs(np.asarray(alone.logits)).max() > 0.1


def _scalars(folder):
    """{tag: [(step, value)]} of the TensorBoard event files under `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {}
    for run in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        events = EventAccumulator(str(run), size_guidance={"tensors": 0})
        events.Reload()
        for tag in events.Tags()["tensors"]:
            found[f"{run.name}/{tag}"] = [
                (e.step, float(keras.ops.convert_to_numpy(e.tensor_proto.float_val[0])
                               if e.tensor_proto.float_val else
                               np.frombuffer(e.tensor_proto.tensor_content, np.float32)[0]))
                for e in events.Tensors(tag)]
    return found


def test_training_writes_a_log_and_tensorboard_curves(workspace):
    oof.train("models/flog.yaml", [0])
    log = Path("models/flog/train.log").read_text()
    assert "flog fold 0: GAP@20" in log
    curves = _scalars("models/flog/tensorboard/fold_0")
    history = pd.read_csv("models/flog/fold_0/log.csv")
    assert len(history) == 2
    # one point per epoch for the training loss and for every held-out metric, equal to log.csv
    loss = curves["train/epoch_loss"]
    assert [step for step, _ in loss] == [0, 1]
    np.testing.assert_allclose([v for _, v in loss], history["loss"], rtol=1e-6)
    for name in ("gap", "hit_at_one", "perr", "map"):
        points = curves[f"validation/epoch_{name}"]
        assert [step for step, _ in points] == [0, 1]
        np.testing.assert_allclose([v for _, v in points], history[f"val_{name}"], rtol=1e-6)


def test_each_fold_keeps_its_best_epoch_and_scores_it(workspace):
    # a learning rate so high that the model overfits: the best epoch is not the last one
    Path("models/flog.yaml").write_text(SPEC.replace("epochs: 2", "epochs: 4, "
                                                     "learning_rate: 0.3"))
    oof.train("models/flog.yaml", [0, 1, 2])
    best_not_last = 0
    for fold in (0, 1, 2):
        folder = Path(f"models/flog/fold_{fold}")
        history = pd.read_csv(folder / "log.csv")
        record = json.loads((folder / "fold.json").read_text())
        best = int(history["val_gap"].idxmax())
        assert record["best_epoch"] == best + 1 and record["epochs"] == 4
        # the stored score is the restored best epoch's, recomputed from its saved predictions
        assert record["metrics"]["gap"] == pytest.approx(history["val_gap"].max(), abs=1e-6)
        best_not_last += best != len(history) - 1
    assert best_not_last  # otherwise "the last epoch" would pass for "the best epoch"


def test_extra_training_splits_join_every_fold(tiny_input, tmp_path, monkeypatch):
    from yt8m.features.writer import build_features

    monkeypatch.chdir(tmp_path)
    build_features(tiny_input, "features", progress=False, num_folds=2, fold_splits=("train",))
    cache = FeatureCache("features")
    validate = cache.rows("validate")
    assert len(validate) and (cache.fold[validate] < 0).all()
    Path("models").mkdir()
    Path("models/flog.yaml").write_text(SPEC.replace("num_frames: 16", "num_frames: 16, "
                                                     "train_splits: [validate]"))
    oof.train("models/flog.yaml", [0])
    record = json.loads(Path("models/flog/fold_0/fold.json").read_text())
    others = len(cache.rows(folds=range(1, cache.num_folds)))
    assert record["train_videos"] == others + len(validate)
    oof_ids = predictions.load("models/flog/fold_0", "oof").ids
    assert not set(oof_ids.tolist()) & set(cache.ids[validate].tolist())


def test_out_of_memory_gets_advice(workspace, monkeypatch):
    class ResourceExhaustedError(RuntimeError):
        pass

    def fit(*args, **kwargs):
        raise ResourceExhaustedError("OOM when allocating tensor with shape [64,16,1152]")

    monkeypatch.setattr(keras.Model, "fit", fit)
    with pytest.raises(Yt8mError, match=r"flog.yaml: fold 0 ran out of memory.*batch_size \(now"):
        oof.train("models/flog.yaml", [0])
    assert oof.is_out_of_memory(MemoryError()) and not oof.is_out_of_memory(ValueError("x"))


def test_data_parallel_training_runs_on_the_local_devices(workspace, capsys):
    assert main(["train", "models/flog.yaml", "--fold", "0", "--distribute", "--quiet"]) == 0
    record = json.loads(Path("models/flog/fold_0/fold.json").read_text())
    assert record["metrics"]["gap"] > 0.05
    strategy = {"tensorflow": "MirroredStrategy", "jax": "DataParallel"}[keras.backend.backend()]
    devices = len(keras.distribution.list_devices())
    assert record["distribution"] == {"strategy": strategy, "replicas": devices}
    assert main(["train", "models/flog.yaml", "--fold", "1", "--quiet"]) == 0
    record = json.loads(Path("models/flog/fold_1/fold.json").read_text())
    assert record["distribution"] == {"strategy": None, "replicas": 1}


def test_training_settings_out_of_range_name_the_file_and_key(workspace):
    for setting, message in (("batch_size: -64", "batch_size must be at least 1, got -64"),
                             ("epochs: 0", "epochs must be at least 1, got 0"),
                             ("learning_rate: -0.1", "learning_rate must be above 0")):
        Path("models/bad.yaml").write_text(SPEC.replace("num_frames: 16", setting))
        with pytest.raises(Yt8mError, match=f"models/bad.yaml: training: {message}"):
            oof.train("models/bad.yaml", [0])


@pytest.mark.slow  # two trainings of five folds; `make test-slow`, run by CI
def test_a_top_k_store_scores_the_same_and_is_read_like_the_dense_one(workspace):
    cache = workspace
    oof.train("models/flog.yaml", models_dir="dense")
    Path("models/flog.yaml").write_text(SPEC + "predictions: {top_k: 20}\n")
    metrics, _ = oof.train("models/flog.yaml", models_dir="topk")
    dense = json.loads(Path("dense/flog/metrics.json").read_text())
    for name in ("gap", "hit_at_one", "perr", "map"):  # every metric reads at most the top 20
        assert metrics["oof"][name] == pytest.approx(dense["oof"][name], abs=1e-9)
    for part in ("oof", "test"):
        full, compact = predictions.load("dense/flog", part), predictions.load("topk/flog", part)
        np.testing.assert_array_equal(full.ids, compact.ids)
        rows = compact.logits[3:7]  # dense float32 rows, like a memory-mapped array's
        assert rows.shape == (4, cache.num_classes)
        dense_rows = np.asarray(full.logits[3:7], np.float32)
        # the best scores agree to the dense store's float16 step (ties among classes the class
        # prior alone scores may come in either order, so compare scores, not classes); the
        # test part is the mean of the folds' top-20 stores, where a class outside one fold's
        # 20 reads that fold's floor, so only its first ranks are the dense mean's
        k = 10 if part == "oof" else 5
        np.testing.assert_allclose(-np.sort(-rows, axis=1)[:, :k],
                                   -np.sort(-dense_rows, axis=1)[:, :k], atol=2e-2)
        clear = np.diff(-np.sort(-dense_rows, axis=1)[:, :2], axis=1)[:, 0] < -2e-2
        np.testing.assert_array_equal(rows.argmax(1)[clear], dense_rows.argmax(1)[clear])
        assert not Path(f"topk/flog/{part}_logits.npy").exists()
    size = sum(p.stat().st_size for p in Path("topk/flog").glob("oof_*.npy"))
    # 1000 classes x 2 bytes a video against 20 x 4 + 2 (24x), less the files' fixed parts
    assert size < Path("dense/flog/oof_logits.npy").stat().st_size / 15
    # the submission writer reads it transparently
    assert main(["submission", "write", "--source", "topk/flog", "--id", "topk"]) == 0
