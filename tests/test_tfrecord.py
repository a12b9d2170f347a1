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


def _shard(tmp_path, n):
    return write_shard(tmp_path / "train0000.tfrecord", [make_video(f"v{i}", frames=2, seed=i)
                                                         for i in range(n)])


def test_skip_corrupt_resynchronises_after_a_bad_length_header(tmp_path):
    path = _shard(tmp_path, 20)
    records = list(iter_records(path))
    data = bytearray(path.read_bytes())
    data[records[10][1] + 3] ^= 0x10  # record 10's length: now far beyond the file's end
    path.write_bytes(bytes(data))
    stats = ReadStats()
    kept = [p for _, _, p in iter_records(path, skip_corrupt=True, stats=stats)]
    assert kept == [p for i, _, p in records if i != 10]
    assert (stats.records, stats.skipped, stats.skipped_bytes) == (19, 1, 0)
    assert f"byte {records[10][1]}" in stats.problems[0]


def test_skip_corrupt_reports_the_bytes_of_a_gap_it_cannot_count(tmp_path):
    path = _shard(tmp_path, 10)
    records = list(iter_records(path))
    data = bytearray(path.read_bytes())
    start, end = records[3][1] + 100, records[5][1] + 100  # from inside record 3 into record 5
    data[start:end] = bytes(end - start)  # a hole of zeros, as a failed download leaves
    path.write_bytes(bytes(data))
    stats = ReadStats()
    kept = [p for _, _, p in iter_records(path, skip_corrupt=True, stats=stats)]
    assert kept == [p for i, _, p in records if i not in (3, 4, 5)]
    # Record 3's header is intact (1 record, counted); records 4 and 5 lie in one gap whose
    # record count cannot be told from its bytes.
    assert stats.skipped == 1 and stats.skipped_bytes == records[6][1] - records[4][1]
    assert f"{records[6][1] - records[4][1]} bytes" in stats.problems[1]


def test_skip_corrupt_without_any_record_reads_nothing_quickly(tmp_path):
    path = tmp_path / "train0000.tfrecord"
    path.write_bytes(np.random.default_rng(0).bytes(3_000_000) + bytes(2_000_000))
    stats = ReadStats()
    assert list(iter_records(path, skip_corrupt=True, stats=stats)) == []
    assert stats.skipped_bytes == 5_000_000 and stats.records == 0


def test_gzip_shards_read_as_the_plain_ones(tmp_path):
    import gzip

    path = _shard(tmp_path, 5)
    packed = tmp_path / "train0001.tfrecord"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert list(iter_records(packed)) == list(iter_records(path))
    assert read_first_record(packed) == read_first_record(path)
    packed.write_bytes(gzip.compress(path.read_bytes())[:-300])  # a truncated download
    with pytest.raises(InputError, match="train0001.tfrecord: .*gzip.*re-download"):
        list(iter_records(packed))
    stats = ReadStats()
    assert len(list(iter_records(packed, skip_corrupt=True, stats=stats))) == 4
    assert stats.skipped == 1 and "gzip" in " ".join(stats.problems)
