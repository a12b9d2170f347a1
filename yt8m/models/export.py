"""Self-contained inference models from a trained source: `yt8m export`.

A trained `models/<id>/` holds one set of weights per fold; its test predictions are the mean of
the fold models' logits. `export_source` turns that into one Keras file that needs no spec, no
fold folders and no feature cache:

    models/<id>/export/<which>-<dtype>.keras          the model (inputs as the zoo's models take)
    models/<id>/export/<which>-<dtype>.saved_model/   the same as a TF SavedModel (TF backend)
    models/<id>/export/<which>-<dtype>.keras.json     what was exported, sizes, the 1 GB verdict

`which` is `mean` (one model sharing the inputs among every fold model and averaging their
logits: the source's test predictions, or its `folds_test` ones where the spec trains a refit
model), `fold:K` (fold K's model) or `refit` (the model trained on every labeled video,
`models/<id>/refit/`, `training: {refit: true}`); the choice and its checks are `yt8m
predict`'s. `dtype` float16 stores the weights in float16 (half the bytes) while the math stays
float32, as in the float32 export: each layer casts its float16 weights to float32 where it uses
them (`Float16Weights`), so the only change is the rounding of the weights, and the logits stay
float32 as everywhere in the zoo. Both compute in float32 whatever mixed precision the source
trained under (a bfloat16-trained source's stored logits differ from them by bfloat16 rounding).

The 2018 challenge required the model itself to be under 1 GB: the record's `within_limit` is
whether the `.keras` file is (the SavedModel folder is about as large). Loading an export needs
the zoo's layer classes registered, which importing this module does:
`yt8m.models.export.load(path)`, or `import yt8m.models.export` then
`keras.saving.load_model(path)`; the SavedModel needs TensorFlow alone
(`tf.saved_model.load(folder).serve({"frames": ..., "mask": ...})`).
"""

import re
import shutil
from pathlib import Path

import keras

from .. import __version__
from ..errors import Yt8mError
from ..fileio import atomic_dir, atomic_path, output_lock, write_json
from . import layers as _layers  # noqa: F401  (registers the layer classes for loading)
from .predict import model_weights, source_spec
from .registry import models as _zoo

LIMIT_BYTES = 10**9  # the 2018 challenge: the model under 1 GB
DTYPES = ("float32", "float16")


@keras.saving.register_keras_serializable(package="yt8m")
class Float16Weights(keras.DTypePolicy):
    """A dtype policy with float16 variables and float32 computation.

    A layer under it stores its weights in float16 (half the bytes of float32 on disk and in
    memory) and casts them to float32 where it uses them (Keras' autocast of variables whose
    dtype differs from the compute dtype), so its inputs, arithmetic and outputs are float32.
    Keras' own `mixed_float16` is the opposite pair (float32 variables, float16 math). Keras
    saves a layer's plain policy by its name, which this one's is not; `with_float16_weights`
    gives layers a `DTypePolicyMap` defaulting to it, which is saved and loaded whole.

    Args:
        name: the policy's name, kept in saved configs.

    Example:
        >>> layer = keras.layers.Dense(4, dtype=Float16Weights())
        >>> layer.build((None, 3))
        >>> layer.kernel.dtype, layer.compute_dtype
        ('float16', 'float32')
    """

    def __init__(self, name="float16_weights"):
        super().__init__(name)

    def _parse_name(self, name):
        return "float32", "float16"


_zoo()  # imports every model family's module: their layer classes register themselves


def load(path):
    """The Keras model of an exported `.keras` file (not compiled: for prediction)."""
    return keras.saving.load_model(path, compile=False)


def default_path(source, which, dtype):
    """`<source>/export/<which>-<dtype>.keras`, `fold:K` written `fold_K`."""
    return Path(source) / "export" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', which)}-{dtype}.keras"


def saved_model_path(out):
    """The SavedModel folder beside an export `<name>.keras`: `<name>.saved_model/`."""
    out = Path(out)
    return out.with_name(f"{out.stem}.saved_model")


def _members(source, metrics, which):
    """[(name, weights file)] of the models `which` names (`yt8m predict`'s choice and
    checks: a missing fold or refit model is an error naming it)."""
    if which != "mean" and which != "refit" and not re.fullmatch(r"fold:\d+", which):
        raise Yt8mError(f"--which {which}: expected mean, fold:K (K a fold number) or refit")
    return [(path.parent.name, path) for path in model_weights(source, metrics, which)]


