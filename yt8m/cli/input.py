"""input/: `yt8m sample`, `sample-video`, `inspect` and `download`."""

import argparse

from yt8m.cli.common import add_command
from yt8m.cli.features import print_build_summary
from yt8m.errors import Yt8mError

# `yt8m sample` options, each a field of SampleSpec
SAMPLE_OPTIONS = ("seed", "version", "num_classes", "train_shards", "validate_shards",
                  "test_shards", "videos_per_shard", "min_frames", "max_frames",
                  "ordered_classes", "scored_classes")


def _sample(args):
    from yt8m.input.sample import SampleSpec, generate

    spec = SampleSpec(**{name: getattr(args, name) for name in SAMPLE_OPTIONS
                         if hasattr(args, name)})
    result = generate(args.output, spec, force=args.force, progress=not args.quiet)
    shards = sum(f.endswith(".tfrecord") for f in result["files"])
    if result["written"]:
        print(f"wrote the sample competition to {args.output}/: {shards} shards, "
              f"{spec.videos_per_shard} videos each, {spec.num_classes} classes (seed {spec.seed})")
    else:
        print(f"{args.output}/ already holds this sample competition ({shards} shards, seed "
              f"{spec.seed}); nothing to do (--force regenerates it)")


def _sample_video(args):
    from yt8m.input.kinetics.sample import CLASSES, VideoSampleSpec, generate

    spec = VideoSampleSpec(train_per_class=args.train_per_class,
                           validate_per_class=args.validate_per_class,
                           test_per_class=args.test_per_class, seed=args.seed)
    if generate(args.output, spec, progress=not args.quiet):
        videos = len(CLASSES) * (spec.train_per_class + spec.validate_per_class +
                                 spec.test_per_class)
        print(f"wrote the sample video competition to {args.output}/: {videos} H.264 videos, "
              f"{len(CLASSES)} classes (seed {spec.seed})")
    else:
        print(f"{args.output}/ already holds this sample video competition; nothing to do")


def _record_line(record):
    video = record.video
    labels = "none" if video.labels is None else " ".join(map(str, video.labels))
    extra = f"{video.num_frames} frames" if record.level == "frame" else "video-level means"
    return (f"record {record.index}: {record.level}-level {record.version} id={video.id} "
            f"labels=[{labels}] {extra}; context keys {record.context_keys}")


def _inspect(args):
    from yt8m.input.inspect import summarize_records
    from yt8m.input.tfrecord import ReadStats

    stats = ReadStats()
    for record in summarize_records(args.file, args.records, args.skip_corrupt, stats):
        print(_record_line(record))
    print(f"{args.file}: {stats.records} records, {stats.skipped} skipped as corrupt")


def _download(args):
    from yt8m.features.piecewise import download_and_convert
    from yt8m.input.download import download, split_shard

    if args.delete_input and not args.convert:
        raise Yt8mError("--delete-input deletes the shards once converted, so it needs --convert")
    if args.convert:
        download_and_convert(args.partition, args.shard, args.parts, args.mirror, args.input,
                             args.features, workers=args.workers, num_folds=args.folds,
                             skip_corrupt=args.skip_corrupt, delete_input=args.delete_input,
                             progress=not args.quiet, report=print_build_summary)
        return
    for shard in split_shard(args.shard, args.parts):
        target = download(args.partition, shard, args.mirror, args.input)
    print(f"shards of {args.partition} (part {args.shard}) are in {target}/; next: make features")


def _sample_option(name):
    """argparse keywords of a `yt8m sample` option; unset, it keeps SampleSpec's default."""
    if name == "version":
        return dict(choices=["2017", "2018", "2019"],
                    help="dataset version whose record keys to use")
    if name == "ordered_classes":
        return dict(type=float, help="share of classes (0 to 1) whose evidence is two "
                    "motifs in order, each with a twin that shows them the other way round")
    if name == "scored_classes":
        return dict(type=int, help="--version 2019: the classes whose segments are rated "
                    "(segment_label_ids.csv), at most --num-classes")
    return dict(type=int)


def add_sample(sub):
    p = add_command(sub, "sample", _sample,
                    "generate the built-in sample competition into input/",
                    "Write a small, learnable YouTube-8M competition in the real format: "
                    "frame-level train/validate/test shards, vocabulary.csv and the test answer "
                    "key. Deterministic from --seed; a no-op when input/ already holds the same "
                    "sample. Unset options keep the sample's defaults "
                    "(yt8m.input.sample.SampleSpec); the command prints the shards, videos and "
                    "classes it wrote.")
    p.add_argument("--output", default="input", help="folder to write into")
    for name in SAMPLE_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), default=argparse.SUPPRESS,
                       **_sample_option(name))
    p.add_argument("--force", action="store_true", help="regenerate even if present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_sample_video(sub):
    p = add_command(sub, "sample-video", _sample_video,
                    "generate the sample raw-video competition into input/kinetics/",
                    "Write a small Kinetics-style competition of H.264 videos (official CSV "
                    "layout, test answer key in solution.csv) whose six classes differ only in "
                    "the order of their frames. Deterministic from --seed; a no-op when it is "
                    "already there.")
    p.add_argument("--output", default="input/kinetics", help="folder to write into")
    p.add_argument("--seed", type=int, default=400)
    p.add_argument("--train-per-class", type=int, default=40)
    p.add_argument("--validate-per-class", type=int, default=10)
    p.add_argument("--test-per-class", type=int, default=10)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_inspect(sub):
    p = add_command(sub, "inspect", _inspect, "show what a TFRecord shard holds",
                    "Print the level, dataset version, id, labels and keys of the first records "
                    "of a shard, then count all its records (checking every checksum).")
    p.add_argument("file")
    p.add_argument("--records", type=int, default=3, help="records to show")
    p.add_argument("--skip-corrupt", action="store_true")


def add_download(sub):
    p = add_command(sub, "download", _download,
                    "fetch real shards with the official download.py",
                    "Run the dataset's official download.py inside input/<level>/ for one "
                    "partition (or the m-th of n parts of it with --shard m,n), then fetch "
                    "vocabulary.csv. Re-running resumes: shards already there are skipped. With "
                    "--convert, download in --parts pieces and build the feature cache after "
                    "each; with --delete-input too, each piece's shards are deleted once "
                    "converted and verified, so the disk holds the cache plus one piece (about "
                    "1x the data, not 2x).")
    p.add_argument("--partition", default="2/frame/train",
                   help="VERSION/LEVEL/SPLIT, e.g. 2/frame/validate or 2/video/test")
    p.add_argument("--shard", default="1,100", help="m,n: the m-th of n parts")
    p.add_argument("--mirror", default="us", choices=["us", "eu", "asia"])
    p.add_argument("--input", default="input")
    p.add_argument("--parts", type=int, default=1,
                   help="download the --shard fraction in this many pieces, one after the other")
    p.add_argument("--convert", action="store_true",
                   help="run `yt8m features` (for the partition's level) after each piece")
    p.add_argument("--delete-input", action="store_true",
                   help="with --convert: build with `yt8m features --delete-input`, deleting "
                        "the shards of input/<level>/ once converted and verified")
    p.add_argument("--features", default="features")
    p.add_argument("--workers", type=int,
                   help="processes converting shards side by side (default: one per core, "
                        "at most one per shard)")
    p.add_argument("--folds", type=int,
                   help="number of folds K (default: the K of an existing folds.csv, else 5)")
    p.add_argument("--skip-corrupt", action="store_true", help="as for `yt8m features`")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


COMMANDS = {"sample": add_sample, "sample-video": add_sample_video, "inspect": add_inspect,
            "download": add_download}
