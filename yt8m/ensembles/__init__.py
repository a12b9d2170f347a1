"""Level-2 blends of trained models: `yt8m ensemble ensembles/<id>.yaml` -> `ensembles/<id>/`.

A spec names its members (model ids under `models/`) and a combiner:

    members: [nextvlad, mix_nextvlad, attention_lstm]
    combiner: weighted        # mean | weighted | stack
    space: logits             # mean only: average logits, or probabilities
    stacker: {epochs: 15}     # stack only: see `stacking.STACKER_DEFAULTS`
    segments: true            # 2019: blend the members' segment scores (`segments`)

`weighted` fits non-negative weights (summing to 1) that maximise OOF GAP@20 (`blending`);
`stack` trains a Keras level-2 model per fold (`stacking`). Reported OOF scores are honest: the
rows of fold k are blended with weights fitted, or by a stacker trained, on the other folds only.
Outputs: `oof_*`/`test_*` predictions in the models' format, `metrics.json` and `report.md`.
"""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import yaml

from .. import __version__, predictions
from ..errors import Yt8mError
from ..fileio import atomic_path, output_lock, write_json
from ..metrics import Evaluator
from .blending import Candidates, blend, blend_by_fold, fit_weights
from .streaming import Correlation, chunks, locate, read

COMBINERS = ("mean", "weighted", "stack")
SPEC_KEYS = ("members", "combiner", "space", "seed", "stacker", "segments")


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
    segments = spec.get("segments", False)
    if not isinstance(segments, bool):
        raise Yt8mError(f"{path}: segments must be true or false, not {segments!r}")
    if segments and (spec["combiner"] == "stack" or spec.get("space", "logits") != "logits"):
        raise Yt8mError(f"{path}: segment ensembles blend logits with combiner mean or "
                        f"weighted")
    checked = {"members": members, "combiner": spec["combiner"],
               "space": spec.get("space", "logits"), "seed": seed, "segments": segments}
    if spec["combiner"] == "stack":
        from . import stacking  # imports Keras: only for the stacker

        checked["stacker"] = stacking.check_options(spec.get("stacker"), path)
    return checked


def load_members(members, models_dir="models"):
    """{id: (oof Predictions, test Predictions)}, the logits memory-mapped and the ids held once
    (every member's are the first's); refuses members with NaN or infinite logits, or whose ids
    or row order disagree with the first member's."""
    loaded, problems = {}, []
    first = members[0]
    for name in members:
        folder = Path(models_dir) / name
        loaded[name] = (predictions.load(folder, "oof"), predictions.load(folder, "test"))
        for part, preds in zip(("oof", "test"), loaded[name], strict=True):
            bad = predictions.non_finite_rows(preds.logits)
            if bad:
                raise Yt8mError(f"{folder}: {bad} of its {len(preds)} {part} rows hold NaN or "
                                f"infinite logits ({preds.path}); retrain it, or leave it out "
                                f"of the spec")
        if name == first:
            continue
        for part, a, b in zip(("oof", "test"), loaded[first], loaded[name], strict=True):
            if len(a.ids) != len(b.ids) or not np.array_equal(a.ids, b.ids):
                problems.append(
                    f"{folder}: its {part} predictions cover other videos or another row order "
                    f"than {Path(models_dir) / first}'s; retrain both on the same features")
        if loaded[name][0].logits.shape[1] != loaded[first][0].logits.shape[1]:
            problems.append(f"{folder}: another number of classes than {first}")
        loaded[name] = tuple(dataclasses.replace(b, ids=a.ids)
                             for a, b in zip(loaded[first], loaded[name], strict=True))
    if problems:
        raise Yt8mError(problems[0])
    return loaded


def members_level(members, models_dir="models"):
    """The cache level every member trained on (their metrics.json `level`; frame before it
    was recorded): members of both levels hold other videos in another row order."""
    levels = {m: predictions.source_metrics(Path(models_dir) / m).get("level", "frame")
              for m in members}
    first = members[0]
    other = next((m for m in members if levels[m] != levels[first]), None)
    if other is not None:
        raise Yt8mError(f"{Path(models_dir) / other}: trained on {levels[other]}-level "
                        f"features, {Path(models_dir) / first} on {levels[first]}-level ones; "
                        f"train both on one level (make train-all LEVEL=...)")
    return levels[first]


def build(spec_path, features="features", models_dir="models", out_dir=None, progress=False):
    """Blend (or stack) the members of one ensemble spec; returns its metrics dict."""
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    out = Path(out_dir or spec_path.parent) / spec_path.stem
    with output_lock(out, f"yt8m ensemble {spec_path}"):  # one writer per ensembles/<id>/
        if spec["segments"]:
            from . import segments

            return segments.build(spec, out, features, models_dir)
        return _build(spec, out, features, models_dir, progress)


