import numpy as np
import pytest

from tests.conftest import make_video, write_shard
from yt8m.errors import InputError
from yt8m.input.tfrecord import ReadStats, iter_records, read_first_record


def test_reads_back_what_tensorflow_wrote(tmp_path):
    import tensorflow as tf

    payloads = [b"first", b"", bytes(range(256)) * 40]
    with tf.io.TFRecordWriter(str(tmp_path / "a.tfrecord")) as w:
        for p in payloads:
            w.write(p)
    got = list(iter_records(tmp_path / "a.tfrecord"))
    assert [p for _, _, p in got] == payloads
    assert [i for i, _, _ in got] == [0, 1, 2]
    # Offsets: 16 bytes of framing per record.
    assert [o for _, o, _ in got] == [0, 16 + 5, 16 + 5 + 16]
    assert read_first_record(tmp_path / "a.tfrecord") == b"first"


def _three_record_shard(tmp_path):
    return write_shard(tmp_path / "train0000.tfrecord", [make_video(f"v{i}", seed=i)
                                                         for i in range(3)])


def test_truncated_shard_names_record_and_byte(tmp_path):
    path = _three_record_shard(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(InputError, match=r"train0000.tfrecord, record 2 \(byte \d+\): .*truncated"):
        list(iter_records(path))
    stats = ReadStats()
    assert len(list(iter_records(path, skip_corrupt=True, stats=stats))) == 2
    assert stats.skipped == 1 and "truncated" in stats.problems[0]


def test_bad_data_crc_is_reported_or_skipped(tmp_path):
    path = _three_record_shard(tmp_path)
    records = list(iter_records(path))
    data = bytearray(path.read_bytes())
    data[records[1][1] + 12 + 40] ^= 0xFF  # a byte inside record 1's data
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"record 1 \(byte {records[1][1]}\): .*CRC32C"):
        list(iter_records(path))
    stats = ReadStats()
    kept = [i for i, _, _ in iter_records(path, skip_corrupt=True, stats=stats)]
    assert kept == [0, 2] and stats.skipped == 1 and stats.records == 2


def test_bad_length_header_stops_the_shard(tmp_path):
    path = _three_record_shard(tmp_path)
    data = bytearray(path.read_bytes())
    data[2] ^= 0x01  # the first record's length
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="length header fails its CRC32C"):
        list(iter_records(path))
    with pytest.raises(InputError, match="record 0"):
        read_first_record(path)


def test_not_a_tfrecord_file(tmp_path):
    path = tmp_path / "train0000.tfrecord"
    path.write_bytes(np.random.default_rng(0).bytes(64))
    with pytest.raises(InputError, match="length header"):
        list(iter_records(path))
