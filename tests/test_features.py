import json
import os

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REAL_SHARD, TINY, make_video, write_shard
from yt8m.errors import InputError, Yt8mError
from yt8m.features.cache import FeatureCache
from yt8m.features.writer import build_features
from yt8m.input.quantization import dequantize
from yt8m.input.schema import VERSIONS, decode, parse, record_version
from yt8m.input.tfrecord import iter_records


def _videos(path):
    out = []
    for i, o, p in iter_records(path):
        m = parse(p, path, i, o)
        out.append(decode(m, record_version(m, path, i), "frame", path, i))
    return out


def test_cache_holds_exactly_what_the_shards_hold(tiny_input, tiny_features):
    cache = FeatureCache(tiny_features)
    manifest = cache.manifest
    assert manifest["version"] == "2018" and manifest["num_classes"] == TINY.num_classes
    assert len(cache) == 6 * TINY.videos_per_shard
    assert list(cache.shard_names) == ["train0000", "train0001", "train0002", "train0003",
                                       "validate0000", "test0000"]
    videos = _videos(tiny_input / "frame" / "validate0000.tfrecord")
    rows = cache.rows("validate")
    assert list(cache.ids[rows]) == [v.id for v in videos]
    for row, video in zip(rows[:5], videos[:5]):
        frames = cache.frames(row)
        np.testing.assert_array_equal(frames[:, :1024], video.rgb)
        np.testing.assert_array_equal(frames[:, 1024:], video.audio)
        expected_mean = dequantize(np.concatenate([video.rgb, video.audio], 1)).mean(0)
        np.testing.assert_allclose(cache.means([row])[0], expected_mean, atol=1e-5)
    assert [list(x) for x in cache.label_lists(rows)] == [list(v.labels) for v in videos]
    hot = cache.multi_hot(rows[:3])
    assert hot.shape == (3, TINY.num_classes)
    assert hot.sum() == sum(len(v.labels) for v in videos[:3])
    test_rows = cache.rows("test")
    assert np.diff(cache.label_offsets)[test_rows].sum() == 0


def test_every_labeled_video_is_in_exactly_one_fold(tiny_features):
    cache = FeatureCache(tiny_features)
    labeled = cache.rows(["train", "validate"])
    assert (cache.fold[labeled] >= 0).all()
    assert (cache.fold[cache.rows("test")] == -1).all()
    per_fold = [cache.rows(folds=k) for k in range(cache.num_folds)]
    assert cache.num_folds == 5
    joined = np.concatenate(per_fold)
    assert len(joined) == len(set(joined)) == len(labeled)
    # A shard never straddles two folds.
    for shard in range(len(cache.shard_names)):
        assert len(set(cache.fold[cache.shard_of == shard])) == 1


def test_rebuild_is_a_no_op_and_changed_sources_are_reconverted(workspace):
    input_dir, features = workspace
    first = build_features(input_dir, features, workers=2, progress=False)
    assert first["converted_now"] == 6
    stamp = (features / "frame" / "train0001" / "meta.json").stat().st_mtime_ns
    manifest_stamp = (features / "frame" / "manifest.json").stat().st_mtime_ns
    assert build_features(input_dir, features, progress=False)["converted_now"] == 0
    # an unchanged cache keeps its manifest file, so Make sees nothing new downstream
    assert (features / "frame" / "manifest.json").stat().st_mtime_ns == manifest_stamp
    shard = input_dir / "frame" / "train0002.tfrecord"
    write_shard(shard, [make_video(f"new{i}", seed=i) for i in range(4)])
    again = build_features(input_dir, features, progress=False)
    assert again["converted_now"] == 1
    assert (features / "frame" / "train0001" / "meta.json").stat().st_mtime_ns == stamp
    cache = FeatureCache(features)
    assert sorted(cache.ids[cache.shard_of == 2]) == ["new0", "new1", "new2", "new3"]


def test_interrupted_conversion_leftovers_are_cleaned_and_redone(workspace):
    input_dir, features = workspace
    build_features(input_dir, features, workers=1, progress=False)
    # What a kill mid-write leaves: a temporary folder, and (say) a shard folder without meta.
    (features / "frame" / ".train0000.abc.tmp").mkdir()
    (features / "frame" / "train0001" / "meta.json").unlink()
    result = build_features(input_dir, features, workers=1, progress=False)
    assert result["converted_now"] == 1
    assert not list((features / "frame").glob(".*.tmp"))


