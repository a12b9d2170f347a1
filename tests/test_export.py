"""`yt8m export`: one self-contained inference model (and SavedModel) from a trained source."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.conftest import TINY
from yt8m import predictions
from yt8m.cli import main
from yt8m.errors import Yt8mError
from yt8m.features.cache import FeatureCache
from yt8m.models import build
from yt8m.models.export import LIMIT_BYTES, build_export, export_source, load, with_float16_weights
from yt8m.models.registry import load_spec, parse_spec
from yt8m.models.training import CacheBatches

pytestmark = pytest.mark.xdist_group("export")  # one worker: the tests share a trained source

# float32 math on every machine (the demo's "auto" is bfloat16 where that is native), so that the
# fold files' float32 logits are what a float32 export computes
SPEC = ("model: frame_logistic\npreset: demo\nseed: 5\n"
        "training: {epochs: 1, num_frames: 16, mixed_precision: float32}\n")
# the float16 storage of the source's test logits: |logit| < 16 here, half a step is < 4e-3
STORED = 2e-2
# frame_logistic on the tiny sample: a dense layer from the 1152 features to every class
PARAMETERS = 1152 * TINY.num_classes + TINY.num_classes
# the exports against the folds' own float32 logits: other batches, the same float32 math
EXACT = 1e-4
# float16 weights, float32 math: the weights' rounding (2^-11 relative) summed over 1152 inputs
FLOAT16 = 2e-2
PADDING = 8  # padded frames appended to every test video: a masked model ignores them

PREDICT = textwrap.dedent("""\
    import json, sys
    import keras
    import numpy as np
    import yt8m.models.export  # noqa: F401  (the zoo's layer classes)

    jobs, inputs, out = json.loads(sys.argv[1]), dict(np.load(sys.argv[2])), sys.argv[3]
    padded = {"frames": np.pad(inputs["frames"], ((0, 0), (0, %d), (0, 0)), constant_values=255),
              "mask": np.pad(inputs["mask"], ((0, 0), (0, %d)))}
    results = {}
    for name, path in jobs["keras"].items():
        model = keras.saving.load_model(path)
        results[name] = np.asarray(model.predict_on_batch(inputs))
        results[name + "/padded"] = np.asarray(model.predict_on_batch(padded))
    if jobs["saved_model"]:
        import tensorflow as tf
        for name, path in jobs["saved_model"].items():
            loaded = tf.saved_model.load(path)
            results[name + "/serve"] = np.asarray(loaded.serve(inputs))
            signature = loaded.signatures["serving_default"]
            (value,) = signature(**{k: tf.constant(v) for k, v in inputs.items()}).values()
            results[name + "/signature"] = value.numpy()
    np.savez(out, **results)
""") % (PADDING, PADDING)


@pytest.fixture(scope="module")
def trained(tiny_input, tiny_features, tmp_path_factory):
    """models/flog/ trained out of fold (five folds, one epoch) on the tiny competition."""
    root = tmp_path_factory.mktemp("export")
    (root / "models").mkdir()
    spec = root / "models" / "flog.yaml"
    spec.write_text(SPEC)
    assert main(["train", str(spec), "--features", str(tiny_features), "--quiet"]) == 0
    return root / "models" / "flog"


@pytest.fixture(scope="module")
def test_inputs(trained, tiny_features, tmp_path_factory):
    """The test videos' inputs, as `yt8m train` fed them to the fold models, in an .npz."""
    cache = FeatureCache(tiny_features)
    spec = load_spec(trained.parent / "flog.yaml")
    _, training = spec.settings()
    batches = CacheBatches(cache, cache.rows("test"), spec.level, training, shuffle=False)
    parts = [x for x, _ in batches]
    inputs = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    path = tmp_path_factory.mktemp("inputs") / "test_inputs.npz"
    np.savez(path, **inputs)
    assert len(inputs["frames"]) == len(cache.rows("test")) > 0
    return path


@pytest.fixture(scope="module")
def exports(trained, test_inputs, tmp_path_factory):
    """Three exports of the source, then their logits from a fresh Python process that has only
    the exported files and the inputs (no spec, no weights, no cache)."""
    records = {
        "mean": export_source(trained),
        "mean16": export_source(trained, dtype="float16"),
        "fold2": export_source(trained, which="fold:2", saved_model=False),
    }
    jobs = {"keras": {name: r["path"] for name, r in records.items()},
            "saved_model": {name: r["saved_model"] for name, r in records.items()
                            if r["saved_model"]}}
    out = tmp_path_factory.mktemp("fresh") / "logits.npz"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", PREDICT, json.dumps(jobs), str(test_inputs),
                           str(out)], cwd=out.parent, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return records, dict(np.load(out))


def fold_logits(source, k):
    return np.asarray(predictions.load(source / f"fold_{k}", "test").logits, np.float32)


