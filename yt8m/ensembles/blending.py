"""Blends of member logits: the `mean` and `weighted` combiners.

The weighted search scores each trial blend by OOF GAP@20, which sees only every video's 20 best
classes. `Candidates` keeps just what those can be, so a trial costs (videos x ~100) instead of
(videos x 3862) and its memory is a chunk's. Its GAP equals the dense blend's exactly:

- per video it keeps, for every member m, its K best classes (K = `CANDIDATES` or more) and its
  floor f_m (its best logit outside them); every member's logits at the union U of those
  classes; and S, the best equal-weight blend of a class outside U;
- a blend with non-negative weights w (summing to 1) gives a class c outside U at most
  B = sum_m w_m f_m - a (mean_m f_m - S), a = M min_m w_m: w is a mix of the equal weights
  (share a) and of single members (shares w_m - a/M), and the best of a mix is at most the mix
  of the bests (the sum over the floors is computed as one more column, so rounded alike);
- when the blend's 20th best value over U is above B, its top 20 (ties included) lies in U and
  has the dense blend's values; otherwise the video's full rows are read again from the
  members' memory-maps and blended densely (`fallback` counts them).
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..metrics import evaluate, top_candidates
from .streaming import read

TOP_K = 20        # GAP@20
CANDIDATES = 40   # each member's best classes kept per video (at least; see `Candidates.add`)
SAFE = 0.99       # share of a first chunk's videos that needs no fallback, at that K


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def blend(stack, weights, space="logits"):
    """Weighted mean of (members, videos, classes) logits, as logits (float32)."""
    weights = np.asarray(weights, np.float32)
    weights = weights / weights.sum()
    if space == "logits":
        return np.tensordot(weights, stack, axes=1).astype(np.float32)
    p = np.clip(np.tensordot(weights, _sigmoid(stack.astype(np.float32)), axes=1), 1e-7, 1 - 1e-7)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)


def blend_by_fold(stack, folds, fold_weights):
    """(videos, classes) logits of a (members, videos, classes) stack, each video blended with
    its fold's weights (`fold_weights`: {fold: weights}, fitted without that fold)."""
    x = np.empty(stack.shape[1:], np.float32)
    for k, w in fold_weights.items():
        apply = folds == k
        x[apply] = blend(stack[:, apply], w)
    return x


def fit_weights(gap_of, members, rounds=2, grid=6):
    """Non-negative weights summing to 1 that maximise GAP@20, by coordinate search: each round
    tries, for every member, `grid` shares of the blend between 0 and 1 against the others.
    `gap_of(mix, weights)` scores the blend `mix` makes (with `weights`) of a (members, videos,
    classes) float32 stack (`dense_gap`, `Candidates.gap`). Starts from equal weights; returns
    (weights, GAP)."""
    weights = np.full(members, 1.0 / members)
    best = gap_of(lambda stack: blend(stack, weights), weights)
    for _ in range(rounds):
        improved = False
        for i in range(members):
            others = np.delete(weights, i)
            if others.sum() == 0:  # member i holds all the weight: nothing to trade against
                continue
            others = others / others.sum()
            # in logit space a trial is a mix of two blends: the others' and member i
            rest = np.insert(others, i, 0.0).astype(np.float32)
            for share in np.linspace(0.0, 1.0, grid):
                trial = np.insert(others * (1 - share), i, share)

                def mix(stack, rest=rest, share=share, i=i):
                    blended = np.tensordot(rest, stack, axes=1) * np.float32(1 - share)
                    blended += np.float32(share) * stack[i]
                    return blended

                gap = gap_of(mix, trial)
                if gap > best + 1e-9:
                    best, weights, improved = gap, trial, True
        if not improved:
            break
    return weights, best


def dense_gap(stack, labels):
    """`fit_weights`' scorer on a full (members, videos, classes) stack (small data, tests)."""
    return lambda mix, weights: evaluate(mix(stack), labels, from_logits=True)["gap"]


