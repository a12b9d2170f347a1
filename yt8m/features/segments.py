"""The 2019 segment grid over the feature cache: every video's 5-second segments, their ids, the
scored classes and the validate ratings located among the segments.

Numpy only (no Keras): the segment stage (`yt8m.models.segments`), its ensembles and the
segment submissions share it.
"""

from pathlib import Path

import numpy as np

from ..errors import Yt8mError
from ..input.sample import SCORED_CLASSES, SEGMENT_SECONDS
from ..segment_metrics import SegmentEvaluator

FOLDER = "segments"  # models/<id>/segments/, ensembles/<id>/segments/
_PER_VIDEO = 4096  # segments a video may have at most, in the (row, segment) keys


def segment_grid(cache, rows):
    """(rows, starts): every 5-second segment of each row, in row order (the last one may
    hold fewer than 5 frames)."""
    rows = np.asarray(rows, np.int64)
    count = -(-cache.num_frames[rows].astype(np.int64) // SEGMENT_SECONDS)
    first = np.repeat(np.cumsum(count) - count, count)
    return np.repeat(rows, count), (np.arange(count.sum()) - first) * SEGMENT_SECONDS


def segment_ids_of(video_ids, num_frames):
    """Segment ids of every video: `<id>:<start>` for starts 0, 5, ... covering its frames (the
    order of `segment_grid`)."""
    return [f"{video}:{start}" for video, frames in zip(video_ids, num_frames, strict=True)
            for start in range(0, int(frames), SEGMENT_SECONDS)]


def segment_ids(cache, rows):
    """`segment_ids_of` the cache rows `rows`."""
    return segment_ids_of(cache.ids[rows], cache.num_frames[rows])


def scored_classes(input_dir, num_classes):
    """The scored class ids: `segment_label_ids.csv` in `input_dir` (column `Index`), or every
    class when there is none."""
    path = Path(input_dir) / SCORED_CLASSES
    if not path.exists():
        return np.arange(num_classes)
    lines = path.read_text().split()
    if not lines or lines[0] != "Index":
        raise Yt8mError(f"{path}: expected a header 'Index' and one class id per line")
    try:
        classes = np.unique(np.array(lines[1:], np.int64))
    except ValueError:
        raise Yt8mError(f"{path}: class ids must be integers") from None
    if classes.size == 0 or classes[0] < 0 or classes[-1] >= num_classes:
        raise Yt8mError(f"{path}: class ids must be in [0, {num_classes}), at least one")
    return classes


def segment_keys(rows, starts):
    """One sortable int64 key per (cache row, segment start)."""
    return np.asarray(rows, np.int64) * _PER_VIDEO + np.asarray(starts, np.int64) // SEGMENT_SECONDS


class SegmentRatings:
    """The validate ratings located among the segments: `segment_grid` of every rated row,
    and for each rating its segment's index there, class and rating."""

    def __init__(self, cache):
        row, start, label, rating = cache.segment_ratings(cache.rows("validate"))
        if not row.size:
            raise Yt8mError(f"{cache.root}: no validate video carries segment ratings; the "
                            f"segment stage needs the 2019 segment-rated validate shards")
        self.cache = cache
        self.rated_rows = np.unique(row)
        self.grid_rows, self.grid_starts = segment_grid(cache, self.rated_rows)
        keys, wanted = segment_keys(self.grid_rows, self.grid_starts), segment_keys(row, start)
        at = np.searchsorted(keys, wanted).clip(0, len(keys) - 1)
        bad = (keys[at] != wanted) | (start % SEGMENT_SECONDS != 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise Yt8mError(f"{cache.root}: video {cache.ids[row[i]]} has a rating of segment "
                            f"{start[i]}, which is not the start of one of its 5-second "
                            f"segments ({cache.num_frames[row[i]]} frames kept)")
        self.segment, self.row, self.label, self.rating = at, row, label, rating

    def examples(self, rows, classes):
        """Training examples of the ratings of `rows`, one per rated segment: (rows, starts,
        (offsets, classes, ratings)), the segment's ratings of the scored `classes` as CSR
        (ratings of other classes are left out)."""
        column = np.searchsorted(classes, self.label).clip(0, len(classes) - 1)
        keep = np.flatnonzero(np.isin(self.row, rows) & (classes[column] == self.label))
        keep = keep[np.argsort(self.segment[keep], kind="stable")]
        unique, counts = np.unique(self.segment[keep], return_counts=True)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return (self.grid_rows[unique], self.grid_starts[unique],
                (offsets, self.label[keep], self.rating[keep]))

    def evaluator(self, rows, classes, top_k):
        """A `SegmentEvaluator` of the ratings of `rows`, with segments numbered as
        `segment_grid(cache, rows)` numbers them (rows sorted)."""
        rows = np.unique(rows)
        grid = segment_keys(*segment_grid(self.cache, rows))
        keep = np.isin(self.row, rows)
        at = np.searchsorted(grid, segment_keys(self.grid_rows[self.segment[keep]],
                                         self.grid_starts[self.segment[keep]]))
        return SegmentEvaluator(classes, at, self.label[keep], self.rating[keep], top_k=top_k)


