"""StNet clips decoded from video files by parallel workers.

`scan` opens every video once before training: a file FFmpeg cannot open, or one with fewer
frames than a segment, is an error naming it, or (asked to skip) left out and listed.
`TrainingClips` is a Keras `PyDataset`: Keras runs its `__getitem__` in `workers` threads (or
processes) ahead of the model, so decoding overlaps training. `predict_videos` decodes the
evaluation videos in a thread pool, in order, and returns every clip's softmax.

PyAV decodes and scales outside the GIL, so threads decode in parallel; processes
(`use_multiprocessing`) suit datasets whose transforms are heavier than decoding.
"""

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import keras
import numpy as np

from ..input.kinetics.video_io import VideoError, read_frames
from .clip_sampling import sample_clip


@dataclass(frozen=True)
class ClipSampling:
    """How clips are cut: T segments of N frames, frames scaled to a short side (and a long side,
    when given: the reference forces 4:3, 341 x 256), S x S crops."""

    segments: int
    segment_length: int
    short_side: int
    crop: int
    long_side: int | None = None


def frame_count(path):
    """The number of frames of `path` from its container's metadata (decoding the stream only
    when the container does not say)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for _ in container.decode(stream))
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{path}: cannot decode ({type(e).__name__}: {e})") from None


def _check(clip, min_frames):
    try:
        count = frame_count(clip.path)
    except VideoError as e:
        return str(e)
    if count < min_frames:
        return f"{clip.path}: {count} frames, fewer than one segment of {min_frames}"
    return None


def scan(clips, min_frames, skip_bad=False, workers=4, progress=False, what="videos"):
    """(usable clips, [(path, problem)] of the skipped ones). Without `skip_bad` the first bad
    video is a `VideoError` naming the file and the problem."""
    from ..progress import progress_bar

    with ThreadPoolExecutor(workers) as pool:
        checks = pool.map(lambda c: _check(c, min_frames), clips)
        problems = list(progress_bar(checks, total=len(clips), desc=f"checking {what}",
                                     unit="video", progress=progress))
    bad = [(clip.path, problem) for clip, problem in zip(clips, problems) if problem]
    if bad and not skip_bad:
        more = f" ({len(bad) - 1} more bad {what})" if len(bad) > 1 else ""
        raise VideoError(f"{bad[0][1]}{more}; fix or remove the file, or skip bad videos "
                         f"(--skip-bad-videos)")
    return [clip for clip, problem in zip(clips, problems) if not problem], bad


class TrainingClips(keras.utils.PyDataset):
    """Shuffled batches `(clips (B, T, S, S, 3N), labels (B,))` of one random clip per video,
    the last partial batch dropped. The shuffle and every clip's offsets, crop and flip are
    drawn from `(seed, epoch, batch)`, so a resumed run sees the batches an unbroken one
    would. A video that fails to decode is an error, or, with `skip_bad`, replaced by another
    video of the set and named in a warning. `cache_frames` keeps every decoded video in memory
    (per worker process), for datasets that fit: each video is then decoded once."""

    def __init__(self, clips, labels, sampling, batch_size, seed=0, skip_bad=False,
                 cache_frames=False, **kwargs):
        super().__init__(**kwargs)
        if len(clips) < batch_size:
            raise ValueError(f"{len(clips)} training videos, fewer than one batch of "
                             f"{batch_size}")
        self.clips, self.labels = list(clips), np.asarray(labels, np.int32)
        self.sampling, self.batch_size = sampling, batch_size
        self.seed, self.skip_bad = seed, skip_bad
        self.cache = {} if cache_frames else None
        self.epoch = 0
        self.order = self._order()

    def _order(self):
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.clips))

    def __len__(self):
        return len(self.clips) // self.batch_size

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.order = self._order()

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)

    def _frames(self, row, rng, attempts=10):
        if self.cache is not None and row in self.cache:
            return row, self.cache[row]
        try:
            frames = read_frames(self.clips[row].path, self.sampling.short_side,
                                 self.sampling.long_side)
        except VideoError as e:
            if not self.skip_bad or attempts <= 1:
                raise
            warnings.warn(f"{e}; training on another video instead", stacklevel=2)
            return self._frames(int(rng.integers(len(self.clips))), rng, attempts - 1)
        if self.cache is not None:
            self.cache[row] = frames
        return row, frames

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        s = self.sampling
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        clips, labels = [], []
        for row in rows:
            row, frames = self._frames(int(row), rng)
            clips.append(sample_clip(frames, s.segments, s.segment_length, s.crop, True, rng))
            labels.append(self.labels[row])
        return np.stack(clips), np.asarray(labels, np.int32)


def video_clips(path, sampling, clips):
    """The `clips` test-time clips `(clips, T, S, S, 3N)` of one video (centre crops)."""
    frames = read_frames(path, sampling.short_side, sampling.long_side)
    s = sampling
    return np.stack([sample_clip(frames, s.segments, s.segment_length, s.crop, False, clip=k,
                                 clips=clips) for k in range(clips)])


def predict_videos(model, clips, sampling, clips_per_video=1, batch_size=8, workers=2,
                   progress=False, what="videos"):
    """Softmax scores `(videos, clips_per_video, classes)` of every clip of every video, decoded
    by `workers` threads in order (a bounded look-ahead keeps memory flat); `batch_size` videos
    per forward pass."""
    from ..progress import progress_bar

    scores = []
    pending = []

    def flush():
        batch = np.concatenate(pending)
        logits = np.asarray(model.predict_on_batch(batch), np.float32)
        scores.append(keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1)))
        pending.clear()

    with ThreadPoolExecutor(workers) as pool:
        window = max(2 * workers, batch_size)
        futures = [pool.submit(video_clips, c.path, sampling, clips_per_video)
                   for c in clips[:window]]
        for i in progress_bar(range(len(clips)), desc=f"predicting {what}", unit="video",
                              progress=progress):
            if i + window < len(clips):
                futures.append(pool.submit(video_clips, clips[i + window].path, sampling,
                                           clips_per_video))
            pending.append(futures[i].result())
            futures[i] = None
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
    if not scores:
        return np.zeros((0, clips_per_video, model.output_shape[-1]), np.float32)
    return np.concatenate(scores).reshape(len(clips), clips_per_video, -1)
