"""TFRecord framing: read with exact error positions, write through TensorFlow's own writer.

A TFRecord file is a sequence of records, each
`uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)`, little-endian.
Reading it here (rather than with `tf.data.TFRecordDataset`) gives the record index and byte offset
of every problem, and lets a corrupt record be skipped and counted: TensorFlow's reader stops at the
first one, which is no use for a multi-terabyte download with a few bad records. Files that start
with the gzip magic bytes are decompressed first (TensorFlow's `compression_type="GZIP"`).

After a damaged record the reader resynchronises: it scans forward for the next byte where a whole
intact record starts (a length header that passes its CRC32C and data that pass theirs; a false
match needs two 32-bit checksums to agree by chance) and goes on from there, so one flipped bit
costs one record, not the rest of the shard.
"""

import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import crc32c

from yt8m.errors import InputError

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
GZIP_MAGIC = b"\x1f\x8b"
_GZIP_CHUNK = 1 << 20
_NONZERO = re.compile(rb"[^\x00]")


def masked_crc(data):
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass
class ReadStats:
    """What a read met.

    Attributes:
        records: intact records read.
        skipped: records lost, counted exactly: those that fail a checksum or are cut off by the
            end of the file, and (counted by the reader's callers) those that do not decode.
        skipped_bytes: bytes skipped where the number of records they held cannot be told (a
            stretch of several damaged records, or of bytes that are not records at all).
        problems: one line per problem, naming the record and byte.
    """

    records: int = 0
    skipped: int = 0
    skipped_bytes: int = 0
    problems: list = field(default_factory=list)


def read_shard(path, skip_corrupt=False, stats=None, raw=None):
    """The TFRecord bytes of `path` (`raw`: the file's bytes, if the caller has them): the file
    as it is, or decompressed when it is gzip-compressed."""
    path = Path(path)
    raw = path.read_bytes() if raw is None else raw
    if raw[:2] != GZIP_MAGIC:
        return raw
    # Decompressed chunk by chunk, so that a damaged stream still gives the records before the
    # damage (gzip.decompress would give nothing); a gzip file may hold several members.
    out, view, pos, member = [], memoryview(raw), 0, zlib.decompressobj(31)
    problem = None
    try:
        while pos < len(raw):
            chunk = view[pos:pos + _GZIP_CHUNK]
            out.append(member.decompress(chunk))
            if not member.eof:
                pos += len(chunk)
                continue
            pos += len(chunk) - len(member.unused_data)
            if raw[pos:pos + 2] == GZIP_MAGIC:
                member = zlib.decompressobj(31)
            elif _NONZERO.search(raw, pos):
                problem = (f"{len(raw) - pos} bytes after the end of the gzip stream are not "
                           f"another gzip member")
                break
            else:  # zero padding after the last member, which gzip tolerates too
                break
        else:
            if not member.eof:
                problem = "the gzip stream ends early: the file is truncated"
    except zlib.error as e:
        problem = f"the gzip stream is corrupt near compressed byte {pos} ({e})"
    data = b"".join(out)
    if problem:
        problem += f" ({len(data)} bytes decompressed before it)"
        if not skip_corrupt:
            raise InputError(path, f"{problem}; re-download the shard, or pass --skip-corrupt to "
                                   f"keep the records before it")
        if stats is not None:
            stats.skipped_bytes += len(raw) - pos  # compressed bytes that could not be read
            stats.problems.append(problem)
    return data


def _check(view, size, offset):
    """`(length, problem)` for the record at `offset`: problem is None when it is intact; length
    is None when its length header cannot be trusted."""
    if size - offset < _HEADER.size:
        return None, (f"the file ends inside a record header ({size - offset} bytes left of "
                      f"{_HEADER.size}); the shard is truncated")
    length, length_crc = _HEADER.unpack_from(view, offset)
    if masked_crc(view[offset:offset + 8]) != length_crc:
        return None, "the record's length header fails its CRC32C check (corrupt record)"
    end = offset + _HEADER.size + length
    if end + _FOOTER.size > size:
        return length, (f"the record needs {length + _HEADER.size + _FOOTER.size} bytes but only "
                        f"{size - offset} are left; the shard is truncated")
    if masked_crc(view[offset + _HEADER.size:end]) != _FOOTER.unpack_from(view, end)[0]:
        return length, f"the record's {length} data bytes fail their CRC32C check (corrupt record)"
    return length, None


