"""Convert one TFRecord shard into a folder of memory-mappable arrays.

A converted shard `features/<level>/<shard>/` holds (n videos, F frames kept in all):

- `ids.npy` (n,) str: video ids, in record order.
- `label_offsets.npy` (n+1,) int64 and `labels.npy` (L,) int32: labels as CSR rows (an empty row
  is an unlabeled video).
- `frame_offsets.npy` (n+1,) int64 and `frames.npy` (F, 1152) uint8 (frame level): quantized rgb
  (1024) then audio (128) of each frame, the first `max_frames` of each video.
- `means.npy` (n, 1152) float32: video-level features, the mean of the dequantized frames (or the
  record's `mean_rgb` + `mean_audio`).
- `segment_*.npy`: the 2019 segment ratings as CSR rows, when the shard has them.
- `meta.json`: the source's size, mtime and CRC32C, counts, skipped records, array checksums;
  `source_deleted: true` once `yt8m features --delete-input` removed the source.

The folder is written to a temporary name and renamed into place, so it is complete or absent.
"""

import errno
import json
import os
from pathlib import Path

import crc32c
import numpy as np

from yt8m.errors import InputError, Yt8mError
from yt8m.fileio import atomic_dir
from yt8m.input.quantization import BIAS, SCALE
from yt8m.input.schema import (
    FRAME_FEATURES,
    VERSIONS,
    BadRecordError,
    BadVideoIdError,
    decode,
    parse,
)
from yt8m.input.tfrecord import ReadStats, iter_records

CACHE_FORMAT = 1
FEATURE_DIM = sum(FRAME_FEATURES.values())


def conversion_params(level, version, num_classes, max_frames):
    """What a converted shard depends on besides its source file."""
    return {"format": CACHE_FORMAT, "level": level, "version": version,
            "num_classes": int(num_classes), "max_frames": int(max_frames)}


