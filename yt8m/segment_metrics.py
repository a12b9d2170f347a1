"""The 2019 challenge's metric: MAP@K over classes of ranked 5-second segments.

A submission gives, for each scored class, its segments best first, at most K of them (K is
100,000 in the competition). Only the segments rated for that class count: unrated ones are
dropped from the class's list, where they neither help nor hurt (the starter code's
`segment_eval_inference.py` does the same). A class's average precision is the sum of the
precision at each positively rated segment of what is left, divided by the class's number of
positive ratings, listed or not. MAP is the mean over the scored classes with at least one
positive rating; such a class missing from the submission scores 0. (The starter code averages
over the classes the submission lists instead, and stops on a listed class without positives.)

From scores, the lists are the ones `yt8m.submissions.segments` writes: each segment keeps its
`per_segment` best scored classes (ties: the lower class id first), then each class ranks the
segments that kept it, best score first (ties: the earlier segment first), and keeps K.

`SegmentEvaluator` takes the segments' scores in batches, in segment order. Its memory is the
ratings plus, per scored class, the keys of its best candidates: at most 2K 8-byte keys a class,
never the segments x classes scores.
"""

import numpy as np

from .errors import Yt8mError
from .metrics import top_candidates

MAX_SEGMENTS = 100_000
CLASSES_PER_SEGMENT = 20
_U64 = np.uint64
_LOW = _U64(0xFFFFFFFF)


def average_precision(ratings, positives):
    """AP of one class: `ratings` of its listed, rated segments in rank order (> 0: positive),
    over its `positives` positive ratings in all (NaN when it has none)."""
    hits = np.asarray(ratings, np.float64) > 0
    if positives <= 0:
        return float("nan")
    if hits.sum() > positives:
        raise ValueError(f"{int(hits.sum())} positives listed, but only {positives} in all")
    precision = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision.sum() / positives)


def _score_keys(scores):
    """float32 scores as uint32 keys with the scores' order (larger key: larger score)."""
    bits = (np.asarray(scores, np.float32) + np.float32(0)).view(np.uint32)  # -0.0 -> 0.0
    return np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31)).astype(np.uint32)


class ClassLists:
    """Each class's list of segments, as a submission gives it, over batches of segment scores.

    A segment is a candidate of its `per_segment` best columns (ties: the lower column first);
    each column keeps its best `top_k` candidates (ties: the earlier segment first) as 8-byte
    keys: the score's order above, the segment's index below. Memory: at most 2 x `top_k` keys
    a column, whatever the number of segments.
    """

    def __init__(self, num_columns, top_k=MAX_SEGMENTS, per_segment=CLASSES_PER_SEGMENT):
        if top_k < 1 or per_segment < 1:
            raise ValueError("top_k and per_segment must be positive")
        self.num_columns, self.top_k = int(num_columns), int(top_k)
        self.per_segment = min(int(per_segment), self.num_columns)
        self._keys = [[] for _ in range(self.num_columns)]
        self._held = np.zeros(self.num_columns, np.int64)
        self.num_segments = 0

    def add(self, scores):
        """Add the next segments' (segments, columns) scores; returns their candidates as
        (segment indices, columns, keys)."""
        scores = np.asarray(scores)
        if scores.ndim != 2 or scores.shape[1] != self.num_columns:
            raise Yt8mError(f"segment scores have shape {scores.shape}, expected (segments, "
                            f"{self.num_columns})")
        scores = scores.astype(np.float32, copy=False)
        if np.isnan(scores).any():
            row = int(np.isnan(scores).any(axis=1).argmax())
            raise Yt8mError(f"segment {self.num_segments + row} has a NaN score")
        first, n, k = self.num_segments, len(scores), self.per_segment
        self.num_segments += n
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, _U64)
        best, column = top_candidates(scores, k)
        best, column = best[:, :k].ravel(), column[:, :k].ravel()
        segment = np.repeat(np.arange(first, first + n, dtype=np.int64), k)
        keys = _score_keys(best).astype(_U64) << _U64(32)
        keys |= _LOW - segment.astype(_U64)  # larger key: better score, then earlier segment
        order = np.argsort(column, kind="stable")
        bounds = np.searchsorted(column[order], np.arange(self.num_columns + 1))
        for c in np.flatnonzero(np.diff(bounds)):
            self._keys[c].append(keys[order[bounds[c] : bounds[c + 1]]])
            self._held[c] += bounds[c + 1] - bounds[c]
            if self._held[c] > 2 * self.top_k:
                self._keys[c] = [self.best(c)]
                self._held[c] = self.top_k
            elif len(self._keys[c]) > 32:  # one array, not many small ones with their overhead
                self._keys[c] = [np.concatenate(self._keys[c])]
        return segment, column, keys

    def best(self, c):
        """Column c's listed keys (at most `top_k`), unordered."""
        keys = np.concatenate(self._keys[c]) if self._keys[c] else np.zeros(0, _U64)
        if keys.size > self.top_k:
            keys = np.partition(keys, keys.size - self.top_k)[-self.top_k:]
        return keys

    def ranked(self, c):
        """Column c's listed segment indices, best first."""
        keys = np.sort(self.best(c))[::-1]
        return (_LOW - (keys & _LOW)).astype(np.int64)


