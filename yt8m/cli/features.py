"""features/: `yt8m features` and `yt8m info`."""

import sys

from yt8m.cli.common import add_command


def print_build_summary(manifest, level, input_dir):
    """What a cache build did (stdout), and what it skipped or left out (stderr)."""
    from yt8m.features.summary import manifest_videos

    deleted = (f", {manifest['deleted_now']} source shards deleted"
               if manifest.get("deleted_now") else "")
    print(f"features/{level}: {len(manifest['shards'])} shards, {manifest_videos(manifest)} "
          f"videos ({manifest['converted_now']} shards converted now{deleted}, "
          f"{manifest['seconds']:.1f} s); dataset {manifest['version']}, "
          f"{manifest['num_classes']} classes")
    if manifest["skipped_records"]:
        print(f"warning: {manifest['skipped_records']} corrupt records were skipped (listed per "
              f"shard in features/{level}/<shard>/meta.json)", file=sys.stderr)
    if manifest["orphaned_shards"]:
        print(f"note: {len(manifest['orphaned_shards'])} cached shards have no source in "
              f"{input_dir}/{level}/ any more and are not in the manifest: "
              f"{', '.join(manifest['orphaned_shards'][:5])}", file=sys.stderr)


def _features(args):
    from yt8m.features.writer import build_features

    manifest = build_features(args.input, args.features, level=args.level, workers=args.workers,
                              num_folds=args.folds, fold_splits=args.fold_splits.split(","),
                              max_frames=args.max_frames, skip_corrupt=args.skip_corrupt,
                              progress=not args.quiet, delete_input=args.delete_input)
    print_build_summary(manifest, args.level, args.input)


def _info(args):
    from yt8m.features.summary import cache_summary

    summary = cache_summary(args.features, args.level)
    print(f"features/{args.level}: YouTube-8M {summary.version}, {summary.num_classes} classes, "
          f"{summary.videos} videos in {summary.shards} shards")
    print(f"{'split':<10}{'shards':>8}{'videos':>9}{'labeled':>9}{'frames':>11}{'labels/video':>14}")
    for s in summary.splits:
        print(f"{s.split:<10}{s.shards:>8}{s.videos:>9}{s.labeled:>9}{s.frames:>11}"
              f"{s.labels_per_video:>14.2f}")
    if summary.fold_sizes:
        print(f"folds: {len(summary.fold_sizes)} (videos per fold: "
              f"{', '.join(map(str, summary.fold_sizes))})")


def add_features(sub):
    p = add_command(sub, "features", _features, "decode input/ shards into the features/ cache",
                    "Convert every shard under INPUT/LEVEL/ into memory-mapped arrays under "
                    "FEATURES/LEVEL/ (in parallel; shards already converted and unchanged are "
                    "skipped), check ids and labels across shards, write the manifest, and "
                    "assign new shards to folds in FEATURES/folds.csv (existing assignments "
                    "never change).")
    p.add_argument("--input", default="input")
    p.add_argument("--features", default="features")
    p.add_argument("--level", default="frame", choices=["frame", "video"])
    p.add_argument("--workers", type=int,
                   help="processes converting shards side by side (default: one per core, "
                        "at most one per shard)")
    p.add_argument("--folds", type=int,
                   help="number of folds K (default: the K of an existing folds.csv, else 5)")
    p.add_argument("--fold-splits", default="train,validate",
                   help="comma-separated splits whose shards are assigned to folds")
    p.add_argument("--max-frames", type=int, default=300, help="frames kept per video")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="skip records that fail their checksum or do not parse, counting them in "
                        "the manifest, instead of stopping (for large real downloads)")
    p.add_argument("--delete-input", action="store_true",
                   help="delete each source shard once the manifest lists it and its converted "
                        "folder reads back with the checksums in its meta.json (the cache then "
                        "replaces the TFRecords; later builds keep such shards)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_info(sub):
    p = add_command(sub, "info", _info, "summarize the feature cache",
                    "Print videos, frames and labels per split and videos per fold.")
    p.add_argument("--features", default="features")
    p.add_argument("--level", default="frame", choices=["frame", "video"])


COMMANDS = {"features": add_features, "info": add_info}
