"""Each video's best classes, ranked in one read of its scores (compiled with Numba).

`rank_rows` is the per-video half of `yt8m.metrics.Evaluator.update`: for every row of a score
matrix it finds the classes scoring at least the row's max(k, L)-th best score (L: its number of
true labels), ranks them best first (ties: lowest class id first) and writes what the metrics
need: the top k (score, class, hit) triplets and the row's precision at equal recall.

NumPy has no per-row selection that reads a row once: a partition, a sort or a threshold search
each costs several passes over the matrix. Here a row is read from memory once, into a tree of
maxima that stays in cache:

1. **Tree of maxima.** Pairwise maxima halve the row level by level down to one value, the
   row's largest score; the level of `BLOCKS` nodes holds the maximum of each strided block
   (class j is in block j % `BLOCKS`, about 15 classes each at 3,862 classes). NaN is carried
   up the tree, so a row holding one shows it at the top.
2. **A bound.** A value reached by at least max(k, L) block maxima is at most the row's
   max(k, L)-th best score (each of those blocks holds a score at least that high). The first
   guess is the largest score less the previous row's distance to its bound (rows of one model
   look alike up to a shift); a bisection, counting the maxima above each guess, moves it to a
   little below the max(k, L)-th best maximum.
3. **Candidates.** From the blocks whose maximum reaches the bound, the tree is descended
   (from cache) through the nodes that still reach it, down to a few dozen classes; every class
   at or above the bound is a candidate, so every class at or above the max(k, L)-th best score
   is one, ties included.
4. **Ranking.** Each candidate's place is the count of candidates ahead of it by score, then
   class (branch-free, for the usual few dozen); many candidates (ties) go through a stable
   merge sort.

The bound decides only how many candidates are ranked, never the result.
"""

import numba
import numpy as np

BLOCKS = 256  # block maxima per row: the bound's resolution
COUNTING_MOST = 64  # candidates placed by counting; more (ties) by a merge sort
_BISECTIONS = 16  # most bisection steps for the bound
_SLACK = 4  # blocks beyond max(k, L) that may reach the bound when the bisection stops