def _num_classes(metrics, spec):
    return int((metrics.get("predictions") or {}).get("num_classes")
               or spec.num_classes or 3862)


def mean_model(members, name):
    """One functional model: the inputs of `members[0]` shared by every member, and the float32
    mean of their outputs (a single member is returned as it is)."""
    if len(members) == 1:
        return members[0]
    inputs = {key: keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=key)
              for key, tensor in members[0].input.items()}
    outputs = [member(inputs) for member in members]
    mean = keras.layers.Average(name="mean_logits", dtype="float32")(outputs)
    return keras.Model(inputs, mean, name=name)


def _keeps_its_policy(config):
    """Whether a serialized layer is of a class whose config Keras generates from its
    constructor's arguments: such a class cannot take a policy object, so it keeps its own (in
    the zoo only AttentionPooling, a single-unit scoring layer)."""
    name = config.get("registered_name")
    if not name or not isinstance(config.get("config"), dict):
        return False
    cls = keras.saving.get_registered_object(name)
    return isinstance(cls, type) and issubclass(cls, keras.layers.Layer) and \
        cls.get_config is keras.layers.Layer.get_config


def _replace_policies(config, policy):
    """`config` with every float dtype policy (float32, mixed_*, float16 ...) set to `policy`."""
    if isinstance(config, list):
        return [_replace_policies(item, policy) for item in config]
    if not isinstance(config, dict) or _keeps_its_policy(config):
        return config
    if config.get("class_name") == "DTypePolicy" and config.get("module") == "keras":
        name = (config.get("config") or {}).get("name", "")
        if name.startswith("mixed_") or name in ("float16", "bfloat16", "float32", "float64"):
            return policy
    return {key: _replace_policies(value, policy) for key, value in config.items()}


def with_float16_weights(model):
    """A copy of `model` whose layers store their weights in float16 and compute in float32
    (`Float16Weights`), holding `model`'s weights rounded to float16.

    Every layer's float policy is replaced in the model's config, so layers pinned to float32
    (the zoo's logits heads) store float16 too, except where a layer's class rebuilds them from
    its own settings (MixNeXtVLAD's gate and branch heads) or cannot take a policy object
    (`_keeps_its_policy`): those stay float32 (the record's `weight_dtypes` counts them)."""
    # a plain custom policy is saved by its name alone (Keras rebuilds non-quantized policies
    # from their names), a policy map with it as the default keeps the class
    policy = keras.dtype_policies.DTypePolicyMap(default_policy=Float16Weights())
    config = _replace_policies(keras.saving.serialize_keras_object(model),
                               keras.saving.serialize_keras_object(policy))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)  # also for sub-layers a layer makes without a dtype
    try:
        half = keras.saving.deserialize_keras_object(config)
    finally:
        keras.config.set_dtype_policy(previous)
    if len(half.weights) != len(model.weights):
        raise Yt8mError(f"{model.name}: the float16 copy has {len(half.weights)} weights, the "
                        f"model {len(model.weights)}; export it in float32")
    for target, value in zip(half.weights, model.get_weights(), strict=True):
        target.assign(value)
    return half


def build_export(spec, num_classes, members, dtype="float32", name="export"):
    """The model of `members` ([(name, weights file)]): one member's model, or the mean of
    several; float32 math, weights in `dtype`."""
    from . import build

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        models = []
        for member, path in members:
            model = build(spec, num_classes)
            try:
                model.load_weights(str(path))
            except (OSError, ValueError) as e:
                raise Yt8mError(f"{path}: cannot be loaded into {spec.source}'s model ({e}); "
                                f"retrain the fold: delete {Path(path).parent} and run make "
                                f"train MODEL={Path(spec.source).stem}") from None
            model.name = name if len(members) == 1 else member
            models.append(model)
        model = mean_model(models, name)
    finally:
        keras.config.set_dtype_policy(previous)
    if dtype == "float16":
        model = with_float16_weights(model)
    return model


def write_saved_model(model, folder):
    """`model`'s forward pass as a TF SavedModel in `folder`: endpoint `serve` and signature
    `serving_default`, keyword inputs named as the model's (`frames`, `mask` or `means`),
    output `output_0` (float32 logits).

    `model.export(folder, format="tf_saved_model")` would do, but it stores every weight twice
    (once as the tracked Keras variables, once as the variables the traced function captures:
    keras-team/keras#23553), doubling the folder; an `ExportArchive` endpoint without `track`
    stores the captured variables alone."""
    archive = keras.export.ExportArchive()
    signature = [{key: keras.InputSpec(shape=tensor.shape, dtype=tensor.dtype, name=key)
                  for key, tensor in model.input.items()}]
    archive.add_endpoint("serve", model.__call__, signature)
    archive.write_out(str(folder), verbose=False)


