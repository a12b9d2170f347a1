"""The members of an ensemble: their predictions loaded, and checked against each other."""

import dataclasses
from pathlib import Path

import numpy as np

from .. import predictions
from ..errors import Yt8mError


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