@numba.njit(nogil=True, cache=True, inline="always")
def _max_keep_nan(u, v):
    return u if (u > v) or (u != u) else v


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _block_tree(x, tree, blocks):
    """Row `x`'s tree of pairwise maxima (NaN where a NaN is below). With `leaves` =
    len(tree) / 2 (a power of two, leaves <= len(x) <= 2 x leaves), leaf j holds the maximum
    of x[j] and x[j + leaves] (where it exists); the level of size s (s = leaves, leaves / 2,
    ..., 1) is tree[s : 2s], its node p the maximum of nodes p and p + s of the level above
    it. Returns the level of size `blocks`: the row's strided block maxima."""
    num_classes = x.shape[0]
    leaves = tree.shape[0] // 2
    level = tree[leaves:]
    for j in range(num_classes - leaves):
        level[j] = _max_keep_nan(x[j], x[j + leaves])
    for j in range(num_classes - leaves, leaves):
        level[j] = x[j]
    size = leaves
    while size > 1:
        size //= 2
        for j in range(size):
            tree[size + j] = _max_keep_nan(tree[2 * size + j], tree[3 * size + j])
    return tree[blocks : 2 * blocks]


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _count_reaching(maxima, value):
    count = 0
    for q in range(maxima.shape[0]):
        count += maxima[q] >= value
    return count


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _bound(maxima, top, need, typed, spread):
    """A value at most the `need`-th largest of `maxima` (none NaN, the largest `top`), close
    to it.

    The first guess is `top` less `spread` (the previous row's distance from its largest score
    to its bound: rows of one model tend to look alike, up to a shift); then a bisection keeps
    the guess that at least `need` maxima reach. Guesses are rounded to the maxima's dtype
    (through the one-element `typed`) before they are counted, so the bound is exact in that
    dtype too."""
    blocks = maxima.shape[0]
    if need > blocks:
        return -np.inf
    low, high, reached = -np.inf, top, 0
    if spread < np.inf:
        typed[0] = top - spread
        guess = typed[0]
        count = _count_reaching(maxima, guess)
        if count >= need:
            low, reached = guess, count
        else:
            high = guess
    if reached == 0:  # bisect from the smallest maximum above -inf
        low = np.inf
        for q in range(blocks):
            m = maxima[q]
            if m > -np.inf:
                low = min(low, m)
        reached = _count_reaching(maxima, low)
        if reached < need:
            return -np.inf
    for _ in range(_BISECTIONS):
        if reached <= need + _SLACK:
            break
        typed[0] = low + (high - low) * 0.5
        guess = typed[0]
        if not (low < guess < high):  # infinite bounds, or nothing left between them
            break
        count = _count_reaching(maxima, guess)
        if count >= need:
            low, reached = guess, count
        else:
            high = guess
    return low


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _candidates(x, tree, blocks, bound, values, classes, chosen, next_chosen):
    """Every class of `x` scoring at least `bound` (of x's dtype), into `values` and `classes`;
    their count. Descends `tree` from its `blocks` maxima through the nodes that reach the
    bound (branch-free: each node is written, and kept if it reaches)."""
    num_classes = x.shape[0]
    leaves = tree.shape[0] // 2
    count = 0
    for q in range(blocks):
        chosen[count] = q
        count += tree[blocks + q] >= bound
    size = blocks
    while size < leaves:
        kept = 0
        for t in range(count):
            p = chosen[t]
            next_chosen[kept] = p
            kept += tree[2 * size + p] >= bound
            next_chosen[kept] = p + size
            kept += tree[3 * size + p] >= bound
        chosen, next_chosen = next_chosen, chosen
        count = kept
        size *= 2
    n = 0
    for t in range(count):
        j = chosen[t]
        v = x[j]
        values[n] = v
        classes[n] = j
        n += v >= bound
        if j + leaves < num_classes:
            v = x[j + leaves]
            values[n] = v
            classes[n] = j + leaves
            n += v >= bound
    return n


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _rank(values, classes, n, counting_most, ranked_values, ranked_classes):
    """The first n candidates sorted by score (best first), then class, into `ranked_*`.

    A few dozen are placed by counting, for each, the candidates ahead of it (branch-free);
    more (ties) go through a stable merge sort."""
    if n <= counting_most:
        for i in range(n):
            v, c = values[i], classes[i]
            ahead = 0
            for j in range(n):
                ahead += (values[j] > v) | ((values[j] == v) & (classes[j] < c))
            ranked_values[ahead] = v
            ranked_classes[ahead] = c
        return
    by_class = np.argsort(classes[:n])
    v, c = values[:n][by_class], classes[:n][by_class]
    order = np.argsort(-v, kind="mergesort")  # stable: ties stay in class order
    ranked_values[:n] = v[order]
    ranked_classes[:n] = c[order]


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
              perr, blocks=BLOCKS, counting_most=COUNTING_MOST):
    """Rank each row of `scores` (C-contiguous float32 or float64, classes >= 1).

    `offsets`/`flat`: the rows' true labels as CSR (sorted ids). Writes, per row, its
    min(top_k, C) best (score, class, hit) into `top_*` and its precision at equal recall into
    `perr` (0 without labels; a label counts when its score is above 0, or above -inf when
    `from_logits`). Returns the first row holding a NaN (stopping there), or -1. `blocks`
    (rounded down to a power of two, at most C) and `counting_most` tune the speed, never the
    result.
    """
    rows, num_classes = scores.shape
    most, blocks = min(blocks, num_classes), 1
    while blocks * 2 <= most:  # a power of two, as every level of the tree
        blocks *= 2
    leaves = blocks
    while leaves * 2 < num_classes:
        leaves *= 2
    tree = np.empty(2 * leaves, scores.dtype)
    values = np.empty((2, num_classes), scores.dtype)  # candidates, then ranked
    classes = np.empty((2, num_classes), np.int64)
    chosen = np.empty((2, leaves), np.int64)
    spread = np.inf  # the previous row's distance from its largest score to its bound
    floor = -np.inf if from_logits else 0.0
    k = min(top_k, num_classes)
    typed = np.empty(1, scores.dtype)  # rounds values to the scores' dtype
    ranked_values, ranked_classes = values[1], classes[1]
    for r in range(rows):
        x = scores[r]
        labels = flat[offsets[r] : offsets[r + 1]]
        need = min(max(top_k, labels.shape[0]), num_classes)
        maxima = _block_tree(x, tree, blocks)
        top = tree[1]  # the row's largest score, NaN if it holds one
        if top != top:
            return r
        bound = _bound(maxima, top, need, typed, spread)
        spread = top - bound if -np.inf < bound < top else np.inf
        n = _candidates(x, tree, blocks, bound, values[0], classes[0], chosen[0], chosen[1])
        _rank(values[0], classes[0], n, counting_most, ranked_values, ranked_classes)
        for i in range(k):
            hit = False
            for label in labels:
                hit |= label == ranked_classes[i]
            top_scores[r, i] = ranked_values[i]
            top_classes[r, i] = ranked_classes[i]
            top_hits[r, i] = hit
        perr[r] = _row_perr(x, labels, ranked_values, n, floor) if labels.shape[0] else 0.0
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
