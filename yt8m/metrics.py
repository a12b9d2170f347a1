"""Competition metrics with the starter code's semantics, vectorized and streaming.

GAP@k, Hit@1, PERR and mAP follow `eval_util.py` and `average_precision_calculator.py` of the
YouTube-8M starter code:

* GAP@k ranks the (video, class, score) triplets of every video's k best classes across all videos
  and sums precision at each true triplet, divided by the number of true labels, including labels
  that fall outside every top k.
* mAP is the mean over classes with at least one positive of the same average precision computed
  per class over that class's top-k triplets.
* Hit@1 is the share of videos whose best class is a true label (ties go to the lowest class id,
  as `numpy.argmax`).
* PERR is, per video with L labels, the share of its top L classes that are true labels with a
  positive score; videos without labels count as 0.

Two details are pinned down where the starter code leaves them to chance or to float32:

* **Ties.** The starter code shuffles tied triplets with `random.seed(0)` before ranking them, so
  its result depends on the order it happened to see them in. Here a run of tied scores
  contributes the *expected* precision over a uniformly random order of the run (identical to
  the starter code when there are no ties, its average over shuffles when there are). At the
  top-k boundary of a video, tied classes are taken lowest class id first.
* **Precision.** Every sum is accumulated in float64 whatever the input dtype.

`Evaluator` keeps only the top-k triplets (O(videos x k) memory), so a million videos can be
scored in batches; `gap`, `mean_ap`, `hit_at_one`, `perr` and `evaluate` are one-shot wrappers.

**Memory.** A kept triplet takes 7 bytes: its score in the dtype `update` scored it in
(float32; float64, 4 bytes more, for float64 input and in `update_top_k`), its class as uint16
(int32 past 65,536 classes) and its hit as a bool. The metrics depend on the scores only
through their order and their ties, and both are those of the input, so nothing is rounded.
`result()` sorts the triplets through one 8-byte key each (an argsort for float64 scores),
groups them by class with a counting sort done a chunk at a time and sums precisions a chunk
at a time, so its peak is about twice the kept triplets (1M videos x top 20: 140 MB kept,
0.30 GB peak, where full-length float64 and int64 work arrays took 3.5 GB). Below one chunk of
triplets the sums are bit for bit those of a single pass; above, only the order of float64
additions changes (about 1e-16).
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import Yt8mError

METRIC_NAMES = ("gap", "hit_at_one", "perr", "map")
_CHUNK_ROWS = 4096
_CHUNK_ITEMS = 1 << 17  # triplets per chunk in `result()`: about 15 MB of float64 work arrays


class Evaluator:
    """Streaming GAP@k, Hit@1, PERR and mAP over batches of predictions.

    Args:
        num_classes: width of the prediction matrix.
        top_k: classes kept per video (20 in the competitions).
        from_logits: predictions are logits, not probabilities. Ranking metrics are unchanged;
            PERR's "positive score" test becomes "finite logit" (sigmoid > 0).

    Example:
        >>> ev = Evaluator(num_classes=3862)
        >>> for scores, labels in batches:
        ...     ev.update(scores, labels)
        >>> ev.result()["gap"]
    """

    def __init__(self, num_classes, top_k=20, from_logits=False):
        if num_classes < 1 or top_k < 1:
            raise ValueError("num_classes and top_k must be positive")
        self.num_classes = int(num_classes)
        self.top_k = int(top_k)
        self.from_logits = bool(from_logits)
        self._class_dtype = np.uint16 if self.num_classes <= 1 << 16 else np.int32
        self.reset()

    def reset(self):
        self._scores, self._classes, self._hits = [], [], []
        self._sorted = True  # the kept parts are one part sorted by score (or none)
        self._positives = np.zeros(self.num_classes, np.int64)
        self._videos = 0
        self._hit1 = 0.0
        self._perr = 0.0

    @property
    def num_videos(self):
        return self._videos

    @property
    def kept_bytes(self):
        """Memory held by the kept top-k triplets (scores, classes, hits)."""
        return sum(a.nbytes for part in (self._scores, self._classes, self._hits) for a in part)

    def update(self, predictions, labels):
        """Add a batch: (videos, classes) scores and their labels (dense or label-id lists)."""
        predictions = _check_shape(predictions, self.num_classes)
        dense = isinstance(labels, np.ndarray) and labels.ndim == 2
        if dense:
            if labels.shape != predictions.shape:
                raise Yt8mError(
                    f"labels have shape {labels.shape}, predictions {predictions.shape}"
                )
        else:
            offsets, flat = label_csr(labels, len(predictions), self.num_classes)
        def candidates(start):
            stop = min(start + _CHUNK_ROWS, len(predictions))
            chunk = _as_scores(predictions[start:stop], start)
            if dense:
                sub_offsets, sub_flat = label_csr(
                    labels[start:stop], stop - start, self.num_classes
                )
            else:
                sub_offsets = offsets[start : stop + 1] - offsets[start]
                sub_flat = flat[offsets[start] : offsets[stop]]
            m = min(self.num_classes, max(self.top_k, int(np.diff(sub_offsets).max(initial=0))))
            return (*top_candidates(chunk, m), sub_offsets, sub_flat)

        starts = range(0, len(predictions), _CHUNK_ROWS)
        if len(starts) > 1:  # NumPy releases the GIL in the heavy passes
            with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as pool:
                for parts in pool.map(candidates, starts):
                    self._add(*parts)
        else:
            for start in starts:
                self._add(*candidates(start))

    def update_top_k(self, classes, scores, labels):
        """Add a batch given only each video's listed (class, score) pairs, as in a submission.

        `classes` and `scores` are (videos, n) arrays; entries with class -1 are padding.
        Unlisted classes count as score 0 (never a hit for PERR, absent from GAP and mAP).
        """
        classes = np.asarray(classes, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64).copy()
        if classes.shape != scores.shape or classes.ndim != 2:
            raise ValueError(f"classes {classes.shape} and scores {scores.shape} differ or not 2-D")
        if ((classes < -1) | (classes >= self.num_classes)).any():
            raise ValueError(f"class ids must be in [0, {self.num_classes})")
        scores[classes < 0] = -np.inf  # padding sorts last
        order = np.lexsort((classes, -scores), axis=1)
        scores = np.take_along_axis(scores, order, 1)
        classes = np.take_along_axis(classes, order, 1)
        offsets, flat = label_csr(labels, len(classes), self.num_classes)
        self._add(scores, classes, offsets, flat)

    def _add(self, scores, classes, offsets, flat):
        """Accumulate one chunk of per-video candidates sorted by score, best first.

        Candidates must include every class scoring at least the video's max(k, L)-th best score;
        padding has class -1 and score -inf.
        """
        rows = len(scores)
        counts = np.diff(offsets)
        label_rows = np.repeat(np.arange(rows), counts)
        hits = _membership(classes, label_rows * self.num_classes + flat, self.num_classes)
        self._positives += np.bincount(flat, minlength=self.num_classes)
        self._videos += rows
        if rows == 0:
            return
        self._hit1 += float(hits[:, 0].sum())
        self._perr += _perr_sum(scores, hits, counts, self.from_logits)
        k = min(self.top_k, scores.shape[1])
        keep = classes[:, :k] >= 0
        self._scores.append(scores[:, :k][keep])
        self._classes.append(classes[:, :k][keep].astype(self._class_dtype))
        self._hits.append(hits[:, :k][keep])
        self._sorted = False

    def result(self):
        """Return {"gap", "hit_at_one", "perr", "map", "videos"} over everything added so far."""
        if self._videos == 0:
            return {name: 0.0 for name in METRIC_NAMES} | {"videos": 0}
        scores, classes, hits = self._ranked()
        total = int(self._positives.sum())
        gap_sum = _expected_precision_sums(scores, hits)[0]
        gap_value = float(gap_sum / total) if total and len(scores) else 0.0
        aps = self._average_precisions(scores, classes, hits)
        aps = aps[~np.isnan(aps)]
        return {
            "gap": gap_value,
            "hit_at_one": self._hit1 / self._videos,
            "perr": self._perr / self._videos,
            "map": float(aps.mean()) if aps.size else 0.0,
            "videos": self._videos,
        }

    def average_precisions(self):
        """Per-class AP over the top-k triplets (NaN for classes without positives)."""
        return self._average_precisions(*self._ranked())

    def _average_precisions(self, scores, classes, hits):
        counts = np.bincount(classes, minlength=self.num_classes)
        sums = _expected_precision_sums(*_group_by_class(scores, classes, hits, counts), counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._positives > 0, sums / self._positives, np.nan)

    def _ranked(self):
        """All kept triplets as three flat arrays sorted by score, best first.

        They are kept that way, so the batch pieces are freed and the next call sorts nothing.
        Ties are left in any order: every metric counts the expected precision over the orders of
        a tie, and the terms of that expectation depend only on the positions and hits of the
        tie, so the result does not depend on the order the sort leaves them in.
        """
        if not self._sorted:
            merged = _sort_by_score(*(_concatenate_popping(parts)
                                      for parts in (self._scores, self._classes, self._hits)))
            self._scores, self._classes, self._hits = ([part] for part in merged)
            self._sorted = True
        if not self._scores:
            return np.zeros(0, np.float32), np.zeros(0, self._class_dtype), np.zeros(0, bool)
        return self._scores[0], self._classes[0], self._hits[0]


def _concatenate_popping(parts):
    """One array of the list's arrays, emptying the list as it goes (peak: the parts + one)."""
    out = np.empty(sum(len(p) for p in parts), np.result_type(*parts))
    at = 0
    while parts:
        part = parts.pop(0)
        out[at : at + len(part)] = part
        at += len(part)
    return out


