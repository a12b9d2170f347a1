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

**Speed.** `update` reads each video's scores once: `yt8m.ranking` (compiled with Numba) finds
its candidates, every class at or above its max(k, L)-th best score, from a tree of block maxima
that stays in cache, and ranks them. It returns each video's top k (score, class, hit) and its
PERR, so no (videos x classes) temporary is made. The videos are split into one contiguous part
per thread, each ranked a chunk at a time. `result()` sorts the kept triplets once, as one
uint64 each (score key, class, hit), and walks them once: GAP's runs of tied scores and every
class's are contiguous in that order.

**Memory.** A kept triplet takes 7 bytes: its score as a uint32 key that orders and ties exactly
as the float32 scores do (a float64 score, 4 bytes more, for float64 input and in
`update_top_k`), its class as uint16 (int32 past 65,536 classes) and its hit as a bool. The
metrics depend on the scores only through their order and their ties, and both are those of the
input, so nothing is rounded. `update` holds `_CHUNK_ROWS` videos at a time in all threads
(a float32 copy of them for other dtypes, in one buffer per thread, and their top k).
`result()` adds 8 bytes per kept triplet, and the kept parts' concatenation the first time (1M
videos x top 20: 140 MB kept, 0.33 GB more at the peak); runs of tied scores are walked without
being expanded.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import Yt8mError

METRIC_NAMES = ("gap", "hit_at_one", "perr", "map")
_CHUNK_ROWS = 4096  # videos ranked at a time: 63 MB of float32 scores at 3862 classes
_THREADS = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1, 8)  # default threads ranking a chunk
_U64 = np.uint64