def _build(spec, out, features, models_dir, progress):
    from ..features.cache import FeatureCache

    start = time.perf_counter()
    names = spec["members"]
    members = load_members(names, models_dir)
    cache = FeatureCache(features, members_level(names, models_dir))
    oof_ids, test_ids = members[names[0]][0].ids, members[names[0]][1].ids
    rows, test_rows = locate(oof_ids, cache.ids), locate(test_ids, cache.ids)
    missing = [*oof_ids[rows < 0].tolist(), *test_ids[test_rows < 0].tolist()]
    if missing:
        raise Yt8mError(f"{features}: no videos {missing[:5]} ({len(missing)} in all) of the "
                        f"members' predictions; the members were trained on other features")
    folds = cache.fold[rows]
    oof_parts = [members[m][0].logits for m in names]  # memory-maps, read chunk by chunk
    test_parts = [members[m][1].logits for m in names]
    num_classes = oof_parts[0].shape[1]

    def labels(index):
        return cache.label_lists(rows[index])

    def evaluator():
        return Evaluator(num_classes, from_logits=True)

    combiner = spec["combiner"]
    space = spec["space"] if combiner == "mean" else "logits"
    weights, fold_weights, stack_folds, search = None, {}, [], None
    if combiner == "mean":
        weights = np.full(len(names), 1.0 / len(names))
    member_evaluators = [evaluator() for _ in names]
    correlation = Correlation(len(names), len(rows) * num_classes)
    candidates = Candidates(oof_parts, labels, out) if combiner == "weighted" else None
    blended = evaluator()
    try:
        with predictions.writer(out, "oof", oof_ids, num_classes) as oof:
            for chunk in chunks(len(rows)):  # the members' scores, correlation, candidates
                stack, chunk_labels = read(oof_parts, chunk), labels(chunk)
                for member, x in zip(member_evaluators, stack, strict=True):
                    member.update(x, chunk_labels)
                correlation.update(stack, chunk.start)
                if combiner == "weighted":
                    candidates.add(chunk.start, stack)
                if combiner == "mean":  # blended in the same pass
                    oof[chunk] = _scored(blend(stack, weights, space), blended, chunk_labels)
            if combiner == "weighted":
                weights, fold_weights, search = _fit_weighted(
                    candidates, folds, oof_parts, oof, blended, labels)
            if combiner == "stack":  # one stacker per fold, trained on the other folds
                from . import stacking

                member_folders = [Path(models_dir) / m for m in names]
                stack_folds = stacking.fit_stackers(
                    out, spec, oof_parts, test_parts, cache, rows, test_rows, progress,
                    stacking.fingerprint(spec, member_folders))
                stacking.write_oof(out, stack_folds, oof, blended, oof_ids, labels, folds)
            with predictions.writer(out, "test", test_ids, num_classes) as test:
                if combiner == "stack":
                    stacking.write_test(out, stack_folds, test, test_ids)
                else:
                    for chunk in chunks(len(test_ids)):
                        test[chunk] = blend(read(test_parts, chunk), weights, space)
    finally:
        if candidates is not None:
            candidates.close()
    scores = blended.result()
    member_scores = {m: e.result() for m, e in zip(names, member_evaluators, strict=True)}
    best = max(member_scores, key=lambda m: member_scores[m]["gap"])
    metrics = {"id": out.name, "model": f"ensemble:{spec['combiner']}",
               "preset": "-", "level": cache.level, "members": names, "combiner": spec["combiner"],
               "space": space, "oof": scores,
               "weights": None if weights is None else dict(
                   zip(names, [round(float(w), 4) for w in weights], strict=True)),
               "fold_weights": fold_weights, "member_oof": member_scores,
               "stacker": spec.get("stacker"), "stacker_folds": stack_folds,
               "best_member": best,
               "gain_over_best_member": scores["gap"] - member_scores[best]["gap"],
               "correlation": np.round(correlation.result(), 4).tolist(),
               "seconds": round(time.perf_counter() - start, 1), "yt8m_version": __version__}
    if search:
        metrics["weight_search"] = search
    write_json(out / "metrics.json", metrics)
    with atomic_path(out / "report.md") as tmp:
        Path(tmp).write_text(report(metrics))
    return metrics


def _fit_weighted(candidates, folds, parts, oof, evaluator, labels):
    """The weighted combiner: weights fitted on every OOF row, and fold k's rows of `oof`
    blended with weights fitted without them (added to `evaluator`). Returns (weights, fold
    weights rounded for the report, the search's candidate figures)."""
    fold_weights, started = {}, time.perf_counter()
    for k in np.unique(folds):
        fold_weights[int(k)], _ = fit_weights(
            lambda mix, w, k=k: candidates.gap(mix, w, folds != k), len(parts))
    weights, _ = fit_weights(candidates.gap, len(parts))
    search = {"candidates": candidates.k, "seconds": round(time.perf_counter() - started, 1),
              "dense_fallback": round(candidates.fallback / max(candidates.scored, 1), 6)}
    for chunk in chunks(len(folds)):
        x = blend_by_fold(read(parts, chunk), folds[chunk], fold_weights)
        oof[chunk] = _scored(x, evaluator, labels(chunk))
    return weights, {k: [round(float(x), 4) for x in w] for k, w in fold_weights.items()}, search


def _scored(logits, evaluator, labels):
    """`logits` after adding them to `evaluator`."""
    evaluator.update(logits, labels)
    return logits


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
    search = metrics.get("weight_search")
    if search:
        lines += [f"Weight search: on each video's {search['candidates']} best classes of every "
                  f"member (the blend's top 20 provably among them, else the video blended "
                  f"densely: {search['dense_fallback']:.2%} of the trials' rows), "
                  f"{search['seconds']} s.", ""]
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
    score = (f"segment MAP@{metrics['top_k']} {metrics['oof']['map']:.4f}" if "top_k" in metrics
             else f"GAP@20 {metrics['oof']['gap']:.4f}")
    line = (f"{metrics['id']}: {metrics['combiner']} of {len(metrics['members'])} models, OOF "
            f"{score} ({metrics['gain_over_best_member']:+.4f} over {metrics['best_member']})")
    if metrics["weights"]:
        line += "; weights " + json.dumps(metrics["weights"])
    return line
