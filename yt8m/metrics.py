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

**Speed.** NumPy has no fast per-row selection: a per-row partition, sort or threshold costs
several passes over the scores. `update` instead compares a chunk of videos with a single
threshold, a low quantile of the previous chunk's max(k, L)-th best scores: one pass, after
which every video with at least max(k, L) scores not below the threshold has all its
candidates (every class at or above its max(k, L)-th best score). The few others (about
`_THRESHOLD_QUANTILE` of them) get theirs from a partition. The threshold decides how much work
is done, never the result. A chunk's candidates are then sorted through one integer key each
(video, score, class, hit), and the true labels are looked up from the labels' side, a few per
video. `result()` looks only at the true triplets: the others add nothing to a sum, they only
count in the ranks of the true ones, which sorts of one integer key per kept triplet give.

**Memory.** A kept triplet takes 7 bytes: its score as a uint32 key that orders and ties exactly
as the float32 scores do (a float64 score, 4 bytes more, for float64 input and in
`update_top_k`), its class as uint16 (int32 past 65,536 classes) and its hit as a bool. The
metrics depend on the scores only through their order and their ties, and both are those of the
input, so nothing is rounded. `update` holds one chunk at a time: a float32 copy of it for other
dtypes, a byte per score of `_SCAN_ROWS` videos, a bit per score, and the chunk's candidates.
`result()` adds at most 13 bytes per kept triplet (1M videos x top 20: 140 MB kept, 0.26 GB
more) and expands runs of tied scores `_CHUNK_ITEMS` items at a time.
"""

import numpy as np

from .errors import Yt8mError

METRIC_NAMES = ("gap", "hit_at_one", "perr", "map")
_CHUNK_ROWS = 4096  # videos ranked at a time: 63 MB of float32 scores at 3862 classes
_SCAN_ROWS = 256  # videos compared with the threshold at a time (a multiple of 64)
_SAMPLE_ROWS = 32  # videos whose exact candidates set the first chunk's threshold
_THRESHOLD_QUANTILE = 1 / 512  # share of a chunk's videos expected below the next threshold
_MOST_TAKEN = 2.0  # candidates per needed class beyond which videos get thresholds of their own
_BLOCKS = 3  # blocks per needed class, at least, for the per-video thresholds
_CHUNK_ITEMS = 1 << 17  # tied items expanded at a time in `result()`
_U64 = np.uint64


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
        scan = _Scan(self.num_classes)
        for start in range(0, len(predictions), scan.rows):
            stop = min(start + scan.rows, len(predictions))
            if dense:
                sub_offsets, sub_flat = label_csr(
                    labels[start:stop], stop - start, self.num_classes
                )
            else:
                sub_offsets = offsets[start : stop + 1] - offsets[start]
                sub_flat = flat[offsets[start] : offsets[stop]]
            chunk = _Chunk(predictions[start:stop], sub_offsets, sub_flat, self.top_k)
            self._add_ranked(scan.rank(chunk, start), chunk)

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

    def _add_ranked(self, ranked, chunk):
        """Accumulate one chunk's candidates ranked by `_Scan.rank`."""
        self._count_labels(chunk.num_rows, chunk.flat)
        self._hit1 += ranked.first_hits()
        self._perr += _perr_of_ranked(ranked, chunk, self.from_logits)
        self._keep(*ranked.top(min(self.top_k, self.num_classes)))

    def _count_labels(self, num_rows, flat):
        self._positives += np.bincount(flat, minlength=self.num_classes)
        self._videos += num_rows

    def _keep(self, scores, classes, hits):
        """Keep triplets; float32 scores as their `_ScoreCode` keys (uint32), others as float64."""
        if scores.dtype == np.float32:
            scores = _ScoreCode(scores).encode(scores)
        elif scores.dtype != np.uint32:
            scores = scores.astype(np.float64, copy=False)
        self._scores.append(scores)
        self._classes.append(classes.astype(self._class_dtype, copy=False))
        self._hits.append(hits)

    def result(self):
        """Return {"gap", "hit_at_one", "perr", "map", "videos"} over everything added so far."""
        if self._videos == 0:
            return {name: 0.0 for name in METRIC_NAMES} | {"videos": 0}
        scores, classes, hits = self._kept()
        key = _score_keys(scores)
        total = int(self._positives.sum())
        gap_sum = _precision_sums(np.sort(key), np.sort(key[hits]))[0]
        gap_value = float(gap_sum / total) if total and len(scores) else 0.0
        aps = self._average_precisions(key, classes, hits)
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
        scores, classes, hits = self._kept()
        return self._average_precisions(_score_keys(scores), classes, hits)

    def _average_precisions(self, key, classes, hits):
        """Per-class APs from the triplets' score keys, ranked within each class.

        A uint64 per triplet, class above score key, sorts the triplets by class and score.
        Only the triplets ranked at or above the last hit of their class are sorted: the others
        are in no hit's rank.
        """
        hit_keys = _grouped(classes[hits], key[hits])
        hit_keys.sort()
        sums = np.zeros(self.num_classes)
        if hit_keys.size:
            ranked = key < _past_worst_hits(hit_keys, self.num_classes)[classes]
            grouped = classes[ranked].astype(_U64)
            grouped <<= _U64(32)
            grouped |= key[ranked]
            grouped.sort()
            sums = _precision_sums(grouped, hit_keys, self.num_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._positives > 0, sums / self._positives, np.nan)

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