def _bytes(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _weight_dtypes(model):
    counts = {}
    for weight in model.weights:
        size = 1
        for d in weight.shape:
            size *= int(d)
        counts[str(weight.dtype)] = counts.get(str(weight.dtype), 0) + size
    return counts


def export_source(source, out=None, which="mean", dtype="float32", saved_model=None,
                  force=False):
    """Export `source` (a `models/<id>` folder) as one inference model; returns its record.

    Args:
        source: the trained model folder; its spec `models/<id>.yaml` must still be the one it
            was trained from.
        out: the `.keras` file to write (default `<source>/export/<which>-<dtype>.keras`).
        which: "mean" (the mean of every fold model's logits), "fold:K" or "refit".
        dtype: "float32" or "float16" (weights stored in float16, float32 math).
        saved_model: also write a TF SavedModel folder beside `out` (`<name>.saved_model/`);
            None: where the Keras backend is TensorFlow.
        force: replace an existing export.

    Returns:
        {"path", "bytes", "saved_model", "saved_model_bytes", "parameters", "limit_bytes",
        "within_limit", ...}, also written to `<out>.json`.
    """
    source = Path(source)
    if dtype not in DTYPES:
        raise Yt8mError(f"--dtype {dtype}: expected {' or '.join(DTYPES)}")
    spec, metrics = source_spec(source)
    spec_path = source.parent / f"{source.name}.yaml"
    members = _members(source, metrics, which)
    out = Path(out) if out is not None else default_path(source, which, dtype)
    if out.suffix != ".keras":
        raise Yt8mError(f"{out}: an export is a Keras file; name it <something>.keras")
    tensorflow = keras.backend.backend() == "tensorflow"
    if saved_model and not tensorflow:
        raise Yt8mError(f"a SavedModel needs the tensorflow Keras backend, not "
                        f"{keras.backend.backend()}; pass --no-saved-model")
    folder = saved_model_path(out) if (saved_model is None and tensorflow) or saved_model \
        else None
    record_path = out.with_name(f"{out.name}.json")
    name = re.sub(r"[^A-Za-z0-9_]", "_", f"{source.name}_{which}")
    with output_lock(source, f"yt8m export {source} --which {which}"):
        if not force:
            for path in (out, saved_model_path(out)):
                if path.exists():
                    raise Yt8mError(f"{path}: already exists; pass --force to replace it")
        model = build_export(spec, _num_classes(metrics, spec), members, dtype, name)
        with atomic_path(out, suffix=".keras") as tmp:
            model.save(tmp)
        stale = saved_model_path(out)
        if folder is not None:
            with atomic_dir(folder) as tmp:
                write_saved_model(model, tmp)
        elif stale.is_dir():  # an earlier export's, replaced (--force) by one without it
            shutil.rmtree(stale)
        record = _record(source, spec_path, spec, metrics, which, dtype, members, model, out,
                         folder)
        write_json(record_path, record)
    record["record"] = str(record_path)
    return record


def _record(source, spec_path, spec, metrics, which, dtype, members, model, out, folder):
    size = _bytes(out)
    return {
        "id": source.name, "source": str(source), "spec": str(spec_path),
        "model": spec.model, "preset": spec.preset, "which": which, "dtype": dtype,
        "compute_dtype": "float32", "config_hash": metrics.get("config_hash"),
        "data_hash": metrics.get("data_hash"),
        "members": [str(path) for _, path in members],
        "inputs": {key: [list(t.shape), str(t.dtype)] for key, t in model.input.items()},
        "num_classes": _num_classes(metrics, spec),
        "path": str(out), "bytes": size,
        "saved_model": None if folder is None else str(folder),
        "saved_model_bytes": None if folder is None else _bytes(folder),
        "parameters": int(model.count_params()), "weight_dtypes": _weight_dtypes(model),
        "limit_bytes": LIMIT_BYTES, "within_limit": size <= LIMIT_BYTES,
        "backend": keras.backend.backend(), "keras_version": keras.__version__,
        "yt8m_version": __version__,
    }
