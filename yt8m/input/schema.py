"""The YouTube-8M record schema for the 2017, 2018 and 2019 datasets, frame- and video-level.

Frame-level shards hold `SequenceExample`s: context `id` (2017: `video_id`) and `labels`, and
feature lists `rgb` (1024 uint8 bytes per frame, one frame per second) and `audio` (128 bytes).
Video-level shards hold `Example`s with the same id and labels plus `mean_rgb` (1024 floats) and
`mean_audio` (128 floats). The 2019 segment-rated shards add `segment_labels`,
`segment_start_times` and `segment_scores`. Test shards carry no labels.

Both message kinds share field number 1 (`Example.features` and `SequenceExample.context`), so every
record is parsed as a `SequenceExample`: a video-level record then shows its features in the context
and has no feature lists, which is how the level is told apart.
"""

import functools
from dataclasses import dataclass

import numpy as np

from yt8m.errors import InputError
from yt8m.input.protos import SequenceExample

FRAME_FEATURES = {"rgb": 1024, "audio": 128}
VIDEO_FEATURES = {"mean_rgb": 1024, "mean_audio": 128}
SEGMENT_KEYS = ("segment_labels", "segment_start_times", "segment_scores")
LEVELS = ("frame", "video")


@dataclass(frozen=True)
class DatasetVersion:
    """One release of the dataset: how its records name the video id and how many classes it has."""

    name: str
    id_key: str
    num_classes: int
    segments: bool
    description: str


VERSIONS = {
    "2017": DatasetVersion("2017", "video_id", 4716, False, "v1, Kaggle youtube8m"),
    "2018": DatasetVersion("2018", "id", 3862, False, "v2, Kaggle youtube8m-2018"),
    "2019": DatasetVersion("2019", "id", 3862, True, "v3 segments, Kaggle youtube8m-2019"),
}


def _expected_keys_text():
    return ("2017 (v1) records carry 'video_id' and 'labels'; 2018 (v2) records carry 'id' and "
            "'labels'; 2019 (v3) segment-rated records carry 'id', 'segment_labels', "
            "'segment_start_times' and 'segment_scores' (test shards have no labels)")


class BadRecordError(InputError):
    """A record that is not a protobuf message: corrupt, so `--skip-corrupt` may skip it."""


class BadVideoIdError(InputError):
    """A record whose video id is not UTF-8: corrupt, so `--skip-corrupt` may skip it."""


@dataclass
class Video:
    """One decoded video record.

    Attributes:
        id: the video id.
        labels: int64 class ids, or None for an unlabeled (test) video.
        rgb, audio: uint8 frames `[num_frames, 1024]` and `[num_frames, 128]` (frame level).
        mean_rgb, mean_audio: float32 means `[1024]` and `[128]` (video level).
        segment_start_times, segment_labels, segment_scores: the 2019 segment ratings, or None.
    """

    id: str
    labels: np.ndarray | None = None
    rgb: np.ndarray | None = None
    audio: np.ndarray | None = None
    mean_rgb: np.ndarray | None = None
    mean_audio: np.ndarray | None = None
    segment_start_times: np.ndarray | None = None
    segment_labels: np.ndarray | None = None
    segment_scores: np.ndarray | None = None

    @property
    def num_frames(self):
        return 0 if self.rgb is None else len(self.rgb)


def parse(payload, path, index, offset=None):
    """Parse one record's bytes into a `SequenceExample`, naming the record if it is not one."""
    try:
        return SequenceExample.FromString(payload)
    except Exception as e:  # protobuf raises DecodeError, or RuntimeError from upb
        raise BadRecordError(path, f"not a tf.train.Example/SequenceExample record ({e})",
                             record=index, offset=offset) from None


def record_level(message):
    """'frame' or 'video' for a parsed record, or None when it looks like neither."""
    if len(message.feature_lists.feature_list):
        return "frame"
    if any(k in message.context.feature for k in VIDEO_FEATURES):
        return "video"
    return None