def source_stamp(source):
    st = os.stat(source)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_meta(target):
    """The `meta.json` of a converted shard folder, or None when it is absent or unreadable."""
    try:
        return json.loads((Path(target) / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def same_conversion(a, b):
    """True when conversions with params `a` and `b` write the same arrays. 2018 and 2019
    records differ only in optional segment keys, which are read either way, so a shard keeps its
    conversion when 2019 segment-rated shards join 2018-style ones (its source may be gone)."""
    def key(p):
        version = VERSIONS.get(p.get("version"))
        return {**p, "version": version.id_key if version else p.get("version")}
    return isinstance(a, dict) and isinstance(b, dict) and key(a) == key(b)


def is_current(target, source, params):
    """True when `target` holds a finished conversion of `source` as it is now, with `params`.

    A missing source counts as current only when `--delete-input` deleted it (meta.json says
    `source_deleted`) after verifying the conversion; a source that is there again (downloaded
    anew) is compared by size and mtime like any other.
    """
    meta = read_meta(target)
    if meta is None or not same_conversion(meta.get("params"), params):
        return False
    try:
        stamp = source_stamp(source)
    except FileNotFoundError:
        return bool(meta.get("source_deleted"))
    return (meta["source"]["size"] == stamp["size"]
            and meta["source"]["mtime_ns"] == stamp["mtime_ns"])


def _fsync(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify_conversion(target, source):
    """Check that `target` is a complete conversion of `source` before the source is deleted.

    The folder must be in place (renamed from its temporary name), its meta.json must record the
    source's size, mtime and CRC32C with the size and mtime the source has now, and every array,
    read back from disk, must match the shape, dtype and CRC32C recorded in meta.json. The arrays
    are then flushed to disk (fsync), so a power cut after the deletion cannot take both copies.
    Raises `Yt8mError` naming the folder and what to do.
    """
    target, source = Path(target), Path(source)
    meta = read_meta(target)
    keep = f"{source} was kept"
    redo = f"delete {target}/ and run the same command again to convert {source.name} anew"
    if meta is None:
        raise Yt8mError(f"{target}/meta.json is missing or unreadable, so the conversion of "
                        f"{source} cannot be verified; {keep}: {redo}")
    recorded = meta.get("source", {})
    if not {"size", "mtime_ns", "crc32c"} <= set(recorded):
        raise Yt8mError(f"{target}/meta.json does not record the size, mtime and CRC32C of its "
                        f"source; {keep}: {redo}")
    if not meta.get("arrays"):
        raise Yt8mError(f"{target}/meta.json lists no arrays; {keep}: {redo}")
    stamp = source_stamp(source)
    if (recorded["size"], recorded["mtime_ns"]) != (stamp["size"], stamp["mtime_ns"]):
        raise Yt8mError(f"{source} changed after it was converted into {target}/ (size or mtime "
                        f"differ); it was kept. Run the same command again to convert it anew")
    for name, info in meta.get("arrays", {}).items():
        path = target / f"{name}.npy"
        try:
            array = np.load(path, mmap_mode="r")
            found = {"shape": list(array.shape), "dtype": str(array.dtype),
                     "crc32c": _checksum(array)}
        except (OSError, ValueError) as e:
            found = {"error": str(e)}
        if found != info:
            raise Yt8mError(f"{path} does not match meta.json (recorded {info}, read {found}): "
                            f"the cache is damaged; {keep}: {redo}")
        _fsync(path)
    _fsync(target / "meta.json")
    _fsync(target, directory=True)
    _fsync(target.parent, directory=True)  # the rename that put the folder in place


def mark_source_deleted(target):
    """Record in `target`/meta.json (atomically, flushed to disk) that its source is about to be
    deleted by `--delete-input`, so later builds keep the shard without its source."""
    from yt8m.fileio import write_json

    target = Path(target)
    meta = read_meta(target)
    if not meta.get("source_deleted"):
        write_json(target / "meta.json", {**meta, "source_deleted": True})
        _fsync(target / "meta.json")
        _fsync(target, directory=True)


def _checksum(array):
    return f"{crc32c.crc32c(np.ascontiguousarray(array).data):08x}"


def _offsets(rows):
    offsets = np.zeros(len(rows) + 1, np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    return offsets


def _csr(rows, dtype):
    offsets = _offsets(rows)
    values = np.concatenate(rows).astype(dtype) if rows else np.zeros(0, dtype)
    return offsets, values


class _ShardArrays:
    """Accumulates decoded videos of one shard."""

    def __init__(self, level, max_frames):
        self.level, self.max_frames = level, max_frames
        self.ids, self.labels, self.frames, self.means = [], [], [], []
        self.segments = {"start_times": [], "labels": [], "scores": []}
        self.has_segments = False
        self.truncated = self.mismatched = self.empty = 0

    def add(self, video):
        self.ids.append(video.id)
        self.labels.append(video.labels if video.labels is not None else np.zeros(0, np.int64))
        if video.segment_labels is not None:
            self.has_segments = True
        for key in self.segments:
            value = getattr(video, f"segment_{key}")
            self.segments[key].append(value if value is not None else np.zeros(0))
        if self.level == "video":
            self.means.append(np.concatenate([video.mean_rgb, video.mean_audio]))
            return
        n = min(len(video.rgb), len(video.audio))
        self.mismatched += len(video.rgb) != len(video.audio)
        self.truncated += n > self.max_frames
        self.empty += n == 0  # legal (the real test split has some); loaders mask them out
        n = min(n, self.max_frames)
        # Views into the record's bytes; copied once, into the shard's frame array.
        self.frames.append((video.rgb[:n], video.audio[:n]))

    def _frame_arrays(self):
        offsets = _offsets([rgb for rgb, _ in self.frames])
        frames = np.empty((offsets[-1], FEATURE_DIM), np.uint8)
        means = np.zeros((len(self.frames), FEATURE_DIM), np.float32)
        split = FRAME_FEATURES["rgb"]
        for i, ((rgb, audio), start, end) in enumerate(zip(self.frames, offsets[:-1],
                                                           offsets[1:])):
            frames[start:end, :split] = rgb
            frames[start:end, split:] = audio
            if end > start:
                # The mean of dequantized frames is the dequantized mean of the bytes. A float32
                # sum of at most 300 bytes is exact (below 2**24) and a matrix product is the
                # fastest way numpy has to take it (np.add.reduceat is 20x slower here).
                total = np.ones(end - start, np.float32) @ frames[start:end].astype(np.float32)
                means[i] = total.astype(np.float64) / (end - start) * SCALE + BIAS
        return offsets, frames, means

    def arrays(self):
        out = {"ids": np.asarray(self.ids, dtype=str)}
        out["label_offsets"], out["labels"] = _csr(self.labels, np.int32)
        if self.level == "frame":
            out["frame_offsets"], out["frames"], out["means"] = self._frame_arrays()
        else:
            out["means"] = (np.stack(self.means) if self.means
                            else np.zeros((0, FEATURE_DIM), np.float32))
        if self.has_segments:
            out["segment_offsets"], out["segment_start_times"] = _csr(
                self.segments["start_times"], np.int32)
            _, out["segment_labels"] = _csr(self.segments["labels"], np.int32)
            _, out["segment_scores"] = _csr(self.segments["scores"], np.float32)
        return out


class EmptyShardError(InputError):
    """A shard without a single usable record."""




def convert_task(args):
    """Process-pool entry point: `(source, target, params, skip_corrupt)` ->
    (source, meta, error, unusable): `error` is why the shard cannot be converted; `unusable` is
    why a shard without any usable record was skipped (with `skip_corrupt`).

    Lives here, not in `build`, so worker processes import only numpy and protobuf. Errors travel
    as text (an `InputError` does not survive pickling); a full disk raises, to stop the build.
    """
    source, target, params, skip_corrupt = args
    try:
        return str(source), convert_shard(source, target, params, skip_corrupt), None, None
    except EmptyShardError as e:
        if skip_corrupt:
            return str(source), None, None, str(e)
        return str(source), None, str(e), None
    except InputError as e:
        return str(source), None, str(e), None


def _disk_full(error):
    """True for a write that failed for lack of space: ENOSPC, a quota, a file-size limit (EFBIG),
    or numpy's short write (a bare OSError "N requested and M written")."""
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    return getattr(error, "errno", None) is None and "requested and" in str(error) \
        and "written" in str(error)


def convert_shard(source, target, params, skip_corrupt=False):
    """Decode shard `source` into the cache folder `target`; return its meta dict.

    Raises `InputError` naming the file and record for anything that is not a valid
    YouTube-8M record of the expected level, version and vocabulary.
    """
    source, target = Path(source), Path(target)
    stamp = source_stamp(source)
    data = source.read_bytes()
    version = VERSIONS[params["version"]]
    num_classes, level = params["num_classes"], params["level"]
    stats = ReadStats()
    acc = _ShardArrays(level, params["max_frames"])
    first_record = {}
    for index, offset, payload in iter_records(source, skip_corrupt, stats, data=data):
        # Corrupt records that passed their checksums (written wrong) are skippable: those that
        # are not protobuf at all and those whose id is not UTF-8. A well-formed record of the
        # wrong shape is not corruption and stops the build even with skip_corrupt.
        try:
            message = parse(payload, source, index, offset)
            video = decode(message, version, level, source, index)
        except InputError as e:
            if not skip_corrupt or not isinstance(e, (BadRecordError, BadVideoIdError)):
                raise
            stats.skipped += 1
            stats.records -= 1
            stats.problems.append(str(e))
            continue
        if video.id in first_record:
            raise InputError(source, f"video id '{video.id}' appears twice in this shard "
                                     f"(records {first_record[video.id]} and {index})",
                             record=index, offset=offset)
        first_record[video.id] = index
        for name, values in (("label", video.labels), ("segment label", video.segment_labels)):
            if values is not None and values.size and (values.min() < 0
                                                       or values.max() >= num_classes):
                bad = int(values[(values < 0) | (values >= num_classes)][0])
                raise InputError(source, f"{name} {bad} of video '{video.id}' is outside the "
                                         f"vocabulary: class ids run from 0 to {num_classes - 1} "
                                         f"({num_classes} classes); is the vocabulary.csv in "
                                         f"input/ the one of this dataset?",
                                 record=index, offset=offset)
        acc.add(video)
    if not acc.ids:
        what = (f"all {stats.skipped} records were corrupt" if stats.skipped
                else f"it holds no intact record ({len(data)} bytes)")
        raise EmptyShardError(source, f"nothing to convert: {what}; a YouTube-8M shard holds "
                                      f"hundreds of videos, re-download it")
    arrays = acc.arrays()
    meta = {
        "params": params,
        "source": {"path": str(source), **stamp, "crc32c": f"{crc32c.crc32c(data):08x}"},
        "videos": len(acc.ids),
        "labeled_videos": int(np.count_nonzero(np.diff(arrays["label_offsets"]))),
        "frames": int(len(arrays["frames"])) if "frames" in arrays else 0,
        "truncated_videos": acc.truncated,
        "zero_frame_videos": acc.empty,
        "frame_count_mismatches": acc.mismatched,
        "skipped_records": stats.skipped,
        "skipped_bytes": stats.skipped_bytes,
        "problems": stats.problems[:20],
        "arrays": {name: {"shape": list(a.shape), "dtype": str(a.dtype), "crc32c": _checksum(a)}
                   for name, a in arrays.items()},
    }
    try:
        with atomic_dir(target) as tmp:  # removes what it wrote if this fails
            for name, array in arrays.items():
                np.save(tmp / f"{name}.npy", array, allow_pickle=False)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    except (OSError, ValueError) as e:
        if not _disk_full(e):
            raise
        raise Yt8mError(f"{source}: the disk is full (or a file grew past the file size limit) "
                        f"while writing its converted shard into {target.parent}/ ({e}); nothing "
                        f"of it was kept. Free space there (or raise `ulimit -f`), then run the "
                        f"same command again: finished shards are kept") from None
    return meta
