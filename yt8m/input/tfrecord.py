"""TFRecord framing: read with exact error positions, write through TensorFlow's own writer.

A TFRecord file is a sequence of records, each
`uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)`, little-endian.
Reading it here (rather than with `tf.data.TFRecordDataset`) gives the record index and byte offset
of every problem, and lets a corrupt record be skipped and counted: TensorFlow's reader stops at the
first one, which is no use for a multi-terabyte download with a few bad records.
"""

import struct
from dataclasses import dataclass, field
from pathlib import Path

import crc32c

from yt8m.errors import InputError

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


def masked_crc(data):
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass
class ReadStats:
    """What a read met: records read, records skipped as corrupt, and why."""

    records: int = 0
    skipped: int = 0
    problems: list = field(default_factory=list)


def iter_records(path, skip_corrupt=False, stats=None, data=None):
    """Yield `(index, offset, payload)` for every record of the TFRecord file `path`.

    Args:
        path: the file (named in errors).
        skip_corrupt: if True, a record whose data fails its checksum is skipped and counted in
            `stats`; a damaged length header or a truncated tail ends the file early, also counted.
            If False, the first problem raises `InputError`.
        stats: an optional `ReadStats` that is updated as the file is read.
        data: the file's bytes, if the caller already has them.
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    if data is None:
        data = path.read_bytes()
    view = memoryview(data)
    size, offset, index = len(data), 0, 0

    def problem(message):
        if not skip_corrupt:
            raise InputError(path, message, record=index, offset=offset)
        stats.skipped += 1
        stats.problems.append(f"record {index} (byte {offset}): {message}")

    while offset < size:
        if size - offset < _HEADER.size:
            problem(f"the file ends inside a record header ({size - offset} bytes left of "
                    f"{_HEADER.size}); the shard is truncated, re-download it")
            return
        length, length_crc = _HEADER.unpack_from(view, offset)
        if masked_crc(view[offset:offset + 8]) != length_crc:
            problem("the record's length header fails its CRC32C check; the shard is corrupt "
                    "from here on, re-download it")
            return
        start, end = offset + _HEADER.size, offset + _HEADER.size + length
        if end + _FOOTER.size > size:
            problem(f"the record needs {length + _HEADER.size + _FOOTER.size} bytes but only "
                    f"{size - offset} are left; the shard is truncated, re-download it")
            return
        payload = view[start:end]
        (data_crc,) = _FOOTER.unpack_from(view, end)
        if masked_crc(payload) != data_crc:
            problem(f"the record's {length} data bytes fail their CRC32C check (corrupt record)")
        else:
            stats.records += 1
            yield index, offset, bytes(payload)
        offset = end + _FOOTER.size
        index += 1


def read_first_record(path):
    """Return the first record's payload without reading the whole file, or None if it is empty."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if not head:
            return None
        if len(head) < _HEADER.size:
            raise InputError(path, "the file ends inside the first record header; the shard is "
                                   "truncated, re-download it", record=0, offset=0)
        length, length_crc = _HEADER.unpack(head)
        if masked_crc(head[:8]) != length_crc:
            raise InputError(path, "the first record's length header fails its CRC32C check; this "
                                   "is not a TFRecord file or it is corrupt", record=0, offset=0)
        payload = f.read(length)
        footer = f.read(_FOOTER.size)
    if len(payload) < length or len(footer) < _FOOTER.size:
        raise InputError(path, "the file ends inside the first record; the shard is truncated, "
                               "re-download it", record=0, offset=0)
    if masked_crc(payload) != _FOOTER.unpack(footer)[0]:
        raise InputError(path, "the first record fails its CRC32C check (corrupt record)",
                         record=0, offset=0)
    return payload


def write_records(path, payloads):
    """Write serialized records to `path` with `tf.io.TFRecordWriter`, atomically.

    Returns the number of records written.
    """
    import tensorflow as tf  # noqa: I001  (deferred: importing TensorFlow takes seconds)

    from yt8m.fileio import atomic_path

    count = 0
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for payload in payloads:
            writer.write(payload)
            count += 1
    return count
