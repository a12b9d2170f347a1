"""The Kinetics side's data: video decoding, StNet's clip sampling, the sample video competition."""

import numpy as np
import pandas as pd
import pytest

from yt8m.features import clip_sampling as sampling
from yt8m.input.kinetics.sample import CLASSES, VideoSampleSpec, generate, render, video_file
from yt8m.input.kinetics.video_io import VideoError, read_frames, write_video

SMALL = VideoSampleSpec(train_per_class=2, validate_per_class=1, test_per_class=1)


def test_segment_starts_follow_the_reference():
    rng = np.random.default_rng(0)
    # 70 frames, 7 segments of 5: spans of 10; centred offset (10 - 5) // 2 = 2
    np.testing.assert_array_equal(sampling.segment_starts(70, 7, 5, False),
                                  np.arange(7) * 10 + 2)
    for _ in range(20):  # training: anywhere the segment fits in its span
        offsets = sampling.segment_starts(70, 7, 5, True, rng) - np.arange(7) * 10
        assert ((offsets >= 0) & (offsets <= 5)).all()
    np.testing.assert_array_equal(sampling.segment_starts(21, 7, 5, True, rng), np.arange(7) * 3)
    # three test clips: the first, middle and last offsets of every span
    for clip, offset in enumerate((0, 2, 5)):
        np.testing.assert_array_equal(sampling.segment_starts(70, 7, 5, False, clip=clip,
                                                              clips=3), np.arange(7) * 10 + offset)
    np.testing.assert_array_equal(sampling.segment_starts(4, 7, 5, False), np.arange(7))
    indices = sampling.clip_indices(4, 7, 5, False)
    assert indices.shape == (7, 5) and indices.max() == 3  # wraps around a short video
    np.testing.assert_array_equal(indices[0], [0, 1, 2, 3, 0])


def test_one_crop_and_flip_for_every_frame_and_frame_major_super_images():
    frames = np.random.default_rng(0).integers(0, 256, (3, 2, 10, 12, 3)).astype(np.uint8)
    centre = sampling.crop(frames, 6, train=False)
    np.testing.assert_array_equal(centre, frames[..., 2:8, 3:9, :])
    for seed in range(8):
        out = sampling.crop(frames, 6, True, np.random.default_rng(seed))
        # the same window (and flip) in every frame: find it from the first frame
        def window(top, left, flip):
            w = frames[..., top:top + 6, left:left + 6, :]
            return w[..., ::-1, :] if flip else w

        found = [(t, x, f) for t in range(5) for x in range(7) for f in (False, True)
                 if np.array_equal(out[0, 0], window(t, x, f)[0, 0])]
        np.testing.assert_array_equal(out, window(*found[0]))
    x = sampling.super_images(centre)
    assert x.shape == (3, 6, 6, 6) and x.dtype == np.float32
    second = (centre[1, 1] / 255.0 - sampling.IMAGENET_MEAN) / sampling.IMAGENET_STD
    np.testing.assert_allclose(x[1, ..., 3:6], second, atol=1e-5)  # segment 1, frame 1


def test_video_round_trip_scaling_and_bad_files(tmp_path):
    spec = VideoSampleSpec()
    frames = render("moving up", spec, np.random.default_rng(0))
    write_video(tmp_path / "v.mp4", frames, fps=spec.fps)
    decoded = read_frames(tmp_path / "v.mp4")
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 6  # H.264 at crf 18: close
    assert read_frames(tmp_path / "v.mp4", short_side=48).shape == (spec.frames, 48, 64, 3)
    # the reference's fixed 4:3 (341 x 256), here 50 x 32 from 128 x 96
    assert read_frames(tmp_path / "v.mp4", 32, 50).shape == (spec.frames, 32, 50, 3)
    (tmp_path / "bad.mp4").write_bytes(b"not a video" * 50)
    with pytest.raises(VideoError, match="bad.mp4: cannot decode"):
        read_frames(tmp_path / "bad.mp4")


def test_the_classes_of_a_pair_are_the_same_video_reversed():
    from yt8m.input.kinetics.sample import PAIRS

    spec = VideoSampleSpec()
    for forwards, backwards in PAIRS:
        a = render(forwards, spec, np.random.default_rng(1))
        b = render(backwards, spec, np.random.default_rng(1))
        np.testing.assert_array_equal(a[::-1], b)  # the same frames: order is the only cue
        change = np.abs(np.diff(a.astype(int), axis=0)).sum(axis=(1, 2, 3))
        assert (change > 0).all(), forwards  # something changes between every two frames
    up = render("moving up", spec, np.random.default_rng(2))
    rows = np.abs(np.diff(up.astype(int), axis=0)).sum(axis=(0, 2, 3)).nonzero()[0]
    assert rows.max() - rows.min() > spec.height * 0.3  # it travels a good part of the frame


def test_sample_competition_layout(tmp_path):
    assert generate(tmp_path, SMALL, progress=False)
    train = pd.read_csv(tmp_path / "train.csv")
    assert list(train.columns) == ["label", "youtube_id", "time_start", "time_end", "split"]
    assert len(train) == 2 * len(CLASSES) and set(train["label"]) == set(CLASSES)
    test = pd.read_csv(tmp_path / "test.csv")
    assert "label" not in test and len(test) == len(CLASSES)
    solution = pd.read_csv(tmp_path / "solution.csv")
    assert list(solution["youtube_id"]) == list(test["youtube_id"])
    for row in train.itertuples():
        path = tmp_path / video_file("train", row.youtube_id, row.time_start, row.time_end,
                                     row.label)
        assert read_frames(path).shape == (SMALL.frames, SMALL.height, SMALL.width, 3)
    assert (tmp_path / video_file("test", *test.iloc[0][["youtube_id", "time_start",
                                                          "time_end"]])).is_file()
    stamp = (tmp_path / "train.csv").stat().st_mtime_ns
    assert not generate(tmp_path, SMALL, progress=False)  # the same sample: nothing to do
    assert (tmp_path / "train.csv").stat().st_mtime_ns == stamp