class SegmentEvaluator:
    """Streaming MAP@K of segment scores against ratings.

    Args:
        classes: the scored class ids (the 2019 `segment_label_ids.csv`).
        segments, labels, ratings: the ratings, one entry per rated (segment, class): the
            segment's index in the order segments are scored, the class, the rating (> 0:
            positive). Ratings of classes that are not scored are ignored.
        top_k: segments listed per class (K).
        per_segment: classes a segment is listed for at most.

    Example:
        >>> ev = SegmentEvaluator(classes, segments, labels, ratings)
        >>> for scores in batches:  # (segments, classes) scores, in segment order
        ...     ev.update(scores)
        >>> ev.result()["map"]
    """

    def __init__(self, classes, segments, labels, ratings, top_k=MAX_SEGMENTS,
                 per_segment=CLASSES_PER_SEGMENT):
        self.classes = np.unique(np.asarray(classes, np.int64))
        if self.classes.size == 0 or self.classes[0] < 0:
            raise ValueError("classes must be a non-empty list of class ids")
        self.lists = ClassLists(self.classes.size, top_k, per_segment)
        segments = np.asarray(segments, np.int64)
        labels = np.asarray(labels, np.int64)
        ratings = np.asarray(ratings, np.float64)
        if not segments.shape == labels.shape == ratings.shape:
            raise ValueError("segments, labels and ratings must be equally long")
        column = np.searchsorted(self.classes, labels).clip(0, self.classes.size - 1)
        scored = self.classes[column] == labels
        pair = segments[scored] * self.classes.size + column[scored]
        order = np.argsort(pair, kind="stable")
        self._pairs, self._ratings = pair[order], ratings[scored][order]
        if (np.diff(self._pairs) == 0).any():
            twice = self._pairs[1:][np.diff(self._pairs) == 0][0]
            raise Yt8mError(f"segment {twice // self.classes.size} is rated twice for class "
                            f"{self.classes[twice % self.classes.size]}")
        columns = self._pairs % self.classes.size
        self.positives = np.bincount(columns[self._ratings > 0], minlength=self.classes.size)
        self._by_class = np.argsort(columns, kind="stable")  # rated pairs grouped by class
        self._class_starts = np.searchsorted(columns[self._by_class],
                                             np.arange(self.classes.size + 1))
        self._found = np.zeros(self._pairs.size, _U64)  # a rated pair's key once listed; 0: not

    @property
    def num_segments(self):
        return self.lists.num_segments

    def update(self, scores):
        """Add the next segments' scores: (segments, all classes) or (segments, scored classes)."""
        scores = np.asarray(scores)
        if scores.ndim == 2 and scores.shape[1] != self.classes.size:
            if scores.shape[1] <= self.classes[-1]:
                raise Yt8mError(f"segment scores have {scores.shape[1]} columns: neither the "
                                f"{self.classes.size} scored classes nor every class up to "
                                f"{self.classes[-1]}")
            scores = scores[:, self.classes]
        segment, column, keys = self.lists.add(scores)
        if self._pairs.size and segment.size:
            pair = segment * self.classes.size + column
            at = np.searchsorted(self._pairs, pair).clip(0, self._pairs.size - 1)
            rated = self._pairs[at] == pair
            self._found[at[rated]] = keys[rated]

    def average_precisions(self):
        """Per scored class AP (NaN for classes without positive ratings)."""
        aps = np.full(self.classes.size, np.nan)
        starts = self._class_starts
        for c in np.flatnonzero(self.positives):
            pairs = self._by_class[starts[c] : starts[c + 1]]
            found, ratings = self._found[pairs], self._ratings[pairs]
            listed = found > 0
            if listed.any():
                best = self.lists.best(c)
                if best.size == self.lists.top_k:  # only the top K are listed
                    listed &= found >= best.min()
            order = np.argsort(found[listed])[::-1]
            aps[c] = average_precision(ratings[listed][order], int(self.positives[c]))
        return aps

    def result(self):
        """{"map", "classes" (scored classes with positives), "segments", "ratings"}."""
        aps = self.average_precisions()
        aps = aps[~np.isnan(aps)]
        return {"map": float(aps.mean()) if aps.size else 0.0, "classes": int(aps.size),
                "segments": self.num_segments, "ratings": int(self._pairs.size)}


def segment_map(scores, classes, segments, labels, ratings, top_k=MAX_SEGMENTS,
                per_segment=CLASSES_PER_SEGMENT):
    """MAP@K of one (segments, classes) score matrix; see `SegmentEvaluator`."""
    ev = SegmentEvaluator(classes, segments, labels, ratings, top_k, per_segment)
    ev.update(scores)
    return ev.result()["map"]


def submission_map(ranked, classes, rated, top_k=MAX_SEGMENTS):
    """MAP@K of a submission's lists.

    Args:
        ranked: {class: [segment ids, best first]} (a `Class,Segments` file's rows).
        classes: the scored class ids.
        rated: {(segment id, class): rating}.
    """
    classes = np.unique(np.asarray(classes, np.int64))
    positives = {}
    for (_, c), rating in rated.items():
        if rating > 0:
            positives[c] = positives.get(c, 0) + 1
    aps = []
    for c in classes.tolist():
        if not positives.get(c):
            continue
        listed = [rated[(s, c)] for s in ranked.get(c, [])[:top_k] if (s, c) in rated]
        aps.append(average_precision(listed, positives[c]))
    return float(np.mean(aps)) if aps else 0.0
