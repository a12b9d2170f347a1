"""A plain per-class heap implementation of GAP@k and mAP, as a yardstick.

It mirrors how the starter code's calculators work (per-video partition, Python heaps of
(score, hit) pairs, one calculator per class plus a global one, precision summed pair by pair)
and exists only so that `make bench` and the tests can compare `yt8m.metrics` with it. Ties are
ranked by a fixed shuffle, as in the starter code, so results agree with `yt8m.metrics` exactly
when no two kept scores are equal.
"""

import heapq
import random

import numpy as np


class HeapAveragePrecision:
    """Average precision over pushed (score, hit) pairs, with a given number of positives."""

    def __init__(self):
        self.heap = []
        self.positives = 0

    def push(self, score, hit):
        heapq.heappush(self.heap, (score, hit))

    def average_precision(self):
        if self.positives == 0:
            return 0.0
        pairs = random.Random(0).sample(self.heap, len(self.heap))
        pairs.sort(key=lambda pair: -pair[0])
        found = 0
        total = 0.0
        for rank, (_, hit) in enumerate(pairs, start=1):
            if hit:
                found += 1
                total += found / rank
        return total / self.positives


def heap_gap_and_map(predictions, labels, top_k=20):
    """(GAP@k, mAP) of dense predictions and 0/1 labels, one video and one pair at a time."""
    num_classes = predictions.shape[1]
    k = min(top_k, num_classes)
    pooled = HeapAveragePrecision()
    per_class = [HeapAveragePrecision() for _ in range(num_classes)]
    for scores, truth in zip(predictions, labels, strict=True):
        top = np.argpartition(scores, num_classes - k)[num_classes - k :]
        for cls in top.tolist():
            pair = (float(scores[cls]), bool(truth[cls] > 0))
            pooled.push(*pair)
            per_class[cls].push(*pair)
        for cls in np.flatnonzero(truth > 0).tolist():
            per_class[cls].positives += 1
            pooled.positives += 1
    aps = [c.average_precision() for c in per_class if c.positives > 0]
    return pooled.average_precision(), (sum(aps) / len(aps) if aps else 0.0)