def record_version(message, path, index):
    """Tell the dataset version from the keys of one parsed record."""
    keys = message.context.feature
    if "video_id" in keys and "id" not in keys:
        return VERSIONS["2017"]
    if "id" in keys:
        return VERSIONS["2019"] if any(k in keys for k in SEGMENT_KEYS) else VERSIONS["2018"]
    found = sorted(keys) or ["none"]
    raise InputError(path, f"no video id key: found context keys {found}; "
                           f"{_expected_keys_text()}", record=index)


def check_level(message, expected, path, index):
    """Raise a clear error when a record is of the other level than the one expected."""
    level = record_level(message)
    if level == expected:
        return
    keys = sorted(message.context.feature)
    lists = sorted(message.feature_lists.feature_list)
    if level is None:
        raise InputError(path, f"neither a frame-level record (feature lists 'rgb', 'audio') nor a "
                               f"video-level one (features 'mean_rgb', 'mean_audio'): found keys "
                               f"{keys}", record=index)
    found = (f"a frame-level SequenceExample (feature lists {lists})" if level == "frame"
             else f"a video-level Example (features {keys})")
    want = ("a frame-level SequenceExample with feature lists 'rgb' and 'audio'"
            if expected == "frame"
            else "a video-level Example with features 'mean_rgb' and 'mean_audio'")
    raise InputError(path, f"this is {found}, but {want} was expected; {level}-level shards belong "
                           f"in input/{level}/ (or pass --level {level})", record=index)


def _ints(features, key):
    return np.asarray(features[key].int64_list.value, dtype=np.int64)


def _varint(n):
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out) + bytes([n])


@functools.cache
def _frame_header(size):
    """The bytes before each frame's data in a serialized `FeatureList` of `size`-byte frames:
    each frame is a `Feature` (field 1 of the list) holding a `BytesList` (its field 1) holding
    one value (field 1 again), every one tagged 0x0a and length-prefixed."""
    value = b"\x0a" + _varint(size)
    bytes_list = b"\x0a" + _varint(len(value) + size)
    header = b"\x0a" + _varint(len(bytes_list) + len(value) + size) + bytes_list + value
    return np.frombuffer(header, np.uint8)


def _frames_from_wire(feature_list, size):
    """The frames `[num_frames, size]`, a view into one serialization of the feature list, or
    None when its frames are not all single values of `size` bytes (then `_frames` finds which).

    Taking each frame's bytes from its own message (a Python object for every Feature, BytesList
    and value) costs several times what the bytes do; serialized in C, the list holds them all at
    a fixed stride, each behind the same header.
    """
    header = _frame_header(size)
    wire = np.frombuffer(feature_list.SerializeToString(), np.uint8)
    stride = len(header) + size
    if len(wire) % stride:
        return None
    rows = wire.reshape(-1, stride)
    if not (rows[:, :len(header)] == header).all():
        return None
    return rows[:, len(header):]


def _frames(lists, key, size, path, index, vid):
    if key not in lists:
        raise InputError(path, f"video '{vid}' has no '{key}' feature list (found "
                               f"{sorted(lists)}); YouTube-8M frame records carry 'rgb' and "
                               f"'audio'", record=index)
    frames = _frames_from_wire(lists[key], size)
    if frames is not None:
        return frames
    frames = [f.bytes_list.value[0] if f.bytes_list.value else b"" for f in lists[key].feature]
    data = b"".join(frames)
    if len(data) != size * len(frames):
        bad = next(i for i, f in enumerate(frames) if len(f) != size)
        raise InputError(path, f"video '{vid}': frame {bad} of '{key}' has {len(frames[bad])} "
                               f"bytes; YouTube-8M '{key}' frames have {size} (one uint8 per "
                               f"dimension)", record=index)
    return np.frombuffer(data, dtype=np.uint8).reshape(len(frames), size)


def _floats(features, key, size, path, index, vid):
    if key not in features:
        raise InputError(path, f"video '{vid}' has no '{key}' feature (found {sorted(features)})",
                         record=index)
    values = np.asarray(features[key].float_list.value, dtype=np.float32)
    if values.size != size:
        raise InputError(path, f"video '{vid}': '{key}' has {values.size} values; YouTube-8M "
                               f"'{key}' has {size}", record=index)
    return values