def test_the_mean_export_reproduces_the_sources_test_logits(trained, exports):
    records, logits = exports
    metrics = json.loads((trained / "metrics.json").read_text())
    folds = [fold_logits(trained, r["fold"]) for r in metrics["folds"]]
    assert len(folds) == 5
    stored = predictions.load(trained, "test")
    got = logits["mean"]
    assert got.dtype == np.float32 and got.shape == stored.logits.shape
    np.testing.assert_allclose(got, np.asarray(stored.logits, np.float32), rtol=0, atol=STORED)
    np.testing.assert_allclose(got, np.mean(np.asarray(folds, np.float64), axis=0), rtol=0,
                               atol=EXACT)
    # the folds disagree far beyond those tolerances: one fold's model would not pass
    assert np.abs(folds[0] - np.mean(folds, axis=0)).max() > 10 * STORED
    # padded frames (mask False) change nothing
    np.testing.assert_allclose(logits["mean/padded"], got, rtol=0, atol=1e-5)
    record = records["mean"]
    assert record["parameters"] == 5 * PARAMETERS
    assert record["which"] == "mean" and record["dtype"] == "float32"
    assert record["config_hash"] == metrics["config_hash"]
    assert Path(record["path"]) == trained / "export" / "mean-float32.keras"
    assert record["bytes"] == os.path.getsize(record["path"]) > 4 * record["parameters"]
    assert record["limit_bytes"] == LIMIT_BYTES == 10**9 and record["within_limit"] is True
    on_disk = json.loads(Path(record["path"] + ".json").read_text())
    assert on_disk["config_hash"] == metrics["config_hash"]
    assert {k: on_disk[k] for k in ("path", "bytes", "parameters", "within_limit")} == \
        {k: record[k] for k in ("path", "bytes", "parameters", "within_limit")}
    assert not [p.name for p in (trained / "export").iterdir() if p.name.startswith(".")]


def test_a_fold_export_is_that_folds_model(trained, exports):
    records, logits = exports
    fold2 = fold_logits(trained, 2)
    np.testing.assert_allclose(logits["fold2"], fold2, rtol=0, atol=EXACT)
    assert np.abs(logits["fold2"] - logits["mean"]).max() > 10 * STORED  # not the mean
    np.testing.assert_allclose(logits["fold2/padded"], logits["fold2"], rtol=0, atol=1e-5)
    record = records["fold2"]
    assert Path(record["path"]).name == "fold_2-float32.keras"
    assert record["parameters"] == PARAMETERS and record["saved_model"] is None
    assert record["members"] == [str(trained / "fold_2" / "best.weights.h5")]


def test_float16_weights_halve_the_file_and_keep_the_logits(trained, exports):
    records, logits = exports
    half, full = records["mean16"], records["mean"]
    assert half["weight_dtypes"] == {"float16": half["parameters"]}
    assert half["parameters"] == full["parameters"]
    assert 0.45 < half["bytes"] / full["bytes"] < 0.55
    assert 0.45 < half["saved_model_bytes"] / full["saved_model_bytes"] < 0.55
    assert logits["mean16"].dtype == np.float32  # the math and the logits stay float32
    difference = np.abs(logits["mean16"] - logits["mean"])
    assert 0 < difference.max() < FLOAT16
    stored = np.asarray(predictions.load(trained, "test").logits, np.float32)
    np.testing.assert_allclose(logits["mean16"], stored, rtol=0, atol=STORED + FLOAT16)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel: TF backend")
def test_the_saved_model_serves_the_same_logits(exports):
    records, logits = exports
    for name in ("mean", "mean16"):
        folder = Path(records[name]["saved_model"])
        assert folder.name == f"{Path(records[name]['path']).stem}.saved_model"
        assert (folder / "saved_model.pb").is_file()
        # each weight stored once (Keras' own model.export stores them twice)
        assert 0.9 < records[name]["saved_model_bytes"] / records[name]["bytes"] < 1.1
        for endpoint in ("serve", "signature"):
            np.testing.assert_allclose(logits[f"{name}/{endpoint}"], logits[name], rtol=0,
                                       atol=1e-5)


