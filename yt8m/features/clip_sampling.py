"""StNet's clip sampling and transforms, as the reference reader does them.

A clip is T segments of N consecutive frames. The video's L frames are cut into T equal spans
of `avg = L // T` frames; a segment starts at a random offset in its span for training and at the
centred offset otherwise; spans shorter than N start at the span's start, and videos with fewer
frames than segments take one frame per segment. Frame indices wrap around the video. All
segments share one random crop (and flip) in training, a centre crop otherwise (several
test-time clips differ in their temporal offsets); pixels are scaled to [0, 1] and normalised
with the ImageNet mean and standard deviation; each segment's N frames are stacked along the
channel axis, frame-major: a `(T, S, S, 3N)` "super-image" clip.
"""

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def segment_starts(num_frames, segments, length, train, rng=None, clip=0, clips=1):
    """The first frame of each of the `segments` segments (int array). At test time, clip
    `clip` of `clips` takes the `clip`-th of `clips` offsets spread evenly over every span, from
    its first to its last (the centred one, as the reference, when `clips` is 1)."""
    avg = num_frames // segments
    starts = np.arange(segments) * avg
    if avg >= length:
        if train:
            starts = starts + rng.integers(0, avg - length + 1, segments)
        else:
            slack = avg - length
            starts = starts + (slack * clip // (clips - 1) if clips > 1 else slack // 2)
    elif avg < 1:
        starts = np.arange(segments)
    return starts


def clip_indices(num_frames, segments, length, train, rng=None, clip=0, clips=1):
    """`(segments, length)` frame indices of one clip (wrapping around the video)."""
    starts = segment_starts(num_frames, segments, length, train, rng, clip, clips)
    return (starts[:, None] + np.arange(length)[None, :]) % num_frames


def crop(frames, size, train, rng=None):
    """One crop of `size` x `size` for every frame of `frames` `(..., H, W, 3)`: random and
    randomly flipped left-right (p = 0.5) in training, centred otherwise."""
    height, width = frames.shape[-3:-1]
    if height < size or width < size:
        raise ValueError(f"frames of {height}x{width} are smaller than the {size} crop")
    if train:
        top = int(rng.integers(0, height - size + 1))
        left = int(rng.integers(0, width - size + 1))
    else:
        top, left = (height - size) // 2, (width - size) // 2
    out = frames[..., top:top + size, left:left + size, :]
    if train and rng.random() < 0.5:
        out = out[..., ::-1, :]
    return out


def super_images(clip):
    """uint8 `(T, N, S, S, 3)` -> normalised float32 `(T, S, S, 3N)` (frame-major channels)."""
    t, n, s1, s2, _ = clip.shape
    x = (clip.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1, 4).reshape(t, s1, s2, 3 * n))


def sample_clip(frames, segments, length, size, train, rng=None, clip=0, clips=1):
    """One StNet input clip `(T, S, S, 3N)` from a video's decoded `(L, H, W, 3)` frames."""
    indices = clip_indices(len(frames), segments, length, train, rng, clip, clips)
    return super_images(crop(frames[indices], size, train, rng))