def gap_of_triplets(scores, hits, positives):
    """GAP from the kept (score, hit) triplets (flat, any order) and the number of labels, as
    `Evaluator` computes it: a run of g tied scores holding h hits, below R items and P hits,
    counts the expected precision over its orders (its item at offset o is a hit with
    probability h/g, then preceded by P + o(h-1)/(g-1) hits). Sorts copies, no index arrays."""
    ranked, found = np.sort(scores), np.sort(scores[hits])
    if not positives or not len(found):
        return 0.0
    first = np.flatnonzero(np.append(True, found[1:] != found[:-1]))
    values, h = found[first], np.diff(np.append(first, len(found)))  # runs holding hits
    right = np.searchsorted(ranked, values, "right")
    g = right - np.searchsorted(ranked, values, "left")
    above, before = len(ranked) - right, len(found) - first - h
    total = ((before + 1) / (above + 1))[g == 1].sum()  # untied hits
    tied = g > 1
    if tied.any():
        g, h, above, before = g[tied], h[tied], above[tied], before[tied]
        run = np.repeat(np.arange(len(g)), g)
        offset = np.arange(len(run)) - np.repeat(np.cumsum(g) - g, g)
        total += ((h / g)[run] * (before[run] + 1 + offset * ((h - 1) / (g - 1))[run])
                  / (above[run] + offset + 1)).sum()
    return float(total / positives)


def _hits(label_lists, classes, num_classes):
    """Is classes[i, j] a label of video i? (classes -1: no)"""
    truth = np.zeros((len(label_lists), num_classes + 1), bool)
    lengths = [len(labels) for labels in label_lists]
    if sum(lengths):
        truth[np.repeat(np.arange(len(lengths)), lengths), np.concatenate(label_lists)] = True
    return np.take_along_axis(truth, np.where(classes < 0, num_classes, classes), 1), truth


