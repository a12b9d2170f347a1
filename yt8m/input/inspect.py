"""What a TFRecord shard holds: its first records decoded, every record read and counted."""

from dataclasses import dataclass

from yt8m.input.schema import Video, check_level, decode, parse, record_level, record_version
from yt8m.input.tfrecord import ReadStats, iter_records


@dataclass(frozen=True)
class RecordSummary:
    """One decoded record of a shard.

    Attributes:
        index: the record's position in the shard.
        level: 'frame' or 'video'.
        version: the dataset version its keys belong to, e.g. '2018'.
        video: the decoded record.
        context_keys: the record's context feature names, sorted.
    """

    index: int
    level: str
    version: str
    video: Video
    context_keys: list[str]


def summarize_records(path, shown=3, skip_corrupt=False, stats=None):
    """Yield a `RecordSummary` of each of the first `shown` records of the shard `path`.

    Every record of the shard is read and parsed, not only the ones shown, so a damaged record
    anywhere stops the read (or, with `skip_corrupt`, is counted in `stats`, a `ReadStats`,
    which also counts the records read once the generator is exhausted).
    """
    stats = ReadStats() if stats is None else stats
    count = 0
    for index, offset, payload in iter_records(path, skip_corrupt, stats):
        message = parse(payload, path, index, offset)
        if count < shown:
            level = record_level(message)
            check_level(message, level, path, index)
            version = record_version(message, path, index)
            video = decode(message, version, level, path, index)
            yield RecordSummary(index, level, version.name, video, sorted(message.context.feature))
            count += 1