def _next_record(data, view, start):
    """Offset of the first intact record at or after `start`, or the file's size."""
    size, pos = len(data), start
    while True:
        # Lengths are below 4 GiB, so bytes 4..7 of a header are zero: C-speed `find` jumps from
        # one such place to the next instead of testing every byte.
        pos = data.find(b"\0\0\0\0", pos + 4) - 4
        if pos < 0 or pos + _HEADER.size + _FOOTER.size > size:
            return size
        if not _NONZERO.search(data, pos, pos + _HEADER.size):
            # Inside a run of zeros (an all-zero header fails its CRC) a record can start only in
            # the run's last 11 bytes.
            nonzero = _NONZERO.search(data, pos)
            if nonzero is None:
                return size
            pos = max(pos, nonzero.start() - _HEADER.size)
        elif _check(view, size, pos)[1] is None:
            return pos
        pos += 1


def _records_in(view, start, stop):
    """1 when the damaged bytes `[start, stop)` are exactly one record (its length header or its
    data still agree with that size), else None: how many records they held cannot be told."""
    length = stop - start - _HEADER.size - _FOOTER.size
    if length < 0:
        return None
    if masked_crc(struct.pack("<Q", length)) == _FOOTER.unpack_from(view, start + 8)[0]:
        return 1
    if masked_crc(view[start + _HEADER.size:stop - _FOOTER.size]) == \
            _FOOTER.unpack_from(view, stop - _FOOTER.size)[0]:
        return 1
    return None


def iter_records(path, skip_corrupt=False, stats=None, data=None):
    """Yield `(index, offset, payload)` for every intact record of the TFRecord file `path`.

    Args:
        path: the file (named in errors); plain or gzip-compressed.
        skip_corrupt: if True, damaged records are skipped and the reader resynchronises on the
            next intact one; `stats` counts what was lost: exactly, in records, where the damaged
            bytes are one record (or the file ends inside one), else in bytes. Offsets are those
            of the (decompressed) record stream, and indices after a stretch of unknown size count
            it as one record. If False, the first problem raises `InputError`.
        stats: an optional `ReadStats` that is updated as the file is read.
        data: the file's bytes, if the caller already has them.
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    data = read_shard(path, skip_corrupt, stats, raw=data)
    view = memoryview(data)
    size, offset, index = len(data), 0, 0
    while offset < size:
        length, problem = _check(view, size, offset)
        if problem is None:
            stats.records += 1
            yield index, offset, bytes(view[offset + _HEADER.size:offset + _HEADER.size + length])
            offset += _HEADER.size + length + _FOOTER.size
            index += 1
            continue
        if not skip_corrupt:
            raise InputError(path, f"{problem}; re-download the shard, or pass --skip-corrupt to "
                                   f"skip damaged records", record=index, offset=offset)
        stop = _next_record(data, view, offset + 1)
        end = None if length is None else offset + _HEADER.size + length + _FOOTER.size
        if end is not None and end <= stop:
            # An intact header gives the record's extent; whatever follows it is looked at next.
            stop, count = end, 1
        elif stop == size and (end is not None or size - offset < _HEADER.size):
            count = 1  # the file ends inside this record
        else:
            count = _records_in(view, offset, stop)
        if count:
            stats.skipped += count
            lost = "1 record skipped"
        else:
            stats.skipped_bytes += stop - offset
            lost = f"{stop - offset} bytes skipped, holding an unknown number of records"
        resumed = f", reading on at the intact record at byte {stop}" if stop < size else ""
        stats.problems.append(f"record {index} (byte {offset}): {problem}; {lost}{resumed}")
        offset, index = stop, index + (count or 1)


def _describe_start(head):
    """What the first bytes of a file that is not a TFRecord look like, for error messages."""
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return f" (it starts with the text {head[:24].decode()!r})"
    return f" (it starts with the bytes {head[:12]!r})"


def read_first_record(path):
    """Return the first record's payload without reading the whole file, or None if it is empty."""
    import gzip

    path = Path(path)
    with open(path, "rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw) if compressed else raw
        inside = "the gzip-compressed file" if compressed else "the file"
        try:
            head = f.read(_HEADER.size)
            if not head:
                return None
            if len(head) < _HEADER.size:
                raise InputError(path, f"{inside} ends inside the first record header; the shard "
                                       f"is truncated, re-download it", record=0, offset=0)
            length, length_crc = _HEADER.unpack(head)
            if masked_crc(head[:8]) != length_crc:
                raise InputError(path, f"the first record's length header fails its CRC32C "
                                       f"check; this is not a TFRecord file{_describe_start(head)} "
                                       f"or it is corrupt", record=0, offset=0)
            payload = f.read(length)
            footer = f.read(_FOOTER.size)
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            if not compressed:
                raise
            raise InputError(path, f"not a valid gzip stream ({e}); re-download the shard") \
                from None
    if len(payload) < length or len(footer) < _FOOTER.size:
        raise InputError(path, f"{inside} ends inside the first record; the shard is truncated, "
                               f"re-download it", record=0, offset=0)
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
