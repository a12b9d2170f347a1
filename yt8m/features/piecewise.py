"""The feature cache built piece by piece as real shards download (`yt8m download --parts`).

A fraction of a partition is fetched in pieces and the cache is built after each one, optionally
deleting each piece's shards once converted: the disk then holds the cache plus one piece of
TFRecords, not both copies of the data.
"""

import sys

from yt8m.features.writer import TooFewShardsForFolds, build_features
from yt8m.input.download import download, parse_partition, split_shard


def download_and_convert(partition, shard="1,100", parts=1, mirror="us", input_dir="input",
                         features_dir="features", workers=None, num_folds=None, skip_corrupt=False,
                         delete_input=False, progress=True, report=None, script_url=None,
                         vocabulary_url=None):
    """Download fraction `shard` of `partition` in `parts` pieces and build the feature cache
    after each; with `delete_input` each build deletes the piece's shards once they are listed in
    the manifest and verified, so the disk holds the cache and one piece of TFRecords.

    A rerun resumes: the official script's plan no longer lists the files it fetched, so finished
    pieces download nothing and their (deleted) shards stay in the cache. A piece with fewer
    labeled shards than folds keeps its shards until a later piece's build can assign the folds
    (after the last piece that error stands). `report(manifest, level, input_dir)` is called
    after each build. Returns the last manifest (None when no piece had a shard to convert).
    """
    level = parse_partition(partition)[1]
    pieces = split_shard(shard, parts)
    manifest = None
    for i, piece in enumerate(pieces, 1):
        print(f"piece {i} of {len(pieces)}: partition={partition} shard={piece}", flush=True)
        target = download(partition, piece, mirror, input_dir, script_url, vocabulary_url)
        if not any(target.glob("*.tfrecord")):  # a piece with no file, or one done before
            print(f"piece {i} of {len(pieces)}: no shard to convert")
            continue
        try:
            manifest = build_features(input_dir, features_dir, level, workers, num_folds,
                                      skip_corrupt=skip_corrupt, progress=progress,
                                      delete_input=delete_input)
        except TooFewShardsForFolds:
            if i == len(pieces):
                raise
            print(f"note: piece {i} of {len(pieces)}: fewer labeled shards than folds so far; "
                  f"its shards are kept until a later piece's build can assign the folds",
                  file=sys.stderr)
            continue
        if report is not None:
            report(manifest, level, input_dir)
    return manifest