def decode(message, version, level, path, index):
    """Turn a parsed record into a `Video`, checking it against `version` and `level`."""
    check_level(message, level, path, index)
    ctx = message.context.feature
    if version.id_key not in ctx:
        raise InputError(path, f"no '{version.id_key}' key although earlier records of this shard "
                               f"are {version.name} ({version.description}) records; found context "
                               f"keys {sorted(ctx)}; {_expected_keys_text()}", record=index)
    raw_id = ctx[version.id_key].bytes_list.value
    try:
        vid = raw_id[0].decode("utf-8") if raw_id else ""
    except UnicodeDecodeError as e:
        # Refused, not repaired: replacing the bad bytes would give two different ids one name.
        raise BadVideoIdError(path, f"video id {raw_id[0]!r} under '{version.id_key}' is not "
                                    f"UTF-8 ({e.reason} at byte {e.start}); YouTube-8M ids are "
                                    f"UTF-8 text, so the record is corrupt: re-download the shard, "
                                    f"or pass --skip-corrupt to skip such records",
                              record=index) from None
    if not vid:
        raise InputError(path, f"empty video id under '{version.id_key}'", record=index)
    video = Video(id=vid)
    if "labels" in ctx and len(ctx["labels"].int64_list.value):
        video.labels = _ints(ctx, "labels")
    if any(k in ctx for k in SEGMENT_KEYS):
        video.segment_start_times = _ints(ctx, "segment_start_times")
        video.segment_labels = _ints(ctx, "segment_labels")
        video.segment_scores = np.asarray(ctx["segment_scores"].float_list.value, np.float32)
        lengths = {len(video.segment_start_times), len(video.segment_labels),
                   len(video.segment_scores)}
        if len(lengths) != 1:
            raise InputError(path, f"video '{vid}': segment_start_times, segment_labels and "
                                   f"segment_scores differ in length ({sorted(lengths)})",
                             record=index)
    if level == "frame":
        lists = message.feature_lists.feature_list
        video.rgb = _frames(lists, "rgb", FRAME_FEATURES["rgb"], path, index, vid)
        video.audio = _frames(lists, "audio", FRAME_FEATURES["audio"], path, index, vid)
    else:
        video.mean_rgb = _floats(ctx, "mean_rgb", VIDEO_FEATURES["mean_rgb"], path, index, vid)
        video.mean_audio = _floats(ctx, "mean_audio", VIDEO_FEATURES["mean_audio"], path, index,
                                   vid)
    return video


def encode(video, version="2018", level="frame"):
    """Serialize a `Video` as a YouTube-8M record of the given version and level."""
    version = VERSIONS[str(version)]
    msg = SequenceExample()
    ctx = msg.context.feature
    ctx[version.id_key].bytes_list.value.append(video.id.encode("utf-8"))
    if video.labels is not None:
        ctx["labels"].int64_list.value.extend(int(x) for x in video.labels)
    if video.segment_labels is not None:
        ctx["segment_start_times"].int64_list.value.extend(
            int(x) for x in video.segment_start_times)
        ctx["segment_labels"].int64_list.value.extend(int(x) for x in video.segment_labels)
        ctx["segment_scores"].float_list.value.extend(float(x) for x in video.segment_scores)
    if level == "frame":
        lists = msg.feature_lists.feature_list
        for key in FRAME_FEATURES:
            feature_list = lists[key].feature
            for row in getattr(video, key):
                feature_list.add().bytes_list.value.append(row.tobytes())
        return msg.SerializeToString(deterministic=True)
    ctx["mean_rgb"].float_list.value.extend(video.mean_rgb.tolist())
    ctx["mean_audio"].float_list.value.extend(video.mean_audio.tolist())
    # A video-level record is an Example: its field 1 is the context written above.
    return msg.SerializeToString(deterministic=True)


def split_of(path):
    """The split a shard belongs to, from its file name (`train0001.tfrecord` -> 'train')."""
    name = path.name if hasattr(path, "name") else str(path)
    for split in ("train", "validate", "test"):
        if name.startswith(split):
            return split
    return None
