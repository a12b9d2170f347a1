"""Each video's best classes, ranked in one read of its scores (compiled with Numba).

`rank_rows` is the per-video half of `yt8m.metrics.Evaluator.update`: for every row of a score
matrix it finds the classes scoring at least the row's max(k, L)-th best score (L: its number of
true labels), ranks them best first (ties: lowest class id first) and writes what the metrics
need: the top k (score, class, hit) triplets and the row's precision at equal recall.

NumPy has no per-row selection that reads a row once: a partition, a sort or a threshold search
each costs several passes over the matrix. Here a row is read from memory once, by the first
step of a tree of pairwise maxima that stays in cache:

1. **Block maxima.** Halving the row until `BLOCKS` values remain gives the maximum of each
   strided block (class j is in block j % `BLOCKS`, about 15 classes each at 3,862 classes).
   NaN is carried up the tree, so a row with a NaN shows it among the maxima.
2. **A bound.** A value reached by at least max(k, L) block maxima is at most the row's
   max(k, L)-th best score (each of those blocks holds a score at least that high). A bisection
   between the maxima's bounds, counting the maxima above each guess, finds one a little below
   the max(k, L)-th best maximum.
3. **Candidates.** Only the blocks whose maximum reaches the bound are read again (from cache),
   a few dozen classes; every class at or above the bound is a candidate, so every class at or
   above the max(k, L)-th best score is one, ties included.
4. **Ranking.** The candidates are sorted by score and class (insertion for the usual few
   dozen, a stable merge sort when ties make many).

The bound decides only how many candidates are sorted, never the result.
"""

import numba
import numpy as np

BLOCKS = 256  # block maxima per row: the bound's resolution
INSERTION_MOST = 64  # candidates sorted by insertion; more (ties) by a merge sort
_BISECTIONS = 16  # most bisection steps for the bound
_SLACK = 4  # blocks beyond max(k, L) that may reach the bound when the bisection stops


@numba.njit(nogil=True, cache=True, inline="always")
def _max_keep_nan(u, v):
    return u if (u > v) or (u != u) else v


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _block_maxima(x, tree, blocks):
    """Row `x`'s strided block maxima (NaN if the block holds one) as the first `blocks` of one
    of the two rows of `tree`, which the halvings use as scratch."""
    num_classes = x.shape[0]
    half = tree.shape[1]
    first = tree[0]
    for j in range(num_classes - half):
        first[j] = _max_keep_nan(x[j], x[j + half])
    for j in range(max(num_classes - half, 0), min(half, num_classes)):
        first[j] = x[j]
    for j in range(num_classes, half):
        first[j] = -np.inf
    side = 0
    while half > blocks:
        half //= 2
        source, target = tree[side], tree[1 - side]
        for j in range(half):
            target[j] = _max_keep_nan(source[j], source[j + half])
        side = 1 - side
    return tree[side, :blocks]


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _bound(maxima, need, typed):
    """A value at most the `need`-th largest of `maxima` (none NaN), close to it: bisection
    between the smallest maximum above -inf and the largest, keeping the guess that at least
    `need` maxima reach. Guesses are rounded to the maxima's dtype (through the one-element
    `typed`) before they are counted, so the bound is exact in that dtype too."""
    blocks = maxima.shape[0]
    if need > blocks:
        return -np.inf
    low, high = np.inf, -np.inf
    for q in range(blocks):
        m = maxima[q]
        if m > -np.inf:
            low = min(low, m)
        high = max(high, m)
    reached = 0
    for q in range(blocks):
        reached += maxima[q] >= low
    if reached < need:
        return -np.inf
    for _ in range(_BISECTIONS):
        if reached <= need + _SLACK:
            break
        typed[0] = low + (high - low) * 0.5
        guess = typed[0]
        if not (low < guess < high):  # infinite bounds, or nothing left between them
            break
        count = 0
        for q in range(blocks):
            count += maxima[q] >= guess
        if count >= need:
            low, reached = guess, count
        else:
            high = guess
    return low


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _candidates(x, maxima, bound, values, classes, chosen):
    """Every class of `x` scoring at least `bound` (of x's dtype), into `values` and `classes`;
    their count."""
    blocks = maxima.shape[0]
    num_classes = x.shape[0]
    count = 0
    for q in range(blocks):  # branch-free: the blocks that reach the bound
        chosen[count] = q
        count += maxima[q] >= bound
    n = 0
    for t in range(count):
        j = chosen[t]
        while j < num_classes:
            v = x[j]
            values[n] = v
            classes[n] = j
            n += v >= bound
            j += blocks
    return n


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _rank(values, classes, n, insertion_most):
    """Sort the first n candidates by score (best first), then class, in place."""
    if n <= insertion_most:
        for i in range(1, n):
            v, c = values[i], classes[i]
            t = i
            while t > 0 and (values[t - 1] < v or (values[t - 1] == v and classes[t - 1] > c)):
                values[t] = values[t - 1]
                classes[t] = classes[t - 1]
                t -= 1
            values[t] = v
            classes[t] = c
        return
    by_class = np.argsort(classes[:n])
    v, c = values[:n][by_class], classes[:n][by_class]
    order = np.argsort(-v, kind="mergesort")  # stable: ties stay in class order
    values[:n] = v[order]
    classes[:n] = c[order]


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _row_perr(x, labels, values, n, floor):
    """Precision at equal recall of one row with L = len(labels) > 0 true labels, from its
    ranked candidates: the top L's hits, where the L-th best score is shared by tied classes
    (each tied hit counts for the share of places left to the ties)."""
    count = labels.shape[0]
    cut = values[count - 1]
    above = tied = 0
    for i in range(n):
        above += values[i] > cut
        tied += values[i] == cut
    hits_above = hits_tied = 0
    for q in range(count):
        v = x[labels[q]]
        if v > floor:
            hits_above += v > cut
            hits_tied += v == cut
    slots = count - above
    share = slots * hits_tied / max(tied, 1) if slots > 0 else 0.0
    return (hits_above + share) / count