def test_folds_stay_put_when_shards_are_added(workspace):
    input_dir, features = workspace
    build_features(input_dir, features, progress=False, num_folds=3)
    before = pd.read_csv(features / "folds.csv")
    for i in (4, 5):
        write_shard(input_dir / "frame" / f"train000{i}.tfrecord",
                    [make_video(f"add{i}-{j}", seed=j) for j in range(TINY.videos_per_shard)])
    build_features(input_dir, features, progress=False)  # no K given: the existing K (3)
    after = pd.read_csv(features / "folds.csv")
    assert set(after["num_folds"]) == {3}
    pd.testing.assert_frame_equal(after.iloc[:len(before)], before)
    assert len(after) == len(before) + 2
    sizes = after.groupby("fold")["videos"].sum()
    assert sizes.max() - sizes.min() <= TINY.videos_per_shard
    with pytest.raises(Yt8mError, match="written with 3 folds but 5 were asked for"):
        build_features(input_dir, features, progress=False, num_folds=5)


def _snapshot(features):
    return {p: p.read_bytes() for p in [features / "folds.csv", features / "frame" /
                                        "manifest.json"]}


def _damage_truncate(input_dir):
    path = input_dir / "frame" / "train0001.tfrecord"
    path.write_bytes(path.read_bytes()[:-5000])
    return "train0001.tfrecord, record 29 .*truncated"


def _damage_crc(input_dir):
    path = input_dir / "frame" / "train0001.tfrecord"
    data = bytearray(path.read_bytes())
    offset = list(iter_records(path))[3][1]
    data[offset + 500] ^= 0x55
    path.write_bytes(bytes(data))
    return rf"train0001.tfrecord, record 3 \(byte {offset}\): .*CRC32C"


def _damage_size(input_dir):
    write_shard(input_dir / "frame" / "train0001.tfrecord",
                [make_video("ok"), make_video("short", rgb=np.zeros((5, 1000), np.uint8))])
    return "train0001.tfrecord, record 1: video 'short': frame 0 of 'rgb' has 1000 bytes"


def _damage_level(input_dir):
    write_shard(input_dir / "frame" / "train0001.tfrecord", [make_video("v")], level="video")
    return "train0001.tfrecord, record 0: this is a video-level Example"


def _damage_label(input_dir):
    write_shard(input_dir / "frame" / "train0001.tfrecord",
                [make_video("a"), make_video("b", labels=(5, 3862))])
    return "train0001.tfrecord, record 1 .*label 3862 of video 'b' is outside the vocabulary"


def _damage_duplicate(input_dir):
    clash = _videos(input_dir / "frame" / "train0000.tfrecord")[7].id
    write_shard(input_dir / "frame" / "train0001.tfrecord", [make_video(clash)])
    return f"train0001.tfrecord: video id '{clash}' is also in .*train0000.tfrecord"


def _damage_empty(input_dir):
    (input_dir / "frame" / "train0001.tfrecord").write_bytes(b"")
    return "train0001.tfrecord: the file is empty"


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_crc, _damage_size, _damage_level,
                                    _damage_label, _damage_duplicate, _damage_empty])
def test_bad_input_gives_one_clear_error_and_keeps_outputs(workspace, damage):
    input_dir, features = workspace
    build_features(input_dir, features, progress=False)
    before = _snapshot(features)
    os.utime(input_dir / "frame" / "train0001.tfrecord", ns=(1, 1))
    expected = damage(input_dir)
    with pytest.raises(Yt8mError, match=expected):
        build_features(input_dir, features, workers=2, progress=False)
    assert _snapshot(features) == before
    FeatureCache(features)  # the previous cache still opens


def test_skip_corrupt_counts_records_in_the_manifest(workspace):
    input_dir, features = workspace
    _damage_crc(input_dir)
    manifest = build_features(input_dir, features, skip_corrupt=True, progress=False)
    assert manifest["skipped_records"] == 1
    entry = next(s for s in manifest["shards"] if s["name"] == "train0001")
    assert entry["skipped_records"] == 1 and entry["videos"] == TINY.videos_per_shard - 1
    meta = json.loads((features / "frame" / "train0001" / "meta.json").read_text())
    assert "CRC32C" in meta["problems"][0]


