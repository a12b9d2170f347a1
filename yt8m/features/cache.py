"""Read the feature cache without TensorFlow: memory-mapped frames, ids, labels, splits and folds.

Rows are numbered in the cache's order (shards train, validate, test, each in name order, videos in
record order). That order is the one every prediction file is aligned to.
"""

import json
from pathlib import Path

import numpy as np

from yt8m.errors import Yt8mError
from yt8m.features.folds import read_folds

SPLIT_ORDER = ("train", "validate", "test")
MANIFEST = "manifest.json"  # the cache's table of contents, written last by `writer`


def csr_positions(lo, hi):
    """The positions lo[0]..hi[0]-1, lo[1]..hi[1]-1, ... of CSR rows, concatenated (int64),
    without a Python loop over the rows."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    counts = hi - lo
    return np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())


class FeatureCache:
    """A built `features/<level>/` cache.

    Args:
        features_dir: the `features/` folder.
        level: 'frame' or 'video'.

    Attributes:
        ids: (n,) video ids; split: (n,) split names; fold: (n,) fold or -1 (unfolded/test);
        num_frames: (n,) frames kept per video (0 at video level); num_classes; manifest.
    """

    def __init__(self, features_dir="features", level="frame"):
        self.root = Path(features_dir) / level
        path = self.root / MANIFEST
        if not path.exists():
            raise Yt8mError(f"no feature cache at {self.root}/ ({MANIFEST} is missing); build it "
                            f"with `make features` (or `yt8m features --level {level}`)")
        self.manifest = json.loads(path.read_text())
        self.level = level
        self.num_classes = self.manifest["num_classes"]
        self.feature_sizes = self.manifest["feature_sizes"]
        fold_table = read_folds(features_dir)
        folds = fold_table.set_index("shard")["fold"].to_dict()
        self.num_folds = int(fold_table["num_folds"].iloc[0]) if len(fold_table) else 0
        self.shard_names = [s["name"] for s in self.manifest["shards"]]
        # Older manifests do not record which splits are folded; they are not checked.
        folded = self.manifest.get("fold_splits", ())
        unfolded = [s["name"] for s in self.manifest["shards"] if s["split"] in folded
                    and s["labeled_videos"] and s["name"] not in folds]
        if unfolded:
            raise Yt8mError(
                f"{Path(features_dir) / 'folds.csv'} has no fold for shard {unfolded[0]}"
                f"{f' (and {len(unfolded) - 1} more)' if len(unfolded) > 1 else ''} of {path}: "
                f"the two files do not match (a build stopped between them, or an edited "
                f"folds.csv). Run `yt8m features --level {level}` to give it a fold; existing "
                f"folds never change")
        ids, shard_of, local, label_lo, labels, frame_lo = [], [], [], [], [], []
        label_base = 0
        for i, name in enumerate(self.shard_names):
            d = self.root / name
            shard_ids = np.load(d / "ids.npy")
            offsets = np.load(d / "label_offsets.npy")
            ids.append(shard_ids)
            shard_of.append(np.full(len(shard_ids), i, np.int32))
            local.append(np.arange(len(shard_ids)))
            label_lo.append(offsets[:-1] + label_base)
            label_base += offsets[-1]
            labels.append(np.load(d / "labels.npy"))
            if level == "frame":
                frame_lo.append(np.load(d / "frame_offsets.npy"))
        self.ids = np.concatenate(ids)
        self.shard_of = np.concatenate(shard_of)
        self.local = np.concatenate(local)
        self.label_offsets = np.append(np.concatenate(label_lo), label_base).astype(np.int64)
        self.labels_flat = np.concatenate(labels)
        splits = np.array([s["split"] for s in self.manifest["shards"]])
        self.split = splits[self.shard_of]
        self.fold = np.array([folds.get(n, -1) for n in self.shard_names], np.int64)[self.shard_of]
        if level == "frame":
            starts = [o[:-1] for o in frame_lo]
            self.frame_start = np.concatenate(starts)
            self.num_frames = np.concatenate([np.diff(o) for o in frame_lo]).astype(np.int32)
        else:
            self.frame_start = np.zeros(len(self.ids), np.int64)
            self.num_frames = np.zeros(len(self.ids), np.int32)
        self._frames = {}
        self._means = {}

    def __len__(self):
        return len(self.ids)

    @property
    def feature_dim(self):
        return int(sum(self.feature_sizes.values()))

    def rows(self, split=None, folds=None, exclude_folds=None):
        """Row numbers of the videos in `split` (a name or a list) and, if given, in `folds`
        and not in `exclude_folds`."""
        keep = np.ones(len(self), bool)
        if split is not None:
            names = [split] if isinstance(split, str) else list(split)
            unknown = set(names) - set(SPLIT_ORDER)
            if unknown:
                raise Yt8mError(f"unknown split {sorted(unknown)}; splits are {list(SPLIT_ORDER)}")
            keep &= np.isin(self.split, names)
        if folds is not None:
            keep &= np.isin(self.fold, list(np.atleast_1d(folds)))
        if exclude_folds is not None:
            keep &= ~np.isin(self.fold, list(np.atleast_1d(exclude_folds)))
        return np.flatnonzero(keep)

    def shard_frames(self, shard):
        """The memory-mapped (frames, 1152) uint8 array of shard number `shard`."""
        if shard not in self._frames:
            self._frames[shard] = np.load(self.root / self.shard_names[shard] / "frames.npy",
                                          mmap_mode="r")
        return self._frames[shard]

    def frames(self, row):
        """All kept frames of one video, uint8 (num_frames, 1152)."""
        if self.level != "frame":
            raise Yt8mError("a video-level cache has no frames; use means()")
        start = self.frame_start[row]
        return self.shard_frames(int(self.shard_of[row]))[start:start + self.num_frames[row]]

    def means(self, rows):
        """Video-level features (mean of dequantized frames, or mean_rgb + mean_audio)."""
        rows = np.asarray(rows)
        out = np.empty((len(rows), self.feature_dim), np.float32)
        for shard in np.unique(self.shard_of[rows]):
            if shard not in self._means:
                self._means[shard] = np.load(self.root / self.shard_names[shard] / "means.npy",
                                             mmap_mode="r")
            sel = self.shard_of[rows] == shard
            out[sel] = self._means[shard][self.local[rows[sel]]]
        return out

    def segment_ratings(self, rows=None):
        """The 2019 segment ratings of `rows` (None: every row), in row order: four arrays, one
        entry per rating: the cache row, the segment's start second, the class and the rating
        (1: the class shows in the segment, 0: it does not). Rows without ratings give none."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, np.int64)
        parts = []
        for shard in np.unique(self.shard_of[rows]):
            d = self.root / self.shard_names[shard]
            if not (d / "segment_offsets.npy").exists():
                continue
            offsets = np.load(d / "segment_offsets.npy")
            mine = rows[self.shard_of[rows] == shard]
            lo, hi = offsets[self.local[mine]], offsets[self.local[mine] + 1]
            take = csr_positions(lo, hi)
            arrays = [np.load(d / f"segment_{key}.npy", mmap_mode="r")
                      for key in ("start_times", "labels", "scores")]
            parts.append((np.repeat(mine, hi - lo), *(a[take] for a in arrays)))
        if not parts:
            return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                    np.zeros(0, np.float32))
        row, start, label, score = (np.concatenate(x) for x in zip(*parts, strict=True))
        order = np.argsort(row, kind="stable")
        return (row[order], start[order].astype(np.int64), label[order].astype(np.int64),
                score[order].astype(np.float32))

    def label_lists(self, rows):
        """Each row's label ids as a list of int arrays."""
        lo, hi = self.label_offsets[rows], self.label_offsets[np.asarray(rows) + 1]
        return [self.labels_flat[a:b] for a, b in zip(lo, hi)]

    def class_frequencies(self, rows):
        """Share of `rows` labeled with each class (float32, as `multi_hot(rows).mean(0)`), from
        the CSR labels: no (rows x classes) matrix."""
        rows = np.asarray(rows)
        lo, hi = self.label_offsets[rows], self.label_offsets[rows + 1]
        counts = np.zeros(self.num_classes, np.int64)
        for start in range(0, len(rows), 65536):  # a chunk of rows' label ids at a time
            part = slice(start, start + 65536)
            flat = np.concatenate([self.labels_flat[a:b] for a, b in zip(lo[part], hi[part])]
                                  or [np.zeros(0, np.int64)])
            counts += np.bincount(flat, minlength=self.num_classes)[:self.num_classes]
        return (counts / max(len(rows), 1)).astype(np.float32)

    def multi_hot(self, rows, dtype=np.float32):
        """Dense (len(rows), num_classes) 0/1 label matrix."""
        rows = np.asarray(rows)
        lo, hi = self.label_offsets[rows], self.label_offsets[rows + 1]
        out = np.zeros((len(rows), self.num_classes), dtype)
        which = np.repeat(np.arange(len(rows)), hi - lo)
        out[which, self.labels_flat[csr_positions(lo, hi)]] = 1
        return out