def _sort_by_score(scores, classes, hits):
    """The triplets sorted by score, best first, ties in any order.

    float32 scores are sorted in place through one uint64 key per triplet: the score's bits
    mapped to an integer that orders them best first (the map is its own inverse), then the
    class and the hit. NumPy sorts such keys with SIMD, about 10x faster than an argsort, and no
    index is needed. Other scores (float64) go through an argsort.
    """
    if scores.dtype != np.float32:
        order = np.argsort(scores)[::-1]
        return scores[order], classes[order], hits[order]

    def flip(bits):  # best first: negative floats already sort after positive ones as uint32
        return np.where(bits >> 31, bits, bits ^ np.uint32(0x7FFFFFFF))

    key = np.empty(len(scores), np.uint64)
    for a in range(0, len(scores), _CHUNK_ITEMS):
        part = slice(a, a + _CHUNK_ITEMS)
        key[part] = flip(scores[part].view(np.uint32)).astype(np.uint64) << 32
        key[part] |= classes[part].astype(np.uint64) << 1 | hits[part]
    key.sort()
    for a in range(0, len(scores), _CHUNK_ITEMS):
        part = slice(a, a + _CHUNK_ITEMS)
        scores[part] = flip((key[part] >> 32).astype(np.uint32)).view(np.float32)
        classes[part] = key[part] >> 1 & 0x7FFFFFFF
        hits[part] = key[part] & 1
    return scores, classes, hits


