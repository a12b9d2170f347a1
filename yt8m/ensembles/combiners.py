"""The combiners of ensemble specs (`combiner: mean | weighted | stack`): `COMBINERS`, by name.

A combiner is a `Combiner` subclass. A video-level build (`video_level.build`) makes one from its
`Run` and calls its steps in this order:

1. `scan(chunk, stack, labels, oof)` for each chunk of the single pass over the members' OOF
   rows (the pass that also scores the members and correlates them);
2. `write_oof(oof)` after that pass: the OOF rows the pass did not write;
3. `write_test(test)`: the test rows;
4. `close()`, however the build ends.

What it found (`space`, `weights`, `fold_weights`, `stacker_folds`, `weight_search`) goes into the
ensemble's metrics.json. Its class attributes tell `load_spec` what a spec may ask of it:
`settings`, the spec key of its own settings (checked by `check_settings`), and `weigh`, present
on the combiners that blend by weights, which alone blend segment scores (`segments: true`, see
`segments`). A new combiner is a subclass and its entry in `COMBINERS`.
"""

import dataclasses
import time
from pathlib import Path

import numpy as np

from .blending import Candidates, blend, blend_by_fold, fit_weights
from .streaming import chunks, read


@dataclasses.dataclass
class Run:
    """One video-level build as its combiner sees it.

    `oof_parts` / `test_parts`: the members' memory-mapped logits (row i of every member is the
    same video, `oof_ids[i]` / `test_ids[i]`); `rows` / `test_rows`: those videos' rows in the
    feature `cache`, `folds` the OOF rows' folds; `evaluator`: the blend's OOF scores.
    """

    spec: dict
    out: Path
    folders: list
    oof_parts: list
    test_parts: list
    oof_ids: np.ndarray
    test_ids: np.ndarray
    cache: object
    rows: np.ndarray
    test_rows: np.ndarray
    folds: np.ndarray
    evaluator: object
    progress: bool = False

    def labels(self, index):
        """The label lists of the OOF rows at `index`."""
        return self.cache.label_lists(self.rows[index])

    def scored(self, logits, labels):
        """`logits` after adding them to the blend's OOF scores."""
        self.evaluator.update(logits, labels)
        return logits


class Combiner:
    """The steps every combiner has (see the module's docstring); by default a blend by
    `weights` in `space`, the test rows blended chunk by chunk."""

    settings = None  # the spec key of the combiner's own settings, if it has any
    weigh = None  # (score_of, members) -> weights; score_of(mix, weights) is to be maximised

    def __init__(self, run):
        self.run = run
        self.space = "logits"
        self.weights = None  # one per member, for a blend by weights
        self.fold_weights = {}  # fold -> the weights of its OOF rows, rounded for the report
        self.stacker_folds = []  # the fold stackers' records
        self.weight_search = None  # what the weight search cost (metrics.json `weight_search`)

    @staticmethod
    def check_settings(settings, path):
        """The combiner's settings (the spec's `settings` key) with defaults filled in; errors
        name the spec file `path`."""
        raise NotImplementedError

    def scan(self, chunk, stack, labels, oof):
        """A (members, rows, classes) `stack` of the OOF rows `chunk`, with their `labels`."""

    def write_oof(self, oof):
        """Fill the OOF rows that `scan` left, adding them to the blend's scores."""

    def write_test(self, test):
        """Fill the test rows."""
        for chunk in chunks(len(self.run.test_ids)):
            test[chunk] = blend(read(self.run.test_parts, chunk), self.weights, self.space)

    def close(self):
        """Release what the combiner holds, however the build ends."""


class Mean(Combiner):
    """The members' mean, of their logits or of their probabilities (`space`), blended in the
    pass over the OOF rows."""

    @staticmethod
    def weigh(score_of, members):
        """Equal weights, whatever they score."""
        return np.full(members, 1.0 / members)

    def __init__(self, run):
        super().__init__(run)
        self.space = run.spec["space"]
        self.weights = self.weigh(None, len(run.folders))

    def scan(self, chunk, stack, labels, oof):
        oof[chunk] = self.run.scored(blend(stack, self.weights, self.space), labels)


class Weighted(Combiner):
    """Non-negative weights (summing to 1) that maximise OOF GAP@20, searched on each video's
    candidate classes (`blending.Candidates`, gathered in the pass over the OOF rows, in a
    temporary folder in the output folder). Fold k's OOF rows are blended with weights fitted
    without them, so the reported score is honest."""

    @staticmethod
    def weigh(score_of, members):
        return fit_weights(score_of, members)[0]

    def __init__(self, run):
        super().__init__(run)
        self.candidates = Candidates(run.oof_parts, run.labels, run.out)

    def scan(self, chunk, stack, labels, oof):
        self.candidates.add(chunk.start, stack)

    def write_oof(self, oof):
        run, candidates, members = self.run, self.candidates, len(self.run.oof_parts)
        fold_weights, started = {}, time.perf_counter()
        for k in np.unique(run.folds):
            fold_weights[int(k)] = self.weigh(
                lambda mix, w, k=k: candidates.gap(mix, w, run.folds != k), members)
        self.weights = self.weigh(candidates.gap, members)
        self.weight_search = {
            "candidates": candidates.k, "seconds": round(time.perf_counter() - started, 1),
            "dense_fallback": round(candidates.fallback / max(candidates.scored, 1), 6)}
        for chunk in chunks(len(run.folds)):
            x = blend_by_fold(read(run.oof_parts, chunk), run.folds[chunk], fold_weights)
            oof[chunk] = run.scored(x, run.labels(chunk))
        self.fold_weights = {k: [round(float(x), 4) for x in w] for k, w in fold_weights.items()}

    def close(self):
        self.candidates.close()


class Stack(Combiner):
    """A Keras level-2 model per fold, trained on the other folds' OOF rows (`stacking`); the
    test rows get the mean of the fold stackers' logits. Only this combiner imports Keras."""

    settings = "stacker"

    @staticmethod
    def check_settings(settings, path):
        from . import stacking

        return stacking.check_options(settings, path)

    def write_oof(self, oof):
        from . import stacking

        run = self.run
        self.stacker_folds = stacking.fit_stackers(
            run.out, run.spec, run.oof_parts, run.test_parts, run.cache, run.rows, run.test_rows,
            run.progress, stacking.fingerprint(run.spec, run.folders))
        stacking.write_oof(run.out, self.stacker_folds, oof, run.evaluator, run.oof_ids,
                           run.labels, run.folds)

    def write_test(self, test):
        from . import stacking

        stacking.write_test(self.run.out, self.stacker_folds, test, self.run.test_ids)


COMBINERS = {"mean": Mean, "weighted": Weighted, "stack": Stack}


def segment_combiners():
    """The names of the combiners that blend segment scores: those that blend by weights."""
    return [name for name, combiner in COMBINERS.items() if combiner.weigh is not None]


def settings_owners():
    """{spec key: the combiner whose settings it holds}."""
    return {combiner.settings: name for name, combiner in COMBINERS.items() if combiner.settings}
