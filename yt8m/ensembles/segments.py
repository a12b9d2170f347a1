"""2019: blends of the members' segment scores (`models/<id>/segments/`), scored by MAP@K.

An ensemble spec with `segments: true` blends its members' segment logits the way the video
blends do: `mean` averages them, `weighted` fits non-negative weights (summing to 1) that
maximise the out-of-fold MAP@K, by the same coordinate search as the video blends
(`blending.fit_weights`). The reported out-of-fold MAP is honest: fold k's segments are
blended with weights fitted on the other folds' segments only. Writes
`ensembles/<id>/segments/` in the members' format (a source for `make submission
COMPETITION=youtube8m-2019`). Memory: a chunk of segments of every member at a time.
"""

import time
from pathlib import Path

import numpy as np

from .. import __version__, predictions
from ..errors import Yt8mError
from ..fileio import write_json
from ..segment_metrics import MAX_SEGMENTS
from .blending import blend, blend_by_fold
from .combiners import COMBINERS, segment_combiners
from .members import load_members
from .streaming import chunks, read


def build(spec, out, features, models_dir):
    """Blend the members' segment scores of one ensemble spec; returns its metrics."""
    from ..features.cache import FeatureCache
    from ..features.segments import FOLDER, SegmentRatings, segment_grid, segment_ids

    if spec["combiner"] not in segment_combiners():
        raise Yt8mError(f"segment ensembles combine with {' or '.join(segment_combiners())}, "
                        f"not {spec['combiner']!r}")
    weigh = COMBINERS[spec["combiner"]].weigh
    started = time.perf_counter()
    names = spec["members"]
    folders = [f"{m}/{FOLDER}" for m in names]
    members = load_members(folders, models_dir)
    sources = [predictions.source_metrics(Path(models_dir) / f) for f in folders]
    classes = sources[0]["scored_classes"]
    for name, source in zip(names, sources, strict=True):
        if source.get("scored_classes") != classes:
            raise Yt8mError(f"{Path(models_dir) / name / FOLDER}: other scored classes than "
                            f"{Path(models_dir) / folders[0]}; score both with one "
                            f"segment_label_ids.csv")
    cache = FeatureCache(features)
    ratings = SegmentRatings(cache)
    grid_rows, _ = segment_grid(cache, ratings.rated_rows)
    oof_ids = members[folders[0]][0].ids
    if not np.array_equal(oof_ids, segment_ids(cache, ratings.rated_rows)):
        raise Yt8mError(f"{Path(models_dir) / folders[0]}: its out-of-fold segments are not "
                        f"those of the rated videos of {features}/; run `yt8m segments` again")
    folds = cache.fold[grid_rows]
    oof_parts = [members[f][0].logits for f in folders]
    test_parts = [members[f][1].logits for f in folders]
    scored = np.asarray(classes)
    top_k = sources[0].get("top_k", MAX_SEGMENTS)

    def fit(rows):
        """Weights for the blend, fitted on the segments of `rows` (rated rows)."""
        index = np.flatnonzero(np.isin(grid_rows, rows))

        def map_of(mix, _weights):  # MAP@K of the segments of `rows` blended by `mix`
            evaluator = ratings.evaluator(rows, scored, top_k)
            for chunk in chunks(len(index)):
                evaluator.update(mix(read(oof_parts, index[chunk])))
            return evaluator.result()["map"]

        return weigh(map_of, len(names))

    rated = ratings.rated_rows
    fold_weights = {int(k): fit(rated[cache.fold[rated] != k]) for k in np.unique(folds)}
    weights = fit(rated)
    evaluator = ratings.evaluator(rated, scored, top_k)
    folder = out / FOLDER
    (folder / "metrics.json").unlink(missing_ok=True)  # written last, for these parts
    with predictions.writer(folder, "oof", oof_ids, len(classes)) as oof:
        for chunk in chunks(len(oof_ids)):
            x = blend_by_fold(read(oof_parts, chunk), folds[chunk], fold_weights)
            evaluator.update(x)
            oof[chunk] = x
    test_ids = members[folders[0]][1].ids
    with predictions.writer(folder, "test", test_ids, len(classes)) as test:
        for chunk in chunks(len(test_ids)):
            test[chunk] = blend(read(test_parts, chunk), weights)
    member_map = {n: s["oof"]["map"] for n, s in zip(names, sources, strict=True)}
    scores = evaluator.result()
    best = max(member_map, key=member_map.get)
    metrics = {"id": out.name, "model": f"ensemble:{spec['combiner']}", "members": names,
               "combiner": spec["combiner"], "oof": scores, "top_k": top_k,
               "scored_classes": classes, "member_oof_map": member_map,
               "weights": dict(zip(names, [round(float(w), 4) for w in weights], strict=True)),
               "fold_weights": {k: [round(float(x), 4) for x in w]
                                for k, w in fold_weights.items()},
               "best_member": best, "gain_over_best_member": scores["map"] - member_map[best],
               "seconds": round(time.perf_counter() - started, 1), "yt8m_version": __version__}
    write_json(folder / "metrics.json", metrics)
    return metrics
