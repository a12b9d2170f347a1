"""What a feature cache holds, per split and per fold, and what a build of it listed."""

from dataclasses import dataclass

import numpy as np

from yt8m.features.cache import FeatureCache


@dataclass(frozen=True)
class SplitSummary:
    """One split of a cache: its shards, videos, labeled videos, frames, and the mean number of
    labels of its labeled videos (0 when none is labeled)."""

    split: str
    shards: int
    videos: int
    labeled: int
    frames: int
    labels_per_video: float


@dataclass(frozen=True)
class CacheSummary:
    """A cache at one level: its dataset, its splits, and the videos of each fold (in fold order;
    empty without folds)."""

    version: str
    num_classes: int
    videos: int
    shards: int
    splits: list[SplitSummary]
    fold_sizes: list[int]


def _labels_per_video(cache, split):
    per_video = np.diff(cache.label_offsets)[cache.rows(split)]
    labeled = per_video[per_video > 0]
    return float(labeled.mean()) if len(labeled) else 0.0


def cache_summary(features="features", level="frame"):
    """The `CacheSummary` of the cache `features/<level>/`."""
    cache = FeatureCache(features, level)
    manifest = cache.manifest
    splits = [SplitSummary(split, t["shards"], t["videos"], t["labeled_videos"], t["frames"],
                           _labels_per_video(cache, split))
              for split, t in manifest["totals"].items()]
    folds = [len(cache.rows(folds=k)) for k in range(cache.num_folds)]
    return CacheSummary(manifest["version"], manifest["num_classes"], len(cache),
                        len(cache.shard_names), splits, folds)


def manifest_videos(manifest):
    """The videos a build's manifest lists, over every split."""
    return sum(t["videos"] for t in manifest["totals"].values())