def _group_by_class(scores, classes, hits, counts):
    """Scores and hits grouped by class, keeping their order within each class.

    A stable counting sort done a chunk at a time, so that no full-length index is made.
    """
    free = np.cumsum(counts) - counts  # the next slot of each class
    out_scores, out_hits = np.empty_like(scores), np.empty_like(hits)
    for a in range(0, len(scores), _CHUNK_ITEMS):
        cls = classes[a : a + _CHUNK_ITEMS]
        order = np.argsort(cls, kind="stable")
        here = np.bincount(cls, minlength=len(counts))
        cls = cls[order]
        dest = free[cls] + np.arange(len(cls)) - (np.cumsum(here) - here)[cls]
        out_scores[dest] = scores[a : a + _CHUNK_ITEMS][order]
        out_hits[dest] = hits[a : a + _CHUNK_ITEMS][order]
        free += here
    return out_scores, out_hits


def evaluate(predictions, labels, top_k=20, from_logits=False):
    """All four metrics of one (videos, classes) prediction matrix; see `Evaluator`."""
    predictions = _check_shape(predictions)
    evaluator = Evaluator(predictions.shape[1], top_k=top_k, from_logits=from_logits)
    evaluator.update(predictions, labels)
    return evaluator.result()


def gap(predictions, labels, top_k=20):
    """Global average precision of each video's top-k predictions, pooled across videos."""
    return evaluate(predictions, labels, top_k)["gap"]


def mean_ap(predictions, labels, top_k=20):
    """Mean per-class AP over the top-k triplets, skipping classes without positives."""
    return evaluate(predictions, labels, top_k)["map"]


def hit_at_one(predictions, labels):
    """Share of videos whose highest-scoring class is a true label."""
    return evaluate(predictions, labels, top_k=1)["hit_at_one"]


def perr(predictions, labels, from_logits=False):
    """Precision at equal recall rate: per video, precision of its top-L classes (L = #labels)."""
    return evaluate(predictions, labels, top_k=1, from_logits=from_logits)["perr"]