def one_line_error(match, *args, **kwargs):
    with pytest.raises(Yt8mError, match=match) as info:
        export_source(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_spec_edited_after_training_is_refused(trained, tmp_path):
    (tmp_path / "models").mkdir()
    source = tmp_path / "models" / "flog"
    source.symlink_to(trained)
    spec = tmp_path / "models" / "flog.yaml"
    spec.write_text(SPEC.replace("seed: 5", "seed: 6"))
    message = one_line_error(r"flog.yaml: changed since .* was trained \(config hash \w+, the "
                             r"models' \w+\); train it again \(make train MODEL=flog\)", source)
    assert message.startswith(str(spec))
    spec.unlink()
    one_line_error(r"flog.yaml: the spec of .*flog/ is missing; restore it", source)
    assert not (trained / "export" / "fold_0-float32.keras").exists()


def test_missing_training_outputs_are_named(trained, tmp_path):
    models = tmp_path / "models"
    (models / "new").mkdir(parents=True)
    (models / "new.yaml").write_text(SPEC)
    one_line_error(r"new/metrics.json: not a trained model .* \(make train MODEL=new\)",
                   models / "new")
    shutil.copy(trained / "metrics.json", models / "new" / "metrics.json")
    one_line_error(r"new/fold_0/best.weights.h5: missing; train new again", models / "new")
    one_line_error(r"new/fold_3/best.weights.h5: missing", models / "new", which="fold:3")
    one_line_error(r"new: no fold 7; its folds are \[0, 1, 2, 3, 4\]", models / "new",
                   which="fold:7")
    one_line_error(r"--which best: expected mean, fold:K", models / "new", which="best")
    one_line_error(r"flog/refit/: no refit model; set training: {refit: true} in .*flog.yaml",
                   trained, which="refit")
    one_line_error(r"--dtype bfloat16: expected float32 or float16", trained, dtype="bfloat16")
    one_line_error(r"x.h5: an export is a Keras file", trained, out=tmp_path / "x.h5")


def test_an_existing_export_needs_force(trained, tmp_path, capsys):
    out = tmp_path / "fold1.keras"
    args = ["export", str(trained), "--which", "fold:1", "--dtype", "float16", "--out",
            str(out), "--no-saved-model"]
    assert main(args) == 0
    line = capsys.readouterr().out.strip()
    size = os.path.getsize(out)
    assert line == (f"wrote {out} ({size / 1e6:,.1f} MB, {PARAMETERS:,} parameters, "
                    f"within the 1 GB limit)")
    first = out.stat().st_mtime_ns
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"yt8m export: error: {out}: already exists; pass --force to replace it"
    assert out.stat().st_mtime_ns == first
    assert main([*args, "--force"]) == 0
    assert json.loads(Path(f"{out}.json").read_text())["which"] == "fold:1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold1.keras", "fold1.keras.json"]
    # a SavedModel folder beside the file is part of the export: kept without --force,
    # removed with it by an export that writes none
    out.unlink()
    (tmp_path / "fold1.saved_model").mkdir()
    one_line_error(r"fold1.saved_model: already exists; pass --force", trained,
                   which="fold:1", out=out, saved_model=False)
    assert main([*args, "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold1.keras", "fold1.keras.json"]



def random_inputs(level, rows=4, frames=20, seed=0):
    rng = np.random.default_rng(seed)
    if level == "video":
        return {"means": rng.normal(size=(rows, 1152)).astype(np.float32)}
    mask = np.ones((rows, frames), bool)
    mask[0, frames // 2:] = False
    return {"frames": rng.integers(0, 256, (rows, frames, 1152), dtype=np.uint8), "mask": mask}


@pytest.mark.slow
def test_a_video_level_mean_averages_its_members(tmp_path):
    spec = parse_spec({"model": "video_moe", "preset": "demo"})
    x, members, outputs = random_inputs("video"), [], []
    for k in range(3):
        keras.utils.set_random_seed(k)
        model = build(spec, 50)
        path = tmp_path / f"fold_{k}.weights.h5"
        model.save_weights(path)
        members.append((f"fold_{k}", path))
        outputs.append(np.asarray(model.predict_on_batch(x)))
    mean = build_export(spec, 50, members, name="vmoe_mean")
    assert list(mean.input) == ["means"]
    got = np.asarray(mean.predict_on_batch(x))
    np.testing.assert_allclose(got, np.mean(outputs, axis=0), rtol=0, atol=1e-5)
    assert np.abs(outputs[0] - got).max() > 1e-3
    mean.save(tmp_path / "mean.keras")
    np.testing.assert_array_equal(np.asarray(load(tmp_path / "mean.keras").predict_on_batch(x)),
                                  got)


# float32 weights a float16 export keeps: layers whose dtype is fixed in code (the mixture's
# gate and branch heads) or whose config Keras generates (AttentionPooling's one-unit score)
KEPT_FLOAT32 = ("gate/", "_logits/", "_attention/score/")


@pytest.mark.parametrize("name", [
    "video_moe",
    *(pytest.param(n, marks=pytest.mark.slow)
      for n in ("dbof", "attention_lstm", "nextvlad", "mix_nextvlad", "attention_cluster",
                "gated_netvlad")),
])
def test_float16_weights_keep_a_zoo_models_outputs(name, tmp_path):
    spec = parse_spec({"model": name, "preset": "demo"})
    keras.utils.set_random_seed(1)
    model = build(spec, 50)
    x = random_inputs(spec.level)
    half = with_float16_weights(model)
    wide = [w.path for w in half.weights if w.dtype != "float16"]
    assert all(any(part in path for part in KEPT_FLOAT32) for path in wide), wide
    assert sum(int(np.prod(w.shape)) for w in half.weights if w.dtype == "float16") > \
        0.9 * model.count_params()
    full, got = np.asarray(model.predict_on_batch(x)), np.asarray(half.predict_on_batch(x))
    assert got.dtype == np.float32
    assert 0 < np.abs(got - full).max() < 1e-2 * max(1.0, np.abs(full).max())
    half.save(tmp_path / "half.keras")
    np.testing.assert_array_equal(np.asarray(load(tmp_path / "half.keras").predict_on_batch(x)),
                                  got)
