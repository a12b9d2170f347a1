"""Batches from the feature cache for any Keras backend: numpy arrays, prepared ahead in threads.

Frames stay uint8 (a quarter of float32's bytes to move; models dequantize on the device). Each
batch is assembled with one vectorized gather per shard it touches, and the next `prefetch`
batches are assembled in background threads while the current one is used: numpy releases the
GIL while it copies, so two cores keep a small model fed.
"""

import collections
import concurrent.futures as cf

import numpy as np

from yt8m.errors import Yt8mError

SAMPLINGS = ("head", "segments", "random")


def frame_positions(lengths, num_frames, sampling, rng=None):
    """Which frames to take from each video, and which of the taken slots are real.

    Args:
        lengths: (B,) frames available per video.
        num_frames: N, frames per example in the batch.
        sampling: 'head' takes the first N frames and pads the rest (the starter code and the
            NeXtVLAD / Attention LSTM references); 'segments' splits the video into N equal
            segments and takes one frame from each, at a random place when `rng` is given and at
            the middle otherwise (Attention Cluster; repeats frames of videos shorter than N);
            'random' draws N frames with replacement, sorted, when `rng` is given, and N evenly
            spaced frames otherwise (WILLOW's random frame sampling).
        rng: a numpy Generator for the random choices of training, or None for evaluation.

    Returns:
        positions (B, N) int64 and mask (B, N) bool.
    """
    lengths = np.asarray(lengths, np.int64)
    b = len(lengths)
    slots = np.arange(num_frames)
    if sampling == "head":
        positions = np.broadcast_to(slots, (b, num_frames)).copy()
        mask = positions < lengths[:, None]
    elif sampling == "segments":
        offset = rng.random((b, num_frames)) if rng is not None else 0.5
        positions = ((slots + offset) * (lengths[:, None] / num_frames)).astype(np.int64)
        mask = np.broadcast_to(lengths[:, None] > 0, (b, num_frames)).copy()
    elif sampling == "random":
        if rng is not None:
            positions = np.sort((rng.random((b, num_frames)) * lengths[:, None]).astype(np.int64),
                                axis=1)
        else:
            positions = ((slots + 0.5) * (lengths[:, None] / num_frames)).astype(np.int64)
        mask = np.broadcast_to(lengths[:, None] > 0, (b, num_frames)).copy()
    else:
        raise Yt8mError(f"unknown frame sampling {sampling!r}; choose one of {list(SAMPLINGS)}")
    np.minimum(positions, np.maximum(lengths[:, None] - 1, 0), out=positions)
    return positions, mask


class BatchLoader:
    """Iterate over batches of cache rows, epoch after epoch.

    Args:
        cache: a `FeatureCache`.
        rows: the cache rows to serve (for example `cache.rows("train", exclude_folds=2)`).
        batch_size: examples per batch.
        num_frames: N frames per example (frame level).
        sampling: 'head', 'segments' or 'random' (see `frame_positions`).
        shuffle: shuffle rows across all shards every epoch (and sample frames at random).
        seed: fixes the shuffling and frame sampling; batch b of epoch e is the same whatever the
            thread timing.
        drop_remainder: drop the last, smaller batch.
        features: 'frames' (uint8 frames + mask) or 'means' (video-level float32 features).
        label_dtype: dtype of the multi-hot labels.
        prefetch: batches prepared ahead; 0 prepares each batch when asked.
        workers: threads that prepare batches.

    Each batch is a dict: `frames` (B, N, 1152) uint8, `mask` (B, N) bool and `num_frames` (B,)
    int32 (frame features) or `means` (B, 1152) float32, plus `labels` (B, C) and `rows` (B,) int64,
    the cache rows, for aligning predictions.
    """

    def __init__(self, cache, rows, batch_size=64, num_frames=300, sampling="head", shuffle=False,
                 seed=0, drop_remainder=False, features="frames", label_dtype=np.float32,
                 prefetch=2, workers=1):
        if features not in ("frames", "means"):
            raise Yt8mError(f"features must be 'frames' or 'means', not {features!r}")
        if features == "frames" and cache.level != "frame":
            raise Yt8mError("frame features need a frame-level cache; use features='means'")
        if sampling not in SAMPLINGS:
            raise Yt8mError(f"unknown frame sampling {sampling!r}; choose one of {list(SAMPLINGS)}")
        self.cache, self.rows = cache, np.asarray(rows, np.int64)
        if not len(self.rows):
            raise Yt8mError("no rows to load: the split/fold selection is empty")
        self.batch_size, self.num_frames, self.sampling = batch_size, num_frames, sampling
        self.shuffle, self.seed, self.drop_remainder = shuffle, seed, drop_remainder
        self.features, self.label_dtype = features, label_dtype
        self.prefetch, self.workers = prefetch, max(1, workers)
        self.epoch = 0

    def __len__(self):
        full, rest = divmod(len(self.rows), self.batch_size)
        return full + (1 if rest and not self.drop_remainder else 0)

    def order(self, epoch):
        if not self.shuffle:
            return self.rows
        return np.random.default_rng([self.seed, epoch]).permutation(self.rows)

    def batch(self, order, epoch, index):
        """Assemble batch `index` of an epoch whose row order is `order`."""
        rows = order[index * self.batch_size:(index + 1) * self.batch_size]
        out = {"rows": rows, "labels": self.cache.multi_hot(rows, self.label_dtype)}
        if self.features == "means":
            out["means"] = self.cache.means(rows)
            return out
        rng = np.random.default_rng([self.seed, epoch, index]) if self.shuffle else None
        lengths = self.cache.num_frames[rows]
        positions, mask = frame_positions(lengths, self.num_frames, self.sampling, rng)
        frames = np.empty((len(rows), self.num_frames, self.cache.feature_dim), np.uint8)
        shard_of = self.cache.shard_of[rows]
        for shard in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == shard)
            source = self.cache.shard_frames(int(shard))
            take = self.cache.frame_start[rows[sel]][:, None] + positions[sel]
            np.minimum(take, max(len(source) - 1, 0), out=take)
            frames[sel] = source[take] if len(source) else 0
        if not mask.all():
            frames[~mask] = 0
        out.update(frames=frames, mask=mask,
                   num_frames=np.minimum(lengths, self.num_frames).astype(np.int32)
                   if self.sampling == "head" else mask.sum(1).astype(np.int32))
        return out

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = self.order(epoch)
        return ahead(lambda index: self.batch(order, epoch, index), len(self), self.prefetch,
                     self.workers)


def ahead(make, count, depth=2, workers=1):
    """`make(0)`, ..., `make(count - 1)` in order, with up to `depth` of them made ahead in
    `workers` background threads (NumPy's gathers and casts release the GIL, so the next batch
    is assembled while the caller computes); `depth` 0 makes each when asked."""
    if depth <= 0:
        yield from (make(index) for index in range(count))
        return
    pool = cf.ThreadPoolExecutor(max(1, workers), thread_name_prefix="yt8m-loader")
    pending = collections.deque()
    try:
        for index in range(count):
            pending.append(pool.submit(make, index))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
