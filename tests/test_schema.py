import numpy as np
import pytest

from tests.conftest import REAL_SHARD, make_video, write_shard
from yt8m.errors import InputError
from yt8m.input.protos import SequenceExample
from yt8m.input.quantization import BIAS, SCALE, dequantize, quantize
from yt8m.input.schema import VERSIONS, decode, encode, parse, record_level, record_version
from yt8m.input.tfrecord import iter_records


def _decode_all(path, level):
    out = []
    for i, o, payload in iter_records(path):
        msg = parse(payload, path, i, o)
        out.append(decode(msg, record_version(msg, path, i), level, path, i))
    return out


def test_dequantize_matches_the_starter_code():
    q = np.arange(256, dtype=np.uint8)
    expected = q.astype(np.float32) * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)
    np.testing.assert_allclose(dequantize(q), expected, rtol=0, atol=1e-7)
    assert dequantize(np.uint8(0)) == np.float32(-1.9921875)
    assert dequantize(np.uint8(255)) == np.float32(2.0078125)
    assert SCALE == 4 / 255 and BIAS == 4 / 512 - 2
    # The quantizer inverts the grid and clips out-of-range values.
    np.testing.assert_array_equal(quantize(dequantize(q) - 4 / 512), q)
    np.testing.assert_array_equal(quantize([-5.0, 5.0]), [0, 255])


@pytest.mark.parametrize("version", ["2017", "2018", "2019"])
def test_frame_records_round_trip_and_tensorflow_agrees(tmp_path, version):
    import tensorflow as tf

    video = make_video("abcd", frames=7, labels=(3, 4000 if version == "2017" else 3000))
    if version == "2019":
        video.segment_start_times = np.array([0, 5], np.int64)
        video.segment_labels = np.array([3, 12], np.int64)
        video.segment_scores = np.array([1.0, 0.0], np.float32)
    payload = encode(video, version, "frame")
    msg = parse(payload, "x", 0)
    assert record_level(msg) == "frame"
    assert record_version(msg, "x", 0) is VERSIONS[version]
    back = decode(msg, VERSIONS[version], "frame", "x", 0)
    assert back.id == "abcd" and list(back.labels) == list(video.labels)
    np.testing.assert_array_equal(back.rgb, video.rgb)
    np.testing.assert_array_equal(back.audio, video.audio)
    if version == "2019":  # every rating field, in order
        np.testing.assert_array_equal(back.segment_start_times, [0, 5])
        np.testing.assert_array_equal(back.segment_labels, [3, 12])
        np.testing.assert_array_equal(back.segment_scores, [1.0, 0.0])
    # TensorFlow's own parser reads the same record the same way.
    id_key = VERSIONS[version].id_key
    ctx, seq = tf.io.parse_single_sequence_example(
        payload, {id_key: tf.io.FixedLenFeature([], tf.string),
                  "labels": tf.io.VarLenFeature(tf.int64)},
        {"rgb": tf.io.FixedLenSequenceFeature([], tf.string),
         "audio": tf.io.FixedLenSequenceFeature([], tf.string)})
    assert ctx[id_key].numpy() == b"abcd"
    assert list(ctx["labels"].values.numpy()) == list(video.labels)
    np.testing.assert_array_equal(tf.io.decode_raw(seq["rgb"], tf.uint8).numpy(), video.rgb)


def test_video_level_records_round_trip_and_tensorflow_agrees():
    import tensorflow as tf

    video = make_video("wxyz", labels=(0, 17))
    payload = encode(video, "2018", "video")
    msg = parse(payload, "x", 0)
    assert record_level(msg) == "video"
    back = decode(msg, VERSIONS["2018"], "video", "x", 0)
    np.testing.assert_array_equal(back.mean_rgb, video.mean_rgb)
    parsed = tf.io.parse_single_example(payload, {
        "id": tf.io.FixedLenFeature([], tf.string),
        "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32)})
    np.testing.assert_array_equal(parsed["mean_rgb"].numpy(), video.mean_rgb)
    assert record_level(SequenceExample.FromString(payload)) == "video"


def test_test_records_have_no_labels(tmp_path):
    path = write_shard(tmp_path / "test0000.tfrecord", [make_video("t1", labels=None)])
    (video,) = _decode_all(path, "frame")
    assert video.labels is None and video.num_frames == 5


def test_missing_id_key_says_what_each_version_expects():
    msg = SequenceExample()
    msg.context.feature["labels"].int64_list.value.append(1)
    msg.context.feature["vid"].bytes_list.value.append(b"a")
    with pytest.raises(InputError, match=r"record 4: no video id key: found context keys "
                                         r"\['labels', 'vid'\]; 2017 \(v1\) records carry "
                                         r"'video_id'.*2018 \(v2\).*'id'"):
        record_version(msg, "train0001.tfrecord", 4)


def test_wrong_frame_size_names_video_frame_and_expected_size(tmp_path):
    video = make_video("bad1", frames=4)
    payload = encode(video, "2018", "frame")
    msg = parse(payload, "x", 0)
    msg.feature_lists.feature_list["audio"].feature[2].bytes_list.value[0] = b"\x00" * 100
    with pytest.raises(InputError, match=r"record 9: video 'bad1': frame 2 of 'audio' has 100 "
                                         r"bytes; YouTube-8M 'audio' frames have 128"):
        decode(msg, VERSIONS["2018"], "frame", "f.tfrecord", 9)
    vmsg = parse(encode(video, "2018", "video"), "x", 0)
    del vmsg.context.feature["mean_rgb"].float_list.value[-1]
    with pytest.raises(InputError, match="'mean_rgb' has 1023 values; YouTube-8M 'mean_rgb' has "
                                         "1024"):
        decode(vmsg, VERSIONS["2018"], "video", "f.tfrecord", 0)


def test_level_mismatch_both_ways():
    frame = parse(encode(make_video("a"), "2018", "frame"), "x", 0)
    video = parse(encode(make_video("a"), "2018", "video"), "x", 0)
    with pytest.raises(InputError, match=r"this is a frame-level SequenceExample.*but a "
                                         r"video-level Example .* was expected"):
        decode(frame, VERSIONS["2018"], "video", "v.tfrecord", 0)
    with pytest.raises(InputError, match=r"this is a video-level Example.*but a frame-level "
                                         r"SequenceExample .* was expected.*input/video/"):
        decode(video, VERSIONS["2018"], "frame", "f.tfrecord", 0)


def test_genuine_2018_video_level_shard_reads_correctly():
    if not REAL_SHARD.exists():
        pytest.fail(f"the real sample shard is missing: {REAL_SHARD}")
    videos = _decode_all(REAL_SHARD, "video")
    assert len(videos) == 243
    ids = [v.id for v in videos]
    assert "lAbf" in ids and len(set(ids)) == 243 and all(len(i) == 4 for i in ids)
    counts = [len(v.labels) for v in videos]
    assert min(counts) == 1 and max(counts) == 9
    assert 2.9 < np.mean(counts) < 3.2
    assert max(int(v.labels.max()) for v in videos) < 3862
    means = np.stack([np.concatenate([v.mean_rgb, v.mean_audio]) for v in videos])
    assert means.min() >= -1.9921875 and means.max() <= 2.0078125
    msg = parse(next(iter_records(REAL_SHARD))[2], REAL_SHARD, 0)
    assert record_version(msg, REAL_SHARD, 0).name == "2018"