class _Chunk:
    """A chunk of predictions (float32, or float64 kept) and its labels as CSR.

    `need` is each video's max(k, L) (at most the number of classes); `label_rows` and
    `positions` locate its labels in the chunk (video, and video * classes + class).
    """

    def __init__(self, predictions, offsets, flat, top_k):
        scores = np.asarray(predictions)
        if scores.dtype != np.float64:
            scores = scores.astype(np.float32, copy=False)
        self.scores = np.ascontiguousarray(scores)
        self.num_rows, self.num_classes = self.scores.shape
        self.flat = flat
        self.counts = np.diff(offsets)
        self.need = self.counts.clip(top_k, self.num_classes)
        self.label_rows = np.arange(self.num_rows).repeat(self.counts)
        self.positions = self.label_rows * self.num_classes + flat


class _Scan:
    """Ranks each chunk's candidates, with one threshold comparison per chunk.

    A video's candidates are the classes scoring at least its `need`-th best score, ties
    included. Every class not below the threshold t is taken; a video with at least `need` of
    them has them all, since its `need`-th best score is then t or more. The others get the
    rest of theirs from a partition. t starts as the lowest `need`-th best score of the first
    chunk's first `_SAMPLE_ROWS` videos and is then a low quantile of the previous chunk's.

    When the videos' score levels differ widely (a model's confident and unsure videos), one t
    low enough for all takes far too many classes of most. A chunk where t would take more than
    `_MOST_TAKEN` times the needed classes of its first `_SAMPLE_ROWS` videos instead compares
    each video with a threshold of its own (`_block_bounds`): about three times the cost of one
    comparison, whatever the spread of levels. (Such a threshold never leaves a video short.)
    """

    def __init__(self, num_classes):
        self.num_classes = num_classes
        self.class_bits = max(1, (num_classes - 1).bit_length())
        self.rows = min(_CHUNK_ROWS, 1 << (31 - self.class_bits))  # videos fit in the key
        self.threshold = None
        self._mask = np.empty(-(-_SCAN_ROWS * num_classes // 64) * 64, bool)

    def rank(self, chunk, first_row):
        """The chunk's candidates as a `_Ranked`; sets the threshold for the next chunk."""
        if self.threshold is None:
            self.threshold = _sample_threshold(chunk, first_row)
        sample = chunk.scores[:_SAMPLE_ROWS]
        taken = np.count_nonzero(~(sample < self.threshold))  # NaN counts, as it will be taken
        own = taken > _MOST_TAKEN * chunk.need[:_SAMPLE_ROWS].sum()
        position, scores, bitset = self._not_below(chunk, None if own else self.threshold)
        if scores.size and np.isnan(scores.max()):  # NaN is never below a threshold
            raise _nan_error(first_row + int(position[np.isnan(scores)][0]) // self.num_classes)
        counts = self._counts(position, chunk.num_rows)
        short = (counts < chunk.need).nonzero()[0]
        if short.size:
            rest, rest_scores = _candidates_below(chunk, short, self.threshold)
            at = position.searchsorted(rest)
            position, scores = np.insert(position, at, rest), np.insert(scores, at, rest_scores)
            counts = self._counts(position, chunk.num_rows)
            np.bitwise_or.at(bitset, rest >> 6, _U64(1) << (rest & 63).astype(_U64))
        ranked = _Ranked(position, scores, counts, chunk, self.class_bits, bitset)
        self.threshold = _low_quantile(ranked.scores(ranked.starts + chunk.need - 1))
        return ranked

    def _counts(self, position, num_rows):
        """Candidates per video, from their sorted positions."""
        ends = position.searchsorted(np.arange(1, num_rows + 1) * self.num_classes)
        ends[1:] -= ends[:-1].copy()
        return ends

    def _not_below(self, chunk, threshold):
        """Sorted positions (video * C + class) and scores of the chunk's scores not below the
        `threshold` (NaN included; None: each video's `_block_bounds`), and the same as a
        bitset (bit p % 64 of word p // 64 set for each position p).

        The comparison writes a byte per score, `_SCAN_ROWS` videos at a time into a buffer
        that stays in cache, packed to bits; read 64 at a time, only the words holding a
        candidate are looked at.
        """
        most = int(chunk.need.max())
        bitsets = []
        for lo in range(0, chunk.num_rows, _SCAN_ROWS):
            part = chunk.scores[lo : lo + _SCAN_ROWS]
            mask = self._mask[: -(-part.size // 64) * 64]
            bound = _block_bounds(part, most)[:, None] if threshold is None else threshold
            np.less(part, bound, out=mask[: part.size].reshape(part.shape))
            mask[part.size :] = True  # parts but the last are a multiple of 64 scores
            bitsets.append(~np.packbits(mask, bitorder="little").view(_U64))
        bitset = np.concatenate(bitsets)
        position = _set_bits(bitset)
        return position, chunk.scores.reshape(-1)[position], bitset


def _set_bits(words):
    """Sorted indices of the set bits of uint64 words (bit i of word w is index 64w + i).

    Each nonzero word gives its lowest set bit; the few words with more bits left go round
    again, so each round costs only the words still in play.
    """
    word = (words != 0).nonzero()[0]  # of a bool array: NumPy's fast path
    bits = words[word]
    count = np.bitwise_count(bits)
    at = count.cumsum(dtype=np.int64)  # where each word's indices end
    out = np.empty(int(at[-1]) if at.size else 0, np.int64)
    at -= count
    base = word << 6
    more = (count > 1).nonzero()[0]
    while True:
        lowest = bits & -bits
        out[at] = np.bitwise_count(lowest - _U64(1)) + base
        if not more.size:
            return out
        bits = (bits ^ lowest)[more]
        base, at = base[more], at[more] + 1
        more = (bits & (bits - _U64(1)) != 0).nonzero()[0]


class _Ranked:
    """A chunk's candidates sorted by video, score (best first) and class: one uint64 each.

    The key holds, from the top: the video, the score's `_ScoreCode` key (32 bits), the class
    and, in the lowest bit, whether the class is a true label of the video. `keys` are sorted;
    `starts` is each video's first place in them. `label_scores` is each label's score if it
    is a candidate, -inf if not.
    """

    def __init__(self, position, scores, counts, chunk, class_bits, bitset):
        self._code = _ScoreCode(scores)
        self._score_shift = _U64(1 + class_bits)
        self._class_mask = _U64((1 << class_bits) - 1)
        row_shift = 33 + class_bits
        # video << (33 + b) | class << 1 is 2 * position + video * (2 ** (33 + b) - 2 * C)
        row_step = _U64((1 << row_shift) - 2 * chunk.num_classes)
        rows = np.arange(chunk.num_rows)
        keys = position.view(_U64) << _U64(1)
        keys += (rows.view(_U64) * row_step).repeat(counts)
        score_keys = self._code.encode(scores).astype(_U64)
        score_keys <<= self._score_shift
        keys += score_keys
        self.label_scores, hits = _label_scores(position, scores, bitset, chunk.positions)
        keys[hits] |= _U64(1)
        width = int(counts.max(initial=0))
        starts = counts.cumsum()
        starts -= counts
        self._table = None
        if chunk.num_rows * width <= 2 * keys.size:  # a short sort per video, as a table
            padding = (rows.view(_U64) << _U64(row_shift)) | _U64((1 << row_shift) - 1)
            table = padding.repeat(width).reshape(chunk.num_rows, width)  # sorts last in its row
            table[np.arange(width) < counts[:, None]] = keys
            table.sort(axis=1)
            self.keys, self.starts, self._table = table.reshape(-1), rows * width, table
        else:
            keys.sort()
            self.keys, self.starts = keys, starts

    def top(self, k):
        """(scores, classes, hits) of every video's k best candidates (each video has k)."""
        if self._table is not None:
            keys = self._table[:, :k].reshape(-1)
        else:
            keys = self.keys[(self.starts[:, None] + np.arange(k)).reshape(-1)]
        return (self._code.kept(self._score_keys(keys)), (keys >> _U64(1)) & self._class_mask,
                (keys & _U64(1)) != 0)

    def first_hits(self):
        """How many videos' best candidate is a true label."""
        return int(np.count_nonzero(self.keys[self.starts] & _U64(1)))

    def scores(self, index):
        return self._code.decode(self._score_keys(self.keys[index]))

    def _score_keys(self, keys):
        return ((keys >> self._score_shift) & _U64(0xFFFFFFFF)).astype(np.uint32)

    def tie_extent(self, index):
        """First and past-the-last places of the run of tied scores holding each place."""
        prefix = self.keys[index] >> self._score_shift  # video and score
        return (self.keys.searchsorted(prefix << self._score_shift),
                self.keys.searchsorted((prefix + _U64(1)) << self._score_shift))


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


def _grouped(classes, key):
    """One uint64 per triplet: its class above its score key."""
    grouped = classes.astype(_U64)
    grouped <<= _U64(32)
    grouped |= key
    return grouped


def _past_worst_hits(hit_keys, num_classes):
    """Per class, one more than the score key of its worst-ranked hit (0 for classes without
    hits), from the hits' sorted (class, score key) uint64s. No key is 2 ** 32 - 1 (a NaN's)."""
    hit_classes = (hit_keys >> _U64(32)).astype(np.int64)
    last = np.flatnonzero(np.r_[hit_classes[1:] != hit_classes[:-1], True])
    past = np.zeros(num_classes, np.uint32)
    past[hit_classes[last]] = (hit_keys[last] & _U64(0xFFFFFFFF)) + _U64(1)
    return past


def _block_bounds(scores, need):
    """Per video, a lower bound of its `need`-th best score: the `need`-th best of the maxima
    of at least `_BLOCKS * need` disjoint blocks of its scores (NaN if it has a NaN).

    Blocks are strided (class j is in block j % B), so that their maxima come from halving
    the row: B * 2 ** s classes, then the rest as one more block.
    """
    num_rows, num_classes = scores.shape
    halvings = int(np.log2(num_classes / (_BLOCKS * need))) if num_classes > _BLOCKS * need else 0
    blocks = num_classes >> halvings
    if halvings == 0 or blocks < need:
        return np.full(num_rows, -np.inf, scores.dtype)
    width = blocks << halvings
    half = width // 2
    maxima = np.maximum(scores[:, :half], scores[:, half:width])
    while half > blocks:
        half //= 2
        np.maximum(maxima[:, :half], maxima[:, half : 2 * half], out=maxima[:, :half])
    maxima = maxima[:, :blocks]
    if width < num_classes:
        rest = scores[:, width:].max(axis=1, keepdims=True)
        maxima = np.concatenate([maxima, rest], axis=1)
    at = maxima.shape[1] - need
    return np.partition(maxima, at, axis=1)[:, at]


def _sample_threshold(chunk, first_row):
    """The lowest max(k, L)-th best score of the chunk's first `_SAMPLE_ROWS` videos."""
    need, num_classes = int(chunk.need.max()), chunk.num_classes
    if need >= num_classes:
        return -np.inf
    sample = np.partition(chunk.scores[:_SAMPLE_ROWS], num_classes - need, axis=1)
    threshold = sample[:, num_classes - need].min()
    if np.isnan(threshold):
        raise _nan_error(first_row + int(np.isnan(chunk.scores).any(axis=1).nonzero()[0][0]))
    return threshold


def _nan_error(row):
    return Yt8mError(f"predictions contain NaN (first in row {row})")


def _candidates_below(chunk, rows, threshold):
    """Sorted positions, and scores, of the candidates of `rows` that score below `threshold`."""
    part = chunk.scores[rows]
    at = part.shape[1] - int(chunk.need[rows].max())
    bound = np.partition(part, at, axis=1)[:, at]
    row, cls = np.nonzero((part >= bound[:, None]) & (part < threshold))
    return rows[row] * chunk.num_classes + cls, part[row, cls]


def _label_scores(position, scores, bitset, labels):
    """Each label's score if it is a candidate (-inf if not), and the candidates' places that
    are labels. `position` (sorted), its `bitset` and `labels` are places in the chunk (video *
    C + class): the bitset tells which labels are candidates, a search where they are.
    """
    found = ((bitset[labels >> 6] >> (labels & 63).astype(_U64)) & _U64(1)).nonzero()[0]
    at = position.searchsorted(labels[found])
    label_scores = np.full(len(labels), -np.inf, scores.dtype)
    label_scores[found] = scores[at]
    return label_scores, at


def _low_quantile(values):
    """The `_THRESHOLD_QUANTILE` quantile of the values (the lowest one for few values)."""
    at = int(len(values) * _THRESHOLD_QUANTILE)
    return np.partition(values, at)[at]


def _perr_of_ranked(ranked, chunk, from_logits):
    """Sum over a chunk's videos of precision at equal recall (see `_perr_total`).

    The places above and tied with each labeled video's L-th best score come from its run of
    ties; the true labels among them from the labels' own scores.
    """
    labeled = chunk.counts.nonzero()[0]
    if not labeled.size:
        return 0.0
    counts = chunk.counts[labeled]
    at = ranked.starts[labeled] + counts - 1
    first, end = ranked.tie_extent(at)
    threshold = np.zeros(chunk.num_rows, chunk.scores.dtype)
    threshold[labeled] = ranked.scores(at)
    cut = threshold[chunk.label_rows]
    score = ranked.label_scores
    good = score > (-np.inf if from_logits else 0.0)

    def per_video(mask):
        return np.bincount(chunk.label_rows[mask], minlength=chunk.num_rows)[labeled]

    return _perr_total(counts, first - ranked.starts[labeled], end - first,
                       per_video(good & (score > cut)), per_video(good & (score == cut)))


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


def _precision_sums(keys, hit_keys, num_groups=1):
    """Per group, the expected sum of precision at each hit, ranking by score within groups.

    `keys` are items' score keys (`_ScoreCode`), sorted; as uint64 they carry a group (a class)
    in their upper 32 bits, as uint32 there is one group. They must include every item ranked
    at or above a hit of its group. `hit_keys` are the hits' keys, sorted. Items that are not
    hits add nothing but their place, so only the runs of tied keys holding a hit are looked
    at; their first place within the group and the hits ranked before them come from binary
    searches.
    """
    if hit_keys.size == 0:
        return np.zeros(num_groups)
    first = np.flatnonzero(np.r_[True, hit_keys[1:] != hit_keys[:-1]])
    tied = hit_keys[first]
    found = np.diff(np.r_[first, len(hit_keys)])
    begin = keys.searchsorted(tied, side="left")
    size = keys.searchsorted(tied, side="right") - begin
    if keys.dtype == _U64:
        group_first = tied >> _U64(32) << _U64(32)
        group = (tied >> _U64(32)).astype(np.int64)
        begin -= keys.searchsorted(group_first, side="left")
        first -= hit_keys.searchsorted(group_first, side="left")
    else:
        group = np.zeros(len(tied), np.int64)
    return _tied_run_sums(begin, size, found.astype(np.float64), first.astype(np.float64),
                          group, num_groups)


def _tied_run_sums(ranked, size, found, prior, group, num_groups):
    """Per group, the sum over runs of tied items of their expected precisions at hits.

    A run of g tied items holding h hits, preceded in its group by R items and P hits: the item
    at offset o of the run is a hit with probability h/g and then has (P + 1 + o(h-1)/(g-1))
    hits among the first R + o + 1 items. Runs are expanded `_CHUNK_ITEMS` items at a time
    (a run may be longer than that).
    """
    sums = np.zeros(num_groups)
    end = np.cumsum(size)
    for lo in range(0, int(end[-1]), _CHUNK_ITEMS):
        position = np.arange(lo, min(lo + _CHUNK_ITEMS, int(end[-1])))
        run = np.searchsorted(end, position, side="right")
        g, h = size[run], found[run]
        offset = position - (end[run] - g)
        spread = np.divide(offset * (h - 1), g - 1, out=np.zeros(len(run)), where=g > 1)
        terms = (h / g) * (prior[run] + 1 + spread) / (ranked[run] + offset + 1)
        sums += np.bincount(group[run], weights=terms, minlength=num_groups)
    return sums


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