@numba.njit(nogil=True, cache=True, boundscheck=False)
def rank_rows(scores, offsets, flat, top_k, from_logits, top_scores, top_classes, top_hits,
              perr, blocks=BLOCKS, insertion_most=INSERTION_MOST):
    """Rank each row of `scores` (C-contiguous float32 or float64, classes >= 1).

    `offsets`/`flat`: the rows' true labels as CSR (sorted ids). Writes, per row, its
    min(top_k, C) best (score, class, hit) into `top_*` and its precision at equal recall into
    `perr` (0 without labels; a label counts when its score is above 0, or above -inf when
    `from_logits`). Returns the first row holding a NaN (stopping there), or -1. `blocks` and
    `insertion_most` tune the speed, never the result.
    """
    rows, num_classes = scores.shape
    blocks = min(blocks, num_classes)
    half = blocks
    while half * 2 < num_classes:
        half *= 2
    tree = np.empty((2, half), scores.dtype)
    values = np.empty(num_classes, scores.dtype)
    classes = np.empty(num_classes, np.int64)
    chosen = np.empty(blocks, np.int64)
    floor = -np.inf if from_logits else 0.0
    k = min(top_k, num_classes)
    typed = np.empty(1, scores.dtype)  # rounds values to the scores' dtype
    for r in range(rows):
        x = scores[r]
        labels = flat[offsets[r] : offsets[r + 1]]
        need = min(max(top_k, labels.shape[0]), num_classes)
        maxima = _block_maxima(x, tree, blocks)
        nan = False
        for q in range(blocks):
            nan |= maxima[q] != maxima[q]
        if nan:
            return r
        typed[0] = _bound(maxima, need, typed)
        n = _candidates(x, maxima, typed[0], values, classes, chosen)
        _rank(values, classes, n, insertion_most)
        for i in range(k):
            hit = False
            for label in labels:
                hit |= label == classes[i]
            top_scores[r, i] = values[i]
            top_classes[r, i] = classes[i]
            top_hits[r, i] = hit
        perr[r] = _row_perr(x, labels, values, n, floor) if labels.shape[0] else 0.0
    return -1


@numba.njit(nogil=True, cache=True, inline="always")
def _run_sum(ranked, found, size, hits):
    """Expected sum of precision at the hits of a run of `size` tied items holding `hits` hits,
    after `ranked` items and `found` hits: each place o of the run is a hit with chance
    hits/size and then has found + 1 + o(hits - 1)/(size - 1) hits among its ranked + o + 1."""
    total = 0.0
    for o in range(size):
        spread = o * (hits - 1) / (size - 1) if size > 1 else 0.0
        total += (found + 1 + spread) / (ranked + o + 1)
    return total * hits / size


@numba.njit(nogil=True, cache=True, boundscheck=False)
def precision_sums(triplets, num_classes):
    """GAP's and each class's expected sum of precision at their hits, in one walk.

    `triplets` are sorted uint64s, score key << 32 | class << 1 | hit, smaller keys ranking
    first: equal keys are contiguous (GAP's runs of ties) and, within them, equal classes (a
    class's runs of ties), so counts of the items and hits seen so far, overall and per class,
    give every run's place.
    """
    sums = np.zeros(num_classes)
    ranked = np.zeros(num_classes, np.int64)
    found = np.zeros(num_classes, np.int64)
    gap, gap_ranked, gap_found = 0.0, 0, 0
    n = triplets.shape[0]
    i = 0
    while i < n:
        key = triplets[i] >> np.uint64(32)
        end = i
        hits = 0
        while end < n and triplets[end] >> np.uint64(32) == key:  # one score: GAP's run
            start = end
            cls = np.int64((triplets[end] >> np.uint64(1)) & np.uint64(0x7FFFFFFF))
            class_hits = 0
            while end < n and triplets[end] >> np.uint64(1) == triplets[start] >> np.uint64(1):
                class_hits += np.int64(triplets[end] & np.uint64(1))
                end += 1
            if class_hits:
                sums[cls] += _run_sum(ranked[cls], found[cls], end - start, class_hits)
            ranked[cls] += end - start
            found[cls] += class_hits
            hits += class_hits
        if hits:
            gap += _run_sum(gap_ranked, gap_found, end - i, hits)
        gap_ranked += end - i
        gap_found += hits
        i = end
    return gap, sums