class Candidates:
    """The members' OOF logits at each video's candidate classes (see the module's docstring),
    with the hits of those classes and each video's number of labels, in a temporary folder in
    `folder` while it lives (`close` deletes it).

    `parts`: the members' memory-mapped (videos, classes) logits; `labels(index)`: the label
    lists of those rows. Fill it with `add` chunk by chunk, then score trials with `gap`.
    """

    FILES = ("values", "ids", "hits", "labels", "slack")

    def __init__(self, parts, labels, folder, k=CANDIDATES):
        self.parts, self.labels = parts, labels
        self.num_classes = parts[0].shape[1]
        self.k = min(max(k, TOP_K), self.num_classes)  # at least the blend's top 20
        self.max_k = max(self.k, self.num_classes // 8)
        class_dtype = np.int16 if self.num_classes < 2**15 else np.int32
        self.dtypes = dict(zip(self.FILES, (np.result_type(*(p.dtype for p in parts)),
                                            class_dtype, bool, np.int32, np.float32),
                               strict=True))
        for stale in Path(folder).glob(".candidates.*.tmp"):  # a killed build's (the caller
            shutil.rmtree(stale, ignore_errors=True)           # holds the folder's lock)
        self.folder = Path(tempfile.mkdtemp(prefix=".candidates.", suffix=".tmp", dir=folder))
        self.sizes = dict.fromkeys(self.FILES, 0)  # elements written to each file
        self.blocks, self.maps = [], None  # (first row, rows, width, element offsets)
        self.scored = self.fallback = 0

    def add(self, first_row, stack):
        """Add a (members, rows, classes) float32 chunk whose first row is `first_row`. On the
        first chunk K doubles (up to classes / 8) until `SAFE` of its videos need no fallback
        for equal weights and for weights leaning to each member: members that disagree need
        more candidates."""
        arrays = self._arrays(first_row, stack)
        while not self.blocks and self.k < self.max_k and self._safe_share(arrays) < SAFE:
            self.k = min(2 * self.k, self.max_k)
            arrays = self._arrays(first_row, stack)
        self.blocks.append((first_row, *arrays["ids"].shape, dict(self.sizes)))
        for name, array in arrays.items():
            with open(self.folder / name, "ab") as f:
                f.write(np.ascontiguousarray(array, self.dtypes[name]).tobytes())
            self.sizes[name] += array.size

    def _arrays(self, first_row, stack):
        """A chunk's candidates: values (members, rows, width), ids, hits (rows, width) and
        labels (rows,) counts."""
        members, rows, classes = stack.shape
        top, floors = [], np.full((members, rows), np.finfo(self.dtypes["values"]).min,
                                  np.float32)
        for m, x in enumerate(stack):  # top_candidates: every class at or above the k+1-th
            values, ids = top_candidates(x, min(self.k + 1, classes))
            top.append(ids[:, :self.k])
            if self.k < classes:
                floors[m] = values[:, self.k]
        union = np.sort(np.concatenate(top, axis=1), axis=1)
        union[:, 1:][union[:, 1:] == union[:, :-1]] = classes  # repeats sort last
        union = np.sort(union, axis=1)
        union = union[:, :int((union < classes).sum(1).max())]
        pad = union == classes
        at = np.where(pad, 0, union)
        values = np.take_along_axis(stack, np.broadcast_to(at, (members, *at.shape)), 2)
        values = np.where(pad, floors[:, :, None], values)
        # the last column holds the floors (class -1, like the padding)
        values = np.concatenate([values, floors[:, :, None]], axis=2)
        ids = np.concatenate([np.where(pad, -1, union), np.full((rows, 1), -1)], axis=1)
        hits, truth = _hits(self.labels(np.arange(first_row, first_row + rows)), ids, classes)
        # S: the best equal-weight blend outside U (-inf: nothing is), as slack below the floors
        outside = np.concatenate([stack.mean(0, dtype=np.float64), np.full((rows, 1), -np.inf)],
                                 axis=1)
        np.put_along_axis(outside, union, -np.inf, axis=1)
        slack = floors.mean(0, dtype=np.float64) - outside.max(1)
        return {"values": values, "ids": ids, "hits": hits, "labels": truth[:, :classes].sum(1),
                "slack": np.minimum(slack * (1 - 1e-6), 1e30)}  # rounded down, finite

    def _safe(self, blended, ids, weights, slack):
        """Rows whose n-th best blended candidate is above every unseen class, and that value;
        the padding and floor columns of `blended` become -inf."""
        weights = np.asarray(weights) / np.sum(weights)
        bound = blended[:, -1] - len(weights) * weights.min() * slack
        blended[ids < 0] = -np.inf
        width, n = blended.shape[1], min(TOP_K, self.num_classes)  # n <= width - 1
        low = np.partition(blended, width - n, axis=1)[:, width - n]
        if self.k >= self.num_classes:
            return np.ones(len(blended), bool), low
        return low > bound + np.float32(1e-5) * (1 + np.abs(bound)), low

    def _safe_share(self, arrays):
        members = len(arrays["values"])
        trials = [np.full(members, 1.0), *(np.eye(members) * members + 1)]
        return min(self._safe(blend(arrays["values"], w), arrays["ids"], w,
                              arrays["slack"])[0].mean() for w in trials)

    def _block(self, rows, width, offsets):
        if self.maps is None:
            self.maps = {name: np.asarray(np.memmap(self.folder / name, dtype, "r"))
                         for name, dtype in self.dtypes.items()}
        shapes = {"values": (-1, rows, width), "ids": (rows, width), "hits": (rows, width),
                  "labels": (rows,), "slack": (rows,)}
        return {name: self.maps[name][offsets[name]:offsets[name] + int(np.prod(shape[-2:]))
                                      * (len(self.parts) if name == "values" else 1)]
                .reshape(shape) for name, shape in shapes.items()}

    def gap(self, mix, weights, keep=None):
        """GAP@20 of the blend `mix` (with `weights`) of the rows where `keep` (a bool array over
        the rows, None: all), as `dense_gap` scores it."""
        scores, hits, positives = [], [], 0
        for first, rows, width, offsets in self.blocks:
            block = self._block(rows, width, offsets)
            index = np.arange(first, first + rows)
            if keep is not None:
                sel = keep[first:first + rows]
                block = {name: a[..., sel, :] if a.ndim > 1 else a[sel]
                         for name, a in block.items()}
                index = index[sel]
            if not len(index):
                continue
            positives += int(block["labels"].sum())
            blended = mix(block["values"].astype(np.float32))
            n = min(TOP_K, self.num_classes)
            safe, low = self._safe(blended, block["ids"], weights, block["slack"])
            above = blended >= low[:, None]
            count = above.sum(1)
            take = above & (safe & (count == n))[:, None]
            scores.append(blended[take])
            hits.append(block["hits"][take])
            tied = safe & (count > n)  # ties at the n-th: the lowest class ids go in
            if tied.any():
                order = np.lexsort((block["ids"][tied], -blended[tied]), axis=1)[:, :n]
                scores.append(np.take_along_axis(blended[tied], order, 1).ravel())
                hits.append(np.take_along_axis(block["hits"][tied], order, 1).ravel())
            if not safe.all():  # the dense blend of these rows
                x, ids = top_candidates(mix(read(self.parts, index[~safe])), n)
                scores.append(x[:, :n].ravel())
                hits.append(_hits(self.labels(index[~safe]), ids[:, :n],
                                  self.num_classes)[0].ravel())
            self.scored += len(index)
            self.fallback += int((~safe).sum())
        if not scores:
            return 0.0
        return gap_of_triplets(np.concatenate(scores), np.concatenate(hits), positives)

    def close(self):
        self.maps = None
        shutil.rmtree(self.folder, ignore_errors=True)