def test_empty_input_and_unwritable_output(tmp_path):
    with pytest.raises(Yt8mError, match=r"no \.tfrecord shards under .*input/frame/.*make sample"):
        build_features(tmp_path / "input", tmp_path / "features", progress=False)
    write_shard(tmp_path / "input" / "frame" / "train0000.tfrecord", [make_video("a")])
    # A path that cannot become a folder is unwritable even for root (permission bits are not).
    blocked = tmp_path / "features"
    blocked.write_text("a file, not a folder")
    with pytest.raises(Yt8mError, match="features/frame: cannot write here"):
        build_features(tmp_path / "input", blocked, progress=False)
    assert blocked.read_text() == "a file, not a folder"


def test_too_few_shards_for_the_folds(tmp_path):
    write_shard(tmp_path / "input" / "frame" / "train0000.tfrecord", [make_video("a")])
    with pytest.raises(Yt8mError, match="only 1 labeled shards for 5 folds.*--folds 2"):
        build_features(tmp_path / "input", tmp_path / "features", progress=False)


def test_long_videos_keep_their_first_300_frames(tmp_path):
    long = make_video("long", frames=340)
    for i, video in enumerate([long, make_video("s")]):
        write_shard(tmp_path / "input" / "frame" / f"train000{i}.tfrecord", [video])
    manifest = build_features(tmp_path / "input", tmp_path / "features", progress=False,
                              num_folds=2)
    assert manifest["shards"][0]["truncated_videos"] == 1
    cache = FeatureCache(tmp_path / "features")
    np.testing.assert_array_equal(cache.frames(0)[:, :1024], long.rgb[:300])
    assert list(cache.num_frames) == [300, 5]


def test_2017_and_2019_shards(tmp_path):
    for i in range(2):
        write_shard(tmp_path / "a" / "frame" / f"train000{i}.tfrecord",
                    [make_video(f"old{i}", labels=(4715,))], version="2017")
    manifest = build_features(tmp_path / "a", tmp_path / "fa", progress=False, num_folds=2)
    assert manifest["version"] == "2017" and manifest["num_classes"] == VERSIONS["2017"].num_classes
    rated = make_video("seg1", frames=12, segment_start_times=np.array([0, 5]),
                       segment_labels=np.array([7, 9]), segment_scores=np.array([1.0, 0.0]))
    write_shard(tmp_path / "b" / "frame" / "validate0000.tfrecord", [rated], version="2019")
    write_shard(tmp_path / "b" / "frame" / "train0000.tfrecord", [make_video("tr")], version="2018")
    manifest = build_features(tmp_path / "b", tmp_path / "fb", progress=False, num_folds=2)
    assert manifest["version"] == "2019"
    cached = tmp_path / "fb" / "frame" / "validate0000"
    np.testing.assert_array_equal(np.load(cached / "segment_offsets.npy"), [0, 2])
    np.testing.assert_array_equal(np.load(cached / "segment_start_times.npy"), [0, 5])
    np.testing.assert_array_equal(np.load(cached / "segment_labels.npy"), [7, 9])
    np.testing.assert_array_equal(np.load(cached / "segment_scores.npy"), [1.0, 0.0])
    write_shard(tmp_path / "b" / "frame" / "test0000.tfrecord", [make_video("o")], version="2017")
    with pytest.raises(Yt8mError, match="input mixes dataset versions"):
        build_features(tmp_path / "b", tmp_path / "fb", progress=False, num_folds=2)


def test_genuine_video_level_shard_builds_a_video_cache(tmp_path):
    (tmp_path / "input" / "video").mkdir(parents=True)
    (tmp_path / "input" / "video" / "validate0067.tfrecord").symlink_to(REAL_SHARD)
    # One shard cannot make folds; fold only the (absent) train split.
    manifest = build_features(tmp_path / "input", tmp_path / "features", level="video",
                              fold_splits=("train",), progress=False)
    assert manifest["totals"]["validate"]["videos"] == 243
    cache = FeatureCache(tmp_path / "features", "video")
    means = cache.means(cache.rows("validate"))
    assert means.shape == (243, 1152) and means.min() >= -1.9921875
    assert cache.ids[0] != "" and (cache.fold == -1).all() and cache.num_folds == 0
    with pytest.raises(InputError, match="this is a video-level Example"):
        (tmp_path / "input" / "frame").mkdir()
        (tmp_path / "input" / "frame" / "validate0067.tfrecord").symlink_to(REAL_SHARD)
        build_features(tmp_path / "input", tmp_path / "features", level="frame", progress=False)
