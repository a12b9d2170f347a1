"""Video-level blends of the members' logits: `ensembles/<id>/` predictions, metrics and report.

One pass over the members' OOF rows, a chunk at a time (`streaming`), scores every member,
correlates them and feeds the spec's combiner (`combiners`), which then writes the blend's OOF
and test rows. The OOF and test predictions become files only together, once both are written;
`metrics.json` and `report.md` follow them.
"""

import time
from pathlib import Path

import numpy as np

from .. import __version__, predictions
from ..errors import Yt8mError
from ..fileio import atomic_path, write_json
from ..metrics import Evaluator
from .combiners import COMBINERS, Run
from .members import load_members, members_level
from .reports import report
from .streaming import Correlation, chunks, locate, read


def build(spec, out, features, models_dir, progress=False):
    """Blend (or stack) the members of a checked spec into `out`; returns its metrics dict."""
    from ..features.cache import FeatureCache

    start = time.perf_counter()
    names = spec["members"]
    members = load_members(names, models_dir)
    cache = FeatureCache(features, members_level(names, models_dir))
    oof_ids, test_ids = members[names[0]][0].ids, members[names[0]][1].ids
    rows, test_rows = _cache_rows(cache, oof_ids, test_ids, features)
    oof_parts = [members[m][0].logits for m in names]  # memory-maps, read chunk by chunk
    num_classes = oof_parts[0].shape[1]
    run = Run(spec, out, [Path(models_dir) / m for m in names], oof_parts,
              [members[m][1].logits for m in names], oof_ids, test_ids, cache, rows, test_rows,
              cache.fold[rows], Evaluator(num_classes, from_logits=True), progress)
    member_evaluators = [Evaluator(num_classes, from_logits=True) for _ in names]
    correlation = Correlation(len(names), len(rows) * num_classes)
    combiner = COMBINERS[spec["combiner"]](run)
    try:
        with predictions.writer(out, "oof", oof_ids, num_classes) as oof:
            for chunk in chunks(len(rows)):
                stack, labels = read(oof_parts, chunk), run.labels(chunk)
                for member, x in zip(member_evaluators, stack, strict=True):
                    member.update(x, labels)
                correlation.update(stack, chunk.start)
                combiner.scan(chunk, stack, labels, oof)
            combiner.write_oof(oof)
            with predictions.writer(out, "test", test_ids, num_classes) as test:
                combiner.write_test(test)
    finally:
        combiner.close()
    member_scores = {m: e.result() for m, e in zip(names, member_evaluators, strict=True)}
    metrics = _metrics(spec, out, cache.level, combiner, run.evaluator.result(), member_scores,
                       correlation.result(), time.perf_counter() - start)
    write_json(out / "metrics.json", metrics)
    with atomic_path(out / "report.md") as tmp:
        Path(tmp).write_text(report(metrics))
    return metrics


def _cache_rows(cache, oof_ids, test_ids, features):
    """The rows of the members' OOF and test videos in the feature `cache`; an error names
    the videos it lacks."""
    rows, test_rows = locate(oof_ids, cache.ids), locate(test_ids, cache.ids)
    missing = [*oof_ids[rows < 0].tolist(), *test_ids[test_rows < 0].tolist()]
    if missing:
        raise Yt8mError(f"{features}: no videos {missing[:5]} ({len(missing)} in all) of the "
                        f"members' predictions; the members were trained on other features")
    return rows, test_rows


def _metrics(spec, out, level, combiner, scores, member_scores, correlation, seconds):
    """The ensemble's metrics.json dict."""
    names = spec["members"]
    best = max(member_scores, key=lambda m: member_scores[m]["gap"])
    weights = combiner.weights
    metrics = {"id": out.name, "model": f"ensemble:{spec['combiner']}",
               "preset": "-", "level": level, "members": names, "combiner": spec["combiner"],
               "space": combiner.space, "oof": scores,
               "weights": None if weights is None else dict(
                   zip(names, [round(float(w), 4) for w in weights], strict=True)),
               "fold_weights": combiner.fold_weights, "member_oof": member_scores,
               "stacker": spec.get("stacker"), "stacker_folds": combiner.stacker_folds,
               "best_member": best,
               "gain_over_best_member": scores["gap"] - member_scores[best]["gap"],
               "correlation": np.round(correlation, 4).tolist(),
               "seconds": round(seconds, 1), "yt8m_version": __version__}
    if combiner.weight_search:
        metrics["weight_search"] = combiner.weight_search
    return metrics
