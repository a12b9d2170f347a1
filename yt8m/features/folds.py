"""One fold assignment by shard, written once and shared by every model and stacker.

Folds are whole shards: YouTube-8M shards are random splits of the videos, and a fold that is a set
of files keeps every input pipeline file-based. A shard keeps its fold forever once assigned, so
adding shards never moves a video to another fold (OOF predictions stay aligned). New shards go,
in name order, to the fold with the fewest labeled videos so far, which keeps folds balanced even
for a handful of shards.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from yt8m.errors import Yt8mError
from yt8m.fileio import atomic_path

FOLDS_FILE = "folds.csv"
COLUMNS = ["shard", "split", "fold", "num_folds", "videos"]


def read_folds(features_dir):
    path = Path(features_dir) / FOLDS_FILE
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(path, dtype={"shard": str, "split": str})
    missing = set(COLUMNS) - set(table.columns)
    if missing:
        raise Yt8mError(f"{path}: missing columns {sorted(missing)}; expected {COLUMNS}. Delete "
                        f"it to assign folds anew (models trained on the old folds must then be "
                        f"retrained)")
    return table[COLUMNS]


DEFAULT_FOLDS = 5


def assign_folds(features_dir, shards, num_folds=None, splits=("train", "validate")):
    """Give every labeled shard of `splits` a fold, keeping earlier assignments.

    Args:
        features_dir: where `folds.csv` lives.
        shards: iterable of (shard name, split, labeled video count).
        num_folds: K; must match an existing `folds.csv` (None: its K, or 5 for a new one).
        splits: the splits whose shards are folded.

    Returns the full fold table (also written to `folds.csv` when it changed). The `videos`
    count of a known shard is refreshed; its fold never changes.
    """
    path = Path(features_dir) / FOLDS_FILE
    table = read_folds(features_dir)
    if num_folds is None:
        num_folds = int(table["num_folds"].iloc[0]) if len(table) else DEFAULT_FOLDS
    if num_folds < 2:
        raise Yt8mError(f"--folds must be at least 2 (got {num_folds})")
    if len(table) and int(table["num_folds"].iloc[0]) != num_folds:
        raise Yt8mError(
            f"{path} was written with {int(table['num_folds'].iloc[0])} folds but {num_folds} were "
            f"asked for. Folds are fixed once written because every model's out-of-fold "
            f"predictions depend on them; delete {path} (and retrain the models) to change K")
    known = set(table["shard"])
    # A re-converted shard keeps its fold but its count follows it, for balancing new shards.
    current = {name: int(videos) for name, _split, videos in shards}
    videos = table["videos"].to_numpy(int)
    refreshed = np.array([current.get(n, v) for n, v in zip(table["shard"], videos)], np.int64)
    recounted = not np.array_equal(refreshed, videos)
    table["videos"] = refreshed
    load = np.zeros(num_folds, np.int64)
    np.add.at(load, table["fold"].to_numpy(int), table["videos"].to_numpy(int))
    new_rows = []
    for name, split, videos in sorted(shards):
        if name in known or split not in splits or videos == 0:
            continue
        fold = int(np.argmin(load))
        load[fold] += videos
        new_rows.append({"shard": name, "split": split, "fold": fold, "num_folds": num_folds,
                         "videos": int(videos)})
    folded = len(table) + len(new_rows)
    if 0 < folded < num_folds:
        raise Yt8mError(
            f"only {folded} labeled shards for {num_folds} folds; a fold is a set of whole shards, "
            f"so some folds would be empty. Use --folds {max(folded, 2)} or fewer, or add shards")
    if new_rows or recounted or not path.exists():
        table = pd.concat([table, pd.DataFrame(new_rows, columns=COLUMNS)], ignore_index=True)
        try:
            with atomic_path(path) as tmp:
                table.to_csv(tmp, index=False)
        except OSError as e:
            raise Yt8mError(f"{path}: cannot write the fold assignment ({e.strerror or e}); it "
                            f"and the cache manifest were left as they were. Make "
                            f"{path.parent}/ writable or free space on it, then run again") \
                from None
    return table