def label_csr(labels, num_videos, num_classes):
    """Labels as CSR (offsets, class ids): from a dense 0/1 matrix or a sequence of id lists.

    Ids are sorted and de-duplicated per video; out-of-range ids are an error.
    """
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        if labels.shape != (num_videos, num_classes):
            raise Yt8mError(
                f"labels have shape {labels.shape}, predictions ({num_videos}, {num_classes})"
            )
        rows, flat = np.nonzero(labels > 0)
        counts = np.bincount(rows, minlength=num_videos)
    else:
        if len(labels) != num_videos:
            raise Yt8mError(f"{len(labels)} label lists for {num_videos} videos")
        counts = np.fromiter((len(ids) for ids in labels), np.int64, num_videos)
        flat = (
            np.concatenate([np.asarray(ids, dtype=np.int64).ravel() for ids in labels])
            if counts.sum()
            else np.zeros(0, np.int64)
        )
        if flat.size and (flat.min() < 0 or flat.max() >= num_classes):
            bad = int(flat[(flat < 0) | (flat >= num_classes)][0])
            raise Yt8mError(f"label id {bad} is outside [0, {num_classes})")
        keys = np.unique(np.repeat(np.arange(num_videos), counts) * num_classes + flat)
        rows, flat = np.divmod(keys, num_classes)
        counts = np.bincount(rows, minlength=num_videos)
    offsets = np.zeros(num_videos + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, flat.astype(np.int64)


def top_candidates(scores, m):
    """Each row's classes scoring at least its m-th best score, sorted best first.

    Returns (scores, classes), both (rows, W) with W >= m; ties are ordered by class id and rows
    with fewer candidates are padded with (-inf, -1). Instead of a per-row argpartition (slow in
    NumPy), a lower bound for the m-th best score is taken from the m-th best of per-block maxima:
    every class at or above it is a candidate, typically a few more than m.
    """
    rows, num_classes = scores.shape
    width = num_classes // (4 * m)
    if width >= 2:
        blocks = num_classes // width
        block_max = scores[:, : blocks * width].reshape(rows, blocks, width).max(axis=2)
        if blocks * width < num_classes:
            tail = scores[:, blocks * width :].max(axis=1, keepdims=True)
            block_max = np.concatenate([block_max, tail], axis=1)
        bound = np.partition(block_max, block_max.shape[1] - m, axis=1)[:, -m]
        flat = np.flatnonzero(scores >= bound[:, None])
        row, cls = np.divmod(flat, num_classes)
    else:
        row, cls = np.divmod(np.arange(rows * num_classes), num_classes)
    counts = np.bincount(row, minlength=rows)
    starts = np.zeros(rows, np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    slot = np.arange(len(row)) - starts[row]
    widest = int(counts.max(initial=m))
    cand_scores = np.full((rows, widest), -np.inf, dtype=scores.dtype)
    cand_classes = np.full((rows, widest), -1, dtype=np.int64)
    cand_scores[row, slot] = scores[row, cls]
    cand_classes[row, slot] = cls
    order = np.argsort(-cand_scores, axis=1, kind="stable")
    return np.take_along_axis(cand_scores, order, 1), np.take_along_axis(cand_classes, order, 1)


def _check_shape(predictions, num_classes=None):
    if not hasattr(predictions, "shape"):
        predictions = np.asarray(predictions)
    if len(predictions.shape) != 2:
        raise Yt8mError(f"predictions must be (videos, classes), got shape {predictions.shape}")
    if num_classes is not None and predictions.shape[1] != num_classes:
        raise Yt8mError(f"predictions have {predictions.shape[1]} classes, expected {num_classes}")
    return predictions


def _as_scores(chunk, first_row):
    """A chunk of predictions as float32 (float64 kept), refusing NaN."""
    chunk = np.asarray(chunk)
    if chunk.dtype != np.float64:
        chunk = chunk.astype(np.float32, copy=False)
    nan_rows = np.isnan(chunk).any(axis=1)
    if nan_rows.any():
        row = first_row + int(np.flatnonzero(nan_rows)[0])
        raise Yt8mError(f"predictions contain NaN (first in row {row})")
    return chunk


def _membership(classes, label_keys, num_classes):
    """Bool matrix: is (row, classes[row, j]) a true label? `label_keys` = row * C + class."""
    rows = np.arange(len(classes))[:, None]
    keys = rows * num_classes + classes
    if label_keys.size == 0:
        return np.zeros(classes.shape, bool)
    found = np.searchsorted(label_keys, keys).clip(max=label_keys.size - 1)
    return (label_keys[found] == keys) & (classes >= 0)


def _perr_sum(scores, hits, counts, from_logits):
    """Sum over videos of precision at equal recall, tied scores at the L-th place shared out."""
    valid = counts > 0
    if not valid.any():
        return 0.0
    scores, hits, counts = scores[valid], hits[valid], counts[valid]
    width = scores.shape[1]
    at = np.minimum(counts, width) - 1
    threshold = np.where(counts <= width, scores[np.arange(len(scores)), at], -np.inf)
    positive = scores > (-np.inf if from_logits else 0.0)
    above = scores > threshold[:, None]
    tied = scores == threshold[:, None]
    hits_above = (hits & positive & above).sum(axis=1)
    hits_tied = (hits & positive & tied).sum(axis=1)
    slots = counts - above.sum(axis=1)
    n_tied = np.maximum(tied.sum(axis=1), 1)
    share = np.where(slots > 0, slots * hits_tied / n_tied, 0.0)
    return float(((hits_above + share) / counts).sum())


def _expected_precision_sums(scores, hits, counts=None):
    """Per segment, the expected sum of precision at each hit, ranking by score within segments.

    Inputs are sorted by (segment, score descending); segment i is the next `counts[i]` items
    (None: one segment of all). Within a run of g tied scores holding h hits, preceded in its
    segment by R items and P hits, the item at offset o of the run is a hit with probability h/g
    and then has (P + 1 + o(h-1)/(g-1)) hits among the first R + o + 1 items. Work arrays are
    made a chunk at a time. Returns one float64 sum per segment, in segment order.
    """
    counts = np.array([len(scores)]) if counts is None else counts
    seg_first = np.cumsum(counts) - counts  # each segment's first position
    sums = np.zeros(len(counts))
    hits_at = np.zeros(len(counts))  # hits ranked before each segment's first item
    for begin, size, found, before in _tied_runs(scores, hits, seg_first):
        seg = np.searchsorted(seg_first, begin, side="right") - 1
        opens = begin == seg_first[seg]
        hits_at[seg[opens]] = before[opens]
        ranked = begin - seg_first[seg]  # R of each run
        prior = before - hits_at[seg]  # P of each run
        end = begin[-1] + size[-1]
        for lo in range(begin[0], end, _CHUNK_ITEMS):  # a run may be longer than a chunk
            position = np.arange(lo, min(lo + _CHUNK_ITEMS, end))
            run = np.searchsorted(begin, position, side="right") - 1
            g, h = size[run], found[run]
            offset = position - begin[run]
            spread = np.divide(offset * (h - 1), g - 1, out=np.zeros(len(run)), where=g > 1)
            terms = (h / g) * (prior[run] + 1 + spread) / (ranked[run] + offset + 1)
            s = seg[run]
            cut = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
            sums[s[cut]] += np.add.reduceat(terms, cut)
    return sums


def _tied_runs(scores, hits, seg_first):
    """The runs of tied scores within segments, in order, a chunk of items at a time.

    Yields (first position, size, hits, hits ranked before) arrays of the runs whose end was seen
    in that chunk (one run may span many chunks). Hit counts are float64.
    """
    n = len(scores)
    begin, before = 0, 0.0  # the open run: its first position and the hits ranked before it
    total = 0.0  # hits before the chunk
    for a in range(0, n, _CHUNK_ITEMS):
        b = min(a + _CHUNK_ITEMS, n)
        new = np.empty(b - a, bool)
        new[0] = a > 0 and scores[a] != scores[a - 1]
        np.not_equal(scores[a + 1 : b], scores[a : b - 1], out=new[1:])
        new[seg_first[(seg_first > 0) & (seg_first >= a) & (seg_first < b)] - a] = True
        cum = np.empty(b - a + 1)
        cum[0] = total
        np.cumsum(hits[a:b], out=cum[1:])
        cum[1:] += total
        starts = np.flatnonzero(new) + a
        if b == n:  # the end closes the open run
            starts = np.r_[starts, n]
        if starts.size:
            firsts = np.r_[begin, starts]
            ranked_hits = np.r_[before, cum[starts - a]]
            yield firsts[:-1], np.diff(firsts), np.diff(ranked_hits), ranked_hits[:-1]
            begin, before = starts[-1], ranked_hits[-1]
        total = cum[-1]
