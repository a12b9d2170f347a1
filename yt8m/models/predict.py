"""Score new videos with a trained source, without retraining: `yt8m predict`.

A source is a trained `models/<id>/` with its spec `models/<id>.yaml` beside it. Its models are
the fold models (`which="mean"`: their logits averaged, as training's test predictions are;
`"fold:K"`: one of them) or the refit model (`"refit"`, `training: {refit: true}`). They score the
videos of one split of any feature cache (the training cache's test split, a new split, or a cache
built from new shards with `yt8m features --input NEW --features NEW_FEATURES`) into

    <out>/test_*      the predictions, in the models' format (a source for `yt8m submission`)
    <out>/predict.json   what was scored with what; GAP@20 and the other scores where the
                         videos are labeled

through the same `predict_into` and `write_mean` as training. The result is built in
`<out>.partial/` and renamed into place when complete; a rerun after a kill starts it again.
"""

import shutil
from pathlib import Path

import numpy as np

from .. import __version__, predictions
from ..errors import Yt8mError
from ..fileio import output_lock, write_json
from ..metrics import Evaluator
from .trainer import FOLD_FILE, REFIT_FILE, open_cache, predict_into, write_mean


def source_spec(source):
    """(spec, metrics) of a trained source folder: its spec beside it, checked against the
    config hash its models were trained from."""
    from .registry import load_spec

    source = Path(source)
    metrics = predictions.source_metrics(source)
    if not metrics:
        raise Yt8mError(f"{source}/metrics.json: not a trained model (no metrics.json); train it "
                        f"first (make train MODEL={source.name})")
    if str(metrics.get("model", "")).startswith("ensemble"):
        raise Yt8mError(f"{source}: an ensemble's blend has no models of its own to predict "
                        f"with; predict with its members and blend them")
    path = source.parent / f"{source.name}.yaml"
    if not path.is_file():
        raise Yt8mError(f"{path}: the spec of {source}/ is missing; restore it")
    spec = load_spec(path)
    if spec.config_hash() != metrics.get("config_hash"):
        raise Yt8mError(f"{path}: changed since {source}/ was trained (config hash "
                        f"{spec.config_hash()}, the models' {metrics.get('config_hash')}); train "
                        f"it again (make train MODEL={source.name}) or restore the spec")
    return spec, metrics


def model_weights(source, metrics, which="mean"):
    """The weights files of `which` ("mean": every fold's, "fold:K", "refit")."""
    source = Path(source)
    folds = [record["fold"] for record in metrics.get("folds", [])]
    if which == "mean":
        chosen = [source / f"fold_{k}" for k in folds]
    elif which == "refit":
        if not (source / "refit" / REFIT_FILE).is_file():
            raise Yt8mError(f"{source}/refit/: no refit model; set training: {{refit: true}} in "
                            f"{source.parent / source.name}.yaml and train again")
        chosen = [source / "refit"]
    elif which.startswith("fold:") and which[5:].isdigit():
        if int(which[5:]) not in folds:
            raise Yt8mError(f"{source}: no fold {which[5:]}; its folds are {folds}")
        chosen = [source / f"fold_{which[5:]}"]
    else:
        raise Yt8mError(f"which must be mean, refit or fold:K, not {which!r}")
    if not chosen:
        raise Yt8mError(f"{source}/metrics.json lists no folds; train it again")
    for folder in chosen:
        done = folder / (REFIT_FILE if folder.name == "refit" else FOLD_FILE)
        if not (folder / "best.weights.h5").is_file() or not done.is_file():
            raise Yt8mError(f"{folder}/best.weights.h5: missing; train {source.name} again")
    return [folder / "best.weights.h5" for folder in chosen]


def predict(source, features="features", split="test", which="mean", out=None, level=None,
            force=False, progress=True):
    """Score `split` of the `features` cache with `source`'s models into `out` (default
    `<source>/predict/<split>-<which>/`); returns the predict.json record."""
    import keras

    from . import build
    from .training import dtype_policy

    source = Path(source)
    spec, metrics = source_spec(source)
    weights = model_weights(source, metrics, which)
    level = level or metrics.get("level", "frame")
    cache = open_cache(spec, features, level)
    num_classes = (metrics.get("predictions") or {}).get("num_classes", cache.num_classes)
    if cache.num_classes != num_classes:
        raise Yt8mError(f"{features}/{level}: {cache.num_classes} classes; {source}/ was "
                        f"trained on {num_classes}")
    rows = cache.rows(split)
    if not len(rows):
        raise Yt8mError(f"{features}/{level}: the {split} split has no videos; build the "
                        f"cache of the shards to score (yt8m features --input ... --features "
                        f"...) or name another split")
    out = Path(out or source / "predict" / f"{split}-{which.replace(':', '_')}")
    if (out / "predict.json").exists() and not force:
        raise Yt8mError(f"{out}: predictions exist already; pass --force to replace them")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with output_lock(out.parent, f"yt8m predict {source}"):
        shutil.rmtree(partial, ignore_errors=True)  # an earlier run's, killed: start again
        keras.mixed_precision.set_global_policy(dtype_policy(spec.training_settings()))
        model = build(spec, num_classes)
        parts = []
        for number, path in enumerate(weights):
            model.load_weights(str(path))
            part = partial / f"model_{number}"
            if progress:
                print(f"{source.name}: {path.parent.name} scores {len(rows)} {split} videos",
                      flush=True)
            predict_into(part, "test", model, spec, cache, rows, progress=progress)
            parts.append(predictions.load(part, "test"))
        labeled = bool(np.all(np.diff(cache.label_offsets)[rows] > 0))
        evaluator = Evaluator(num_classes, from_logits=True) if labeled else None
        write_mean(parts, partial, "test", cache.ids[rows], num_classes, spec.top_k, evaluator,
                   lambda chunk: cache.label_lists(rows[chunk]))
        record = {"source": str(source), "config_hash": metrics["config_hash"], "which": which,
                  "models": [str(p) for p in weights], "features": str(features),
                  "level": level, "split": split, "videos": int(len(rows)),
                  "scores": evaluator.result() if labeled else None,
                  "yt8m_version": __version__}
        for part in parts:
            shutil.rmtree(Path(part.path).parent)
        write_json(partial / "predict.json", record)
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    return record | {"out": str(out)}


def describe(record):
    """One line on a `predict` result."""
    line = (f"{record['out']}: {record['videos']} {record['split']} videos scored by "
            f"{Path(record['source']).name} ({record['which']})")
    scores = record.get("scores")
    if scores:
        line += (f"; GAP@20 {scores['gap']:.4f}, Hit@1 {scores['hit_at_one']:.4f}, "
                 f"PERR {scores['perr']:.4f}, mAP {scores['map']:.4f}")
    return line