class Evaluator:
    """Streaming GAP@k, Hit@1, PERR and mAP over batches of predictions.

    Args:
        num_classes: width of the prediction matrix.
        top_k: classes kept per video (20 in the competitions).
        from_logits: predictions are logits, not probabilities. Ranking metrics are unchanged;
            PERR's "positive score" test becomes "finite logit" (sigmoid > 0).
        threads: threads ranking each chunk of videos (default: the usable cores, at most 8;
            the ranking reads memory about as fast as a few cores can).

    Example:
        >>> ev = Evaluator(num_classes=3862)
        >>> for scores, labels in batches:
        ...     ev.update(scores, labels)
        >>> ev.result()["gap"]
    """

    def __init__(self, num_classes, top_k=20, from_logits=False, threads=None):
        if num_classes < 1 or top_k < 1 or (threads is not None and threads < 1):
            raise ValueError("num_classes, top_k and threads must be positive")
        self.num_classes = int(num_classes)
        self.top_k = int(top_k)
        self.from_logits = bool(from_logits)
        self.threads = int(threads or _THREADS)
        self._class_dtype = np.uint16 if self.num_classes <= 1 << 16 else np.int32
        self.reset()

    def reset(self):
        self._scores, self._classes, self._hits = [], [], []
        self._positives = np.zeros(self.num_classes, np.int64)
        self._videos = 0
        self._hit1 = 0
        self._perr = 0.0

    @property
    def num_videos(self):
        return self._videos

    @property
    def kept_bytes(self):
        """Memory held by the kept top-k triplets (scores, classes, hits)."""
        return sum(a.nbytes for part in (self._scores, self._classes, self._hits) for a in part)

    def update(self, predictions, labels):
        """Add a batch: (videos, classes) scores and their labels (dense or label-id lists).

        The videos are split into `threads` contiguous parts, each ranked by its own thread a
        chunk at a time (labels, ranking and kept triplets), and added in order.
        """
        predictions = _check_shape(predictions, self.num_classes)
        rows = len(predictions)
        if isinstance(labels, np.ndarray) and labels.ndim == 2:
            if labels.shape != predictions.shape:
                raise Yt8mError(
                    f"labels have shape {labels.shape}, predictions {predictions.shape}"
                )
        else:
            labels = labels if isinstance(labels, (list, np.ndarray)) else list(labels)
            if len(labels) != rows:
                raise Yt8mError(f"{len(labels)} label lists for {rows} videos")
        bounds = np.linspace(0, rows, min(self.threads, max(rows, 1)) + 1).astype(int).tolist()
        chunk = max(_CHUNK_ROWS // (len(bounds) - 1), 1)  # rows in flight: _CHUNK_ROWS in all

        def rank(lo, hi):
            """The part's label counts, Hit@1 and PERR sums (added up as it goes, so a part
            holds one count per class however many chunks it has) and its kept triplets."""
            buffer = _conversion_buffer(predictions, min(chunk, hi - lo))
            positives, hit1, perr, kept = np.zeros(self.num_classes, np.int64), 0, 0.0, []
            for start in range(lo, hi, chunk):
                counts, hits, precision, *triplets = self._rank_chunk(
                    predictions, labels, start, min(start + chunk, hi), buffer)
                positives += counts
                hit1 += hits
                perr += precision
                kept.append(triplets)
            return positives, hit1, perr, kept

        if len(bounds) == 2:
            parts = [rank(0, rows)]
        else:
            with ThreadPoolExecutor(len(bounds) - 1) as pool:
                futures = [pool.submit(rank, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
                parts = [future.result() for future in futures]  # the first part's error first
        for positives, hit1, perr, kept in parts:
            self._positives += positives
            self._hit1 += hit1
            self._perr += perr
            for triplets in kept:
                for kept_parts, array in zip((self._scores, self._classes, self._hits),
                                             triplets):
                    kept_parts.append(array)
        self._videos += rows

    def _rank_chunk(self, predictions, labels, start, stop, buffer):
        """One chunk's label counts, Hit@1 and PERR sums and kept (scores, classes, hits), each
        video's candidates ranked by `_rank_rows` (thread-safe: reads `self` only)."""
        offsets, flat = label_csr(labels[start:stop], stop - start, self.num_classes)
        if buffer is None:
            scores = predictions[start:stop]
        else:
            scores = buffer[: stop - start]
            np.copyto(scores, predictions[start:stop], casting="unsafe")
        scores, classes, hits, perr = _rank_rows(scores, offsets, flat, self.top_k,
                                                 self.from_logits, start)
        return (np.bincount(flat, minlength=self.num_classes),
                int(np.count_nonzero(hits[:, 0])) if hits.size else 0, float(perr.sum()),
                *self._kept_form(scores.reshape(-1), classes.reshape(-1), hits.reshape(-1)))

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
        """Accumulate one chunk of per-video candidates: (videos, W) arrays sorted best first.

        Candidates must include every class scoring at least the video's max(k, L)-th best score;
        padding has class -1 and score -inf, and keeps its place in the ranking.
        """
        scores, classes = np.asarray(scores), np.asarray(classes)
        num_rows = len(scores)
        counts = np.diff(offsets)
        listed = classes >= 0
        rows, ranks = np.nonzero(listed)
        scores, classes = scores[listed], classes[listed]
        label_keys = np.repeat(np.arange(num_rows), counts) * self.num_classes + flat
        hits = _membership(rows * self.num_classes + classes, label_keys)
        self._count_labels(num_rows, flat)
        if num_rows == 0:
            return
        self._hit1 += int(np.count_nonzero(hits[ranks == 0]))
        self._perr += _perr_of_listed(rows, ranks, scores, hits, counts, self.from_logits)
        keep = ranks < self.top_k
        self._keep(scores[keep], classes[keep], hits[keep])

    def _count_labels(self, num_rows, flat):
        self._positives += np.bincount(flat, minlength=self.num_classes)
        self._videos += num_rows

    def _keep(self, scores, classes, hits):
        for parts, array in zip((self._scores, self._classes, self._hits),
                                self._kept_form(scores, classes, hits)):
            parts.append(array)

    def _kept_form(self, scores, classes, hits):
        """Triplets as kept: float32 scores as their `_ScoreCode` keys (uint32), others as
        float64; classes as `_class_dtype`."""
        if scores.dtype == np.float32:
            scores = _ScoreCode(scores).encode(scores)
        elif scores.dtype != np.uint32:
            scores = scores.astype(np.float64, copy=False)
        return scores, classes.astype(self._class_dtype, copy=False), hits

    def result(self):
        """Return {"gap", "hit_at_one", "perr", "map", "videos"} over everything added so far."""
        if self._videos == 0:
            return {name: 0.0 for name in METRIC_NAMES} | {"videos": 0}
        gap_sum, aps = self._precision_sums()
        total = int(self._positives.sum())
        gap_value = float(gap_sum / total) if total else 0.0
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
        return self._precision_sums()[1]

    def _precision_sums(self):
        """GAP's sum of precision at its hits, and each class's AP (NaN without positives).

        The kept triplets are sorted once as uint64s (score key, class, hit) and walked once
        (`yt8m.ranking.precision_sums`).
        """
        from .ranking import precision_sums

        scores, classes, hits = self._kept()
        triplets = _score_keys(scores).astype(_U64)
        triplets <<= _U64(31)
        triplets |= classes.view(np.uint32) if classes.dtype == np.int32 else classes
        triplets <<= _U64(1)
        triplets |= hits
        triplets.sort()
        gap_sum, sums = precision_sums(triplets, self.num_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return gap_sum, np.where(self._positives > 0, sums / self._positives, np.nan)

    def _kept(self):
        """All kept triplets as three flat arrays, in the order they were added: scores (uint32
        keys of float32 scores, or float64 scores when any were), classes and hits.

        They are kept as one part from then on, so the next call concatenates nothing.
        """
        if len(self._scores) != 1:
            if not self._scores:
                return np.zeros(0, np.uint32), np.zeros(0, self._class_dtype), np.zeros(0, bool)
            if any(part.dtype == np.float64 for part in self._scores):
                self._scores = [part if part.dtype == np.float64
                                else _flip(part.copy()).view(np.float32).astype(np.float64)
                                for part in self._scores]
            merged = [_concatenate_popping(parts)
                      for parts in (self._scores, self._classes, self._hits)]
            self._scores, self._classes, self._hits = ([part] for part in merged)
        return self._scores[0], self._classes[0], self._hits[0]


class _ScoreCode:
    """Scores as uint32 keys ordering them best first, equal for equal scores (-0.0 and 0.0).

    float32 scores map their bits (the map is its own inverse). Other scores (float64) map to
    their rank among the `values` the code was made from, which must hold every score encoded.
    """

    def __init__(self, values):
        self._table = None if values.dtype == np.float32 else np.unique(values)

    def encode(self, scores):
        if self._table is None:
            return _flip((scores + np.float32(0)).view(np.uint32))  # + 0 turns -0.0 into 0.0
        return (len(self._table) - 1 - self._table.searchsorted(scores)).astype(np.uint32)

    def decode(self, keys):
        if self._table is None:
            return _flip(keys.copy()).view(np.float32)
        return self._table[len(self._table) - 1 - keys.astype(np.int64)]

    def kept(self, keys):
        """What a kept triplet holds for its score: the key itself for float32 scores (4 bytes
        that order and tie as the scores do), the score for others."""
        return keys if self._table is None else self.decode(keys)


def _flip(bits):
    """float32 bits mapped to uint32 ordering them best first (the map is its own inverse):
    the bits of a positive float are reversed below the sign bit; negative floats already sort
    after positive ones as uint32, larger magnitudes later. Changes `bits` in place."""
    bits = bits.view(np.int32)
    reverse = ~bits
    reverse >>= 31  # all ones (an arithmetic shift) where the sign bit is clear
    reverse &= 0x7FFFFFFF
    bits ^= reverse
    return bits.view(np.uint32)


def _score_keys(kept):
    """The `_ScoreCode` keys of kept scores (uint32 keys already, or float64 scores)."""
    return kept if kept.dtype == np.uint32 else _ScoreCode(kept).encode(kept)


def _conversion_buffer(predictions, rows):
    """A (rows, C) float32 (float64 for float64 input) array to rank chunks of `predictions` in,
    or None where they can be ranked as they are (a C-contiguous float32 or float64 ndarray).
    One per thread, reused chunk after chunk: memory stays one chunk per thread whatever the
    allocator keeps."""
    dtype = np.float64 if getattr(predictions, "dtype", None) == np.float64 else np.float32
    if (isinstance(predictions, np.ndarray) and predictions.dtype == dtype
            and predictions.flags.c_contiguous):
        return None
    return np.empty((rows, predictions.shape[1]), dtype)


def _rank_rows(scores, offsets, flat, top_k, from_logits, first_row):
    """Each video's min(top_k, C) best (score, class, hit), best first, and its precision at
    equal recall, from `yt8m.ranking.rank_rows` (which releases the GIL). `scores` are
    C-contiguous float32 or float64."""
    from .ranking import BLOCKS, COUNTING_MOST, rank_rows

    dtype = scores.dtype
    rows, num_classes = scores.shape
    k = min(top_k, num_classes)
    top = (np.empty((rows, k), dtype), np.empty((rows, k), np.int64), np.empty((rows, k), bool))
    perr = np.empty(rows)
    bad = rank_rows(scores, offsets, flat, top_k, from_logits, *top, perr, BLOCKS,
                    COUNTING_MOST)
    if bad >= 0:
        raise Yt8mError(f"predictions contain NaN (first in row {first_row + bad})")
    return *top, perr


def _perr_of_listed(rows, ranks, scores, hits, counts, from_logits):
    """Sum over videos of precision at equal recall from (video, rank) listed candidates.

    A video's L-th best score is -inf when fewer than L classes are listed.
    """
    labeled = counts.nonzero()[0]
    if not labeled.size:
        return 0.0
    at = ranks == counts[rows] - 1
    threshold = np.full(len(counts), -np.inf)
    threshold[rows[at]] = scores[at]
    cut = threshold[rows]
    above, tied = scores > cut, scores == cut
    good = hits & (scores > (-np.inf if from_logits else 0.0))

    def per_video(mask):
        return np.bincount(rows[mask], minlength=len(counts))[labeled]

    return _perr_total(counts[labeled], per_video(above), per_video(tied),
                       per_video(good & above), per_video(good & tied))


def _perr_total(counts, above, tied, hits_above, hits_tied):
    """Sum of precision at equal recall over videos with `counts` (L > 0) labels.

    Per video: `above` scores beat its L-th best score and `tied` equal it; the `slots` places
    of the top L left after those above go to the tied scores, so each tied hit is in the top L
    `slots / tied` of the time.
    """
    slots = counts - above
    share = np.where(slots > 0, slots * hits_tied / np.maximum(tied, 1), 0.0)
    return float(((hits_above + share) / counts).sum())


def _concatenate_popping(parts):
    """One array of the list's arrays, emptying the list as it goes (peak: the parts + one)."""
    out = np.empty(sum(len(p) for p in parts), np.result_type(*parts))
    at = 0
    while parts:
        part = parts.pop(0)
        out[at : at + len(part)] = part
        at += len(part)
    return out


def _membership(keys, label_keys):
    """Is each key (row * C + class) among the sorted `label_keys`?"""
    if label_keys.size == 0:
        return np.zeros(keys.shape, bool)
    found = np.searchsorted(label_keys, keys).clip(max=label_keys.size - 1)
    return label_keys[found] == keys


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
    else:
        rows, flat = _label_lists(labels, num_videos, num_classes)
    offsets = np.zeros(num_videos + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=num_videos), out=offsets[1:])
    return offsets, flat.astype(np.int64)


def _label_lists(labels, num_videos, num_classes):
    """(rows, class ids) of a sequence of id lists, sorted and de-duplicated per video."""
    if len(labels) != num_videos:
        raise Yt8mError(f"{len(labels)} label lists for {num_videos} videos")
    labels = list(labels)
    counts = np.fromiter(map(len, labels), np.int64, num_videos)
    if not counts.sum():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    flat = _concatenate_ids(labels)
    if flat.size != counts.sum():
        raise Yt8mError("each video's labels must be a flat sequence of class ids")
    if flat.min() < 0 or flat.max() >= num_classes:
        bad = int(flat[(flat < 0) | (flat >= num_classes)][0])
        raise Yt8mError(f"label id {bad} is outside [0, {num_classes})")
    keys = np.repeat(np.arange(num_videos), counts) * num_classes + flat
    if (keys[1:] <= keys[:-1]).any():  # not sorted and unique within each video
        keys.sort()
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    return keys // num_classes, keys % num_classes


def _concatenate_ids(labels):
    """All the id lists' ids as one int64 array.

    Arrays of one integer dtype (the feature cache's label lists are) are joined as bytes,
    about twice as fast as `np.concatenate` for many short arrays.
    """
    try:
        dtypes = {ids.dtype for ids in labels}
        if len(dtypes) == 1 and np.issubdtype(next(iter(dtypes)), np.integer):
            data = b"".join(map(np.ndarray.tobytes, labels))
            return np.frombuffer(data, next(iter(dtypes))).astype(np.int64)
    except (AttributeError, TypeError):  # lists, or objects that are not arrays
        pass
    return np.concatenate(labels, axis=None, dtype=np.int64, casting="unsafe")


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
