"""Row chunks of the members' memory-mapped logits, read a chunk at a time.

Every combiner reads `predictions.CHUNK_ROWS` rows of each member at a time (as float32: 1024 x
3862 x 4 bytes, 16 MB per member) and writes its blend through `predictions.writer` at its
final rows, so its memory depends on the chunk and the number of members, never on the number
of videos. Members may be dense or
top-k (`predictions.load` reads both as dense rows).
"""

import numpy as np

from .. import predictions
from ..errors import Yt8mError
from ..predictions import locate  # noqa: F401  (the ensembles' name for it)

CHUNK_ROWS = predictions.CHUNK_ROWS


def chunks(n, size=CHUNK_ROWS):
    """Slices of `size` rows covering range(n)."""
    return predictions.chunks(n, size)


def read(parts, rows):
    """(members, rows, classes) float32: the memory-mapped `parts` at `rows` (a slice or an
    index array, ascending for sequential reads)."""
    first = parts[0][rows]
    stack = np.empty((len(parts), *first.shape), np.float32)
    stack[0] = first
    for i, part in enumerate(parts[1:], 1):
        stack[i] = part[rows]
    return stack


def row_index(preds, ids):
    """Where each of `ids` is in `preds` (a `Predictions`): `slice(None)` when already in that
    order, else an index array; an error names missing and unexpected ids."""
    ids = np.asarray(ids)
    if len(ids) == len(preds.ids) and np.array_equal(ids, preds.ids):
        return slice(None)
    index = locate(ids, preds.ids)
    missing = ids[index < 0].tolist()
    extra = len(preds.ids) - int((index >= 0).sum())
    if missing or extra:
        raise Yt8mError(f"{preds.path}: predictions do not cover the expected videos: "
                        f"{len(missing)} missing (e.g. {', '.join(missing[:3]) or '-'}), {extra} "
                        f"unexpected; rebuild them against the current features")
    return index


class Correlation:
    """Pearson correlation of the members' logits over every `step`-th of their (videos x
    classes) values (about two million, as `np.corrcoef` on the flattened members), streamed."""

    def __init__(self, members, values):
        self.step = max(1, values // 2_000_000)
        self.n, self.sums = 0, np.zeros(members)
        self.products = np.zeros((members, members))

    def update(self, stack, first_row):
        """Add a (members, rows, classes) chunk whose first row is `first_row`."""
        flat = stack.reshape(len(stack), -1)
        x = flat[:, (-first_row * stack.shape[2]) % self.step::self.step].astype(np.float64)
        self.n += x.shape[1]
        self.sums += x.sum(1)
        self.products += x @ x.T

    def result(self):
        mean = self.sums / max(self.n, 1)
        cov = self.products / max(self.n, 1) - np.outer(mean, mean)
        scale = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.clip(cov / np.outer(scale, scale), -1, 1)
