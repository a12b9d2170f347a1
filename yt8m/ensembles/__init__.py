"""Level-2 blends of trained models: `yt8m ensemble ensembles/<id>.yaml` -> `ensembles/<id>/`.

A spec names its members (model ids under `models/`) and a combiner:

    members: [nextvlad, mix_nextvlad, attention_lstm]
    combiner: weighted        # mean | weighted | stack
    space: logits             # mean only: average logits, or probabilities
    stacker: {epochs: 15}     # stack only: see `stacking.STACKER_DEFAULTS`

`weighted` fits non-negative weights (summing to 1) that maximise OOF GAP@20 (`blending`);
`stack` trains a Keras level-2 model per fold (`stacking`). Reported OOF scores are honest: the
rows of fold k are blended with weights fitted, or by a stacker trained, on the other folds only.
Outputs: `oof_*`/`test_*` predictions in the models' format, `metrics.json` and `report.md`.
"""

import json
import time
from pathlib import Path

import numpy as np
import yaml

from .. import __version__, predictions
from ..errors import Yt8mError
from ..fileio import atomic_path, output_lock, write_json
from ..metrics import evaluate
from .blending import blend, fit_weights

COMBINERS = ("mean", "weighted", "stack")
SPEC_KEYS = ("members", "combiner", "space", "seed", "stacker")


def load_spec(path):
    """The checked spec dict; errors name the file, the key and what is allowed."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise Yt8mError(f"{path}: cannot read the ensemble spec ({e})") from None
    if not isinstance(spec, dict):
        raise Yt8mError(f"{path}: expected a mapping with {', '.join(SPEC_KEYS)}")
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise Yt8mError(f"{path}: unknown keys {sorted(unknown)}; allowed: {list(SPEC_KEYS)}")
    members = spec.get("members")
    if not isinstance(members, list) or len(members) < 2 or \
            not all(isinstance(m, str) for m in members) or len(set(members)) != len(members):
        raise Yt8mError(f"{path}: members must list at least two distinct model ids")
    if spec.get("combiner") not in COMBINERS:
        raise Yt8mError(f"{path}: combiner must be one of {list(COMBINERS)}, "
                        f"not {spec.get('combiner')!r}")
    if spec.get("space", "logits") not in ("logits", "probabilities"):
        raise Yt8mError(f"{path}: space must be logits or probabilities")
    if "stacker" in spec and spec["combiner"] != "stack":
        raise Yt8mError(f"{path}: stacker settings only apply to combiner: stack")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise Yt8mError(f"{path}: seed must be an integer, not {seed!r}")
    checked = {"members": members, "combiner": spec["combiner"],
               "space": spec.get("space", "logits"), "seed": seed}
    if spec["combiner"] == "stack":
        from . import stacking  # imports Keras: only for the stacker

        checked["stacker"] = stacking.check_options(spec.get("stacker"), path)
    return checked


def load_members(members, models_dir="models"):
    """{id: (oof Predictions, test Predictions)}; refuses members with NaN or infinite logits,
    or whose ids or row order disagree with the first member's."""
    loaded = {}
    for name in members:
        folder = Path(models_dir) / name
        loaded[name] = (predictions.load(folder, "oof"), predictions.load(folder, "test"))
        for part, preds in zip(("oof", "test"), loaded[name], strict=True):
            bad = predictions.non_finite_rows(preds.logits)
            if bad:
                raise Yt8mError(f"{folder}: {bad} of its {len(preds)} {part} rows hold NaN or "
                                f"infinite logits ({preds.path}); retrain it, or leave it out "
                                f"of the spec")
    first = members[0]
    for name in members[1:]:
        for part, index in (("oof", 0), ("test", 1)):
            a, b = loaded[first][index], loaded[name][index]
            if len(a.ids) != len(b.ids) or not np.array_equal(a.ids, b.ids):
                raise Yt8mError(
                    f"{Path(models_dir) / name}: its {part} predictions cover other videos or "
                    f"another row order than {Path(models_dir) / first}'s; retrain both on the "
                    f"same features")
        if loaded[name][0].logits.shape[1] != loaded[first][0].logits.shape[1]:
            raise Yt8mError(f"{Path(models_dir) / name}: another number of classes than {first}")
    return loaded


def build(spec_path, features="features", models_dir="models", out_dir=None, progress=False):
    """Blend (or stack) the members of one ensemble spec; returns its metrics dict."""
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    out = Path(out_dir or spec_path.parent) / spec_path.stem
    with output_lock(out, f"yt8m ensemble {spec_path}"):  # one writer per ensembles/<id>/
        return _build(spec, out, features, models_dir, progress)