def test_dataset_from_the_csvs_and_from_class_folders(tmp_path):
    from yt8m.input.kinetics.dataset import class_names, read_split

    generate(tmp_path / "csv", SMALL, progress=False)
    train = read_split(tmp_path / "csv", "train")
    assert len(train.clips) == 2 * len(CLASSES) and not train.missing
    assert class_names(train) == sorted(CLASSES)
    assert all(c.path.is_file() and c.label in CLASSES for c in train.clips)
    test = read_split(tmp_path / "csv", "test")
    assert len(test.clips) == len(CLASSES) and all(c.label is None for c in test.clips)

    folders = tmp_path / "folders" / "train"  # one folder per class, no CSV
    for clip in train.clips:
        (folders / clip.label).mkdir(parents=True, exist_ok=True)
        (folders / clip.label / f"{clip.video_id}.mp4").write_bytes(clip.path.read_bytes())
    by_folder = read_split(tmp_path / "folders", "train")
    assert sorted((c.video_id, c.label) for c in by_folder.clips) == \
        sorted((c.video_id, c.label) for c in train.clips)


def test_missing_videos_are_an_error_or_skipped_and_counted(tmp_path):
    from yt8m.errors import Yt8mError
    from yt8m.input.kinetics.dataset import read_split

    generate(tmp_path, SMALL, progress=False)
    gone = read_split(tmp_path, "validate").clips[2].path
    gone.unlink()
    with pytest.raises(Yt8mError, match=r"validate.csv, line 4: no video .*_\d{6}_\d{6}\.mp4"):
        read_split(tmp_path, "validate")
    kept = read_split(tmp_path, "validate", skip_missing=True)
    assert len(kept.clips) == len(CLASSES) - 1 and len(kept.missing) == 1
    (tmp_path / "train.csv").write_text("label,video\nx,y\n")
    with pytest.raises(Yt8mError, match="train.csv: no column youtube_id, time_start, time_end"):
        read_split(tmp_path, "train")


def _coded_video(frames=40, height=32, width=40):
    """Frames whose pixels name themselves: (frame index, row, column) in the three channels."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    return np.stack([t, y, x], axis=-1).astype(np.uint8)


def _clip_parameters(clip, segments, length):
    """(segment starts, crop top, crop left, flipped) read back from a `(T, S, S, 3N)` clip of
    `_coded_video` frames."""
    size = clip.shape[1]
    frames = clip.reshape(segments, size, size, length, 3).transpose(0, 3, 1, 2, 4)
    values = np.rint((frames * sampling.IMAGENET_STD + sampling.IMAGENET_MEAN) * 255).astype(int)
    index, rows, columns = values[..., 0], values[0, 0, :, 0, 1], values[0, 0, 0, :, 2]
    assert (index == index[..., :1, :1]).all()  # one frame per (segment, position)
    assert (values[..., 1] == rows[:, None]).all() and (values[..., 2] == columns).all()
    flipped = bool(columns[0] > columns[-1])
    np.testing.assert_array_equal(np.abs(np.diff(columns)), 1)  # one contiguous window
    return (tuple(int(i) for i in index[:, 0, 0, 0]), int(rows[0]), int(columns.min()),
            flipped)


def test_training_crops_offsets_and_flips_follow_the_seed(monkeypatch):
    """`TrainingClips`, the trainer's batches: the same seed gives the same offsets, crop and
    flip for every video; another seed, other ones for the same video in the same batch slot."""
    from types import SimpleNamespace

    from yt8m.features import clip_loader as loader

    video = _coded_video()
    monkeypatch.setattr(loader, "read_frames", lambda path, short, long=None: video)
    segments, length, videos = 4, 3, 8
    plan = loader.ClipSampling(segments=segments, segment_length=length, short_side=32, crop=28)
    clips = [SimpleNamespace(path=f"video{i}.mp4") for i in range(videos)]

    def parameters(seed):
        batches = loader.TrainingClips(clips, np.arange(videos), plan, batch_size=4, seed=seed)
        order = batches.order.copy()
        batches.order = np.arange(videos)  # the same video in the same slot whatever the seed
        out = [_clip_parameters(clip, segments, length)
               for b in range(len(batches)) for clip in batches[b][0]]
        return out, order

    first, order = parameters(0)
    again, same_order = parameters(0)
    assert again == first and (same_order == order).all()
    other, other_order = parameters(1)
    assert not (other_order == order).all()  # the shuffle follows the seed too
    for starts, top, left, _ in first + other:
        offsets = np.asarray(starts) - np.arange(segments) * (len(video) // segments)
        assert ((offsets >= 0) & (offsets <= len(video) // segments - length)).all()
        assert 0 <= top <= 32 - 28 and 0 <= left <= 40 - 28
    # per video, seed 0 against seed 1: the temporal offsets, the crop window and the flip
    pairs = list(zip(first, other))
    assert sum(a[0] != b[0] for a, b in pairs) >= videos // 2, f"same offsets: {pairs}"
    assert sum(a[1:3] != b[1:3] for a, b in pairs) >= videos // 2, f"same crops: {pairs}"
    assert any(a[3] != b[3] for a, b in pairs), f"same flips: {pairs}"
    assert {p[3] for p in first + other} == {False, True}  # both flips are drawn
