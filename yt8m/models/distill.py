"""Distillation: a model trained on a teacher's out-of-fold soft targets mixed with the labels.

A spec sets `training: {teacher: ensembles/stack_all, teacher_weight: 0.5}`; every training
batch's targets become `teacher_weight * sigmoid(teacher logits) + (1 - teacher_weight) * labels`,
where the teacher's logits are its out-of-fold ones. The student then trains out of fold like any
model (`yt8m train`), so fold k's student never sees fold k's videos, and its OOF score is
cross-fitted the way a stacker's is: the teacher's OOF rows of the other folds came from models
that did see fold k's labels, but never with fold k's features. Held-out scores (GAP@20 and the
others) are always against the true labels. The student is one model of the zoo: it is
exported, refitted and predicted like the others, and its size is that model's.
"""

import hashlib
from pathlib import Path

import numpy as np

from .. import predictions
from ..errors import Yt8mError


def fingerprint(teacher):
    """A short hash of the teacher's metrics.json (rewritten whenever it is rebuilt), or
    "missing": a rebuilt teacher makes its students retrain."""
    path = Path(teacher) / "metrics.json"
    if not path.is_file():
        return "missing"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class Teacher:
    """Soft targets from the out-of-fold logits of a trained source (a model or an ensemble).

    Args:
        folder: the teacher's folder (`ensembles/<id>` or `models/<id>`).
        cache: the `FeatureCache` the student trains on; every labeled video in a fold must
            have a teacher row (the teacher was built on the same features).
        weight: the teacher's share of the target, in [0, 1].
    """

    def __init__(self, folder, cache, weight=0.5):
        from ..predictions import locate

        folder = Path(folder)
        metrics = predictions.source_metrics(folder)
        if not metrics or not predictions.exists(folder, "oof"):
            raise Yt8mError(f"{folder}: the teacher has no out-of-fold predictions; build it "
                            f"first (make ensemble, or make train MODEL={folder.name})")
        level = metrics.get("level", "frame")
        if level != cache.level:
            raise Yt8mError(f"{folder}: the teacher was built on {level}-level features, the "
                            f"student trains on {cache.level}-level ones; use one level")
        self.folder, self.weight, self.metrics = folder, float(weight), metrics
        oof = predictions.load(folder, "oof")
        if oof.logits.shape[1] != cache.num_classes:
            raise Yt8mError(f"{oof.path}: {oof.logits.shape[1]} classes, the features "
                            f"{cache.num_classes}")
        self.logits = oof.logits
        # cache row -> teacher row (int32: 4 bytes a video, 24 MB at the 6M videos of a real cache)
        self.row_of = np.full(len(cache), -1, np.int32)
        at = locate(oof.ids, cache.ids)
        self.row_of[at[at >= 0]] = np.flatnonzero(at >= 0)
        # imported here: the trainer imports keras, fingerprint() must not
        from .trainer import labeled_fold_rows

        labeled = labeled_fold_rows(cache)
        missing = int((self.row_of[labeled] < 0).sum())
        if missing:
            raise Yt8mError(f"{folder}: no out-of-fold prediction for {missing} of the "
                            f"{len(labeled)} labeled videos; rebuild the teacher on these "
                            f"features")

    def targets(self, rows, labels):
        """The batch's targets: labels where the teacher has no row (videos outside the
        folds), the weighted mix elsewhere."""
        at = self.row_of[np.asarray(rows)]
        have = at >= 0
        out = np.asarray(labels, np.float32).copy()
        if have.any():
            order = np.argsort(at[have])  # ascending reads of the memory-map
            soft = np.empty((int(have.sum()), out.shape[1]), np.float32)
            soft[order] = 1.0 / (1.0 + np.exp(-np.asarray(self.logits[at[have][order]],
                                                          np.float32)))
            out[have] = self.weight * soft + (1.0 - self.weight) * out[have]
        return out