def _build(spec, out, features, models_dir, progress):
    from ..features.cache import FeatureCache

    start = time.perf_counter()
    members = load_members(spec["members"], models_dir)
    cache = FeatureCache(features, "frame")
    oof_ids = members[spec["members"][0]][0].ids
    test_ids = members[spec["members"][0]][1].ids
    position = {video: row for row, video in enumerate(cache.ids.tolist())}
    missing = [v for v in (*oof_ids.tolist(), *test_ids.tolist()) if v not in position]
    if missing:
        raise Yt8mError(f"{features}: no videos {missing[:5]} ({len(missing)} in all) of the "
                        f"members' predictions; the members were trained on other features")
    rows = np.array([position[v] for v in oof_ids.tolist()])
    labels = cache.label_lists(rows)
    folds = cache.fold[rows]
    oof_stack = np.stack([np.asarray(members[m][0].logits, np.float32) for m in spec["members"]])
    test_stack = np.stack([np.asarray(members[m][1].logits, np.float32) for m in spec["members"]])
    member_scores = {m: evaluate(oof_stack[i], labels, from_logits=True)
                     for i, m in enumerate(spec["members"])}
    space = spec["space"] if spec["combiner"] == "mean" else "logits"
    weights, fold_weights, stack_folds = None, {}, []
    if spec["combiner"] == "mean":
        weights = np.full(len(oof_stack), 1.0 / len(oof_stack))
        oof = blend(oof_stack, weights, space)
    elif spec["combiner"] == "weighted":  # fold k's rows blended with weights fitted without it
        oof = np.empty(oof_stack.shape[1:], np.float32)
        for k in np.unique(folds):
            fit, apply = folds != k, folds == k
            w, _ = fit_weights(oof_stack[:, fit], [labels[i] for i in np.flatnonzero(fit)])
            oof[apply] = blend(oof_stack[:, apply], w)
            fold_weights[int(k)] = [round(float(x), 4) for x in w]
        weights, _ = fit_weights(oof_stack, labels)
    else:  # stack: one stacker per fold, trained on the other folds' OOF rows
        from . import stacking

        member_folders = [Path(models_dir) / m for m in spec["members"]]
        test_rows = np.array([position[v] for v in test_ids.tolist()], np.int64)
        oof, test, stack_folds = stacking.fit_stackers(
            out, spec, [members[m][0].logits for m in spec["members"]],
            [members[m][1].logits for m in spec["members"]], cache, rows, test_rows,
            progress, stacking.fingerprint(spec, member_folders))
    scores = evaluate(oof, labels, from_logits=True)
    if weights is not None:
        test = blend(test_stack, weights, space)
    predictions.save(out, "oof", oof_ids, oof)
    predictions.save(out, "test", test_ids, test)
    best = max(member_scores, key=lambda m: member_scores[m]["gap"])
    flat = oof_stack.reshape(len(oof_stack), -1)
    correlation = np.corrcoef(flat[:, :: max(1, flat.shape[1] // 2_000_000)])
    metrics = {"id": out.name, "model": f"ensemble:{spec['combiner']}",
               "preset": "-", "members": spec["members"], "combiner": spec["combiner"],
               "space": space, "oof": scores,
               "weights": None if weights is None else dict(
                   zip(spec["members"], [round(float(w), 4) for w in weights], strict=True)),
               "fold_weights": fold_weights, "member_oof": member_scores,
               "stacker": spec.get("stacker"), "stacker_folds": stack_folds,
               "best_member": best,
               "gain_over_best_member": scores["gap"] - member_scores[best]["gap"],
               "correlation": np.round(correlation, 4).tolist(),
               "seconds": round(time.perf_counter() - start, 1), "yt8m_version": __version__}
    write_json(out / "metrics.json", metrics)
    with atomic_path(out / "report.md") as tmp:
        Path(tmp).write_text(report(metrics))
    return metrics


def report(metrics):
    """The markdown report of one ensemble."""
    members = metrics["members"]
    lines = [f"# Ensemble `{metrics['id']}` ({metrics['combiner']})", "",
             "| source | weight | OOF GAP@20 | Hit@1 | PERR | mAP |",
             "|---|---:|---:|---:|---:|---:|"]
    for m in members:
        s = metrics["member_oof"][m]
        weight = f"{metrics['weights'][m]:.3f}" if metrics["weights"] else "-"
        lines.append(f"| `{m}` | {weight} | {s['gap']:.4f} | "
                     f"{s['hit_at_one']:.4f} | {s['perr']:.4f} | {s['map']:.4f} |")
    s = metrics["oof"]
    lines += [f"| **{metrics['combiner']}** | | **{s['gap']:.4f}** | {s['hit_at_one']:.4f} | "
              f"{s['perr']:.4f} | {s['map']:.4f} |", "",
              f"Best single model: `{metrics['best_member']}`; the blend's OOF GAP@20 gain over "
              f"it: {metrics['gain_over_best_member']:+.4f}.", ""]
    if metrics["fold_weights"]:
        lines += ["Weights fitted without each fold (the OOF rows of fold k use its weights):",
                  "", *(f"- fold {k}: {w}" for k, w in metrics["fold_weights"].items()), ""]
    if metrics.get("stacker_folds"):
        lines += [f"Stacker settings: {json.dumps(metrics['stacker'])}", "",
                  "Each fold's stacker, trained on the other folds' OOF rows:", "",
                  *(f"- fold {r['fold']}: OOF GAP@20 {r['oof']['gap']:.4f} on its "
                    f"{r['oof']['videos']} videos ({r['train_videos']} training videos, "
                    f"{r['seconds']} s)" for r in metrics["stacker_folds"]), ""]
    lines += ["Pairwise correlation of the members' OOF logits:", "",
              "| | " + " | ".join(f"`{m}`" for m in members) + " |",
              "|---|" + "---:|" * len(members)]
    for m, row in zip(members, metrics["correlation"], strict=True):
        lines.append(f"| `{m}` | " + " | ".join(f"{c:.3f}" for c in row) + " |")
    return "\n".join(lines) + "\n"


def summary_line(metrics):
    line = (f"{metrics['id']}: {metrics['combiner']} of {len(metrics['members'])} models, OOF "
            f"GAP@20 {metrics['oof']['gap']:.4f} ({metrics['gain_over_best_member']:+.4f} over "
            f"{metrics['best_member']})")
    if metrics["weights"]:
        line += "; weights " + json.dumps(metrics["weights"])
    return line
