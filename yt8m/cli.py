"""The `yt8m` command: one sub-command per stage of the workspace. The Makefile calls it."""

import argparse
import sys
import textwrap
from pathlib import Path

from yt8m import __version__
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


def _features(args):
    from yt8m.features.writer import build_features

    manifest = build_features(args.input, args.features, level=args.level, workers=args.workers,
                              num_folds=args.folds, fold_splits=args.fold_splits.split(","),
                              max_frames=args.max_frames, skip_corrupt=args.skip_corrupt,
                              progress=not args.quiet, delete_input=args.delete_input)
    _features_summary(manifest, args.level, args.input)


def _features_summary(manifest, level, input_dir):
    total = sum(t["videos"] for t in manifest["totals"].values())
    deleted = (f", {manifest['deleted_now']} source shards deleted"
               if manifest.get("deleted_now") else "")
    print(f"features/{level}: {len(manifest['shards'])} shards, {total} videos "
          f"({manifest['converted_now']} shards converted now{deleted}, "
          f"{manifest['seconds']:.1f} s); dataset {manifest['version']}, "
          f"{manifest['num_classes']} classes")
    if manifest["skipped_records"]:
        print(f"warning: {manifest['skipped_records']} corrupt records were skipped (listed per "
              f"shard in features/{level}/<shard>/meta.json)", file=sys.stderr)
    if manifest["orphaned_shards"]:
        print(f"note: {len(manifest['orphaned_shards'])} cached shards have no source in "
              f"{input_dir}/{level}/ any more and are not in the manifest: "
              f"{', '.join(manifest['orphaned_shards'][:5])}", file=sys.stderr)


def _info(args):
    import numpy as np

    from yt8m.features.cache import FeatureCache

    cache = FeatureCache(args.features, args.level)
    m = cache.manifest
    print(f"features/{args.level}: YouTube-8M {m['version']}, {m['num_classes']} classes, "
          f"{len(cache)} videos in {len(cache.shard_names)} shards")
    print(f"{'split':<10}{'shards':>8}{'videos':>9}{'labeled':>9}{'frames':>11}{'labels/video':>14}")
    for split, t in m["totals"].items():
        rows = cache.rows(split)
        per_video = np.diff(cache.label_offsets)[rows]
        mean_labels = per_video[per_video > 0].mean() if (per_video > 0).any() else 0.0
        print(f"{split:<10}{t['shards']:>8}{t['videos']:>9}{t['labeled_videos']:>9}"
              f"{t['frames']:>11}{mean_labels:>14.2f}")
    if cache.num_folds:
        sizes = [len(cache.rows(folds=k)) for k in range(cache.num_folds)]
        print(f"folds: {cache.num_folds} (videos per fold: {', '.join(map(str, sizes))})")


def _inspect(args):
    from yt8m.input.schema import check_level, decode, parse, record_level, record_version
    from yt8m.input.tfrecord import ReadStats, iter_records

    stats = ReadStats()
    shown = 0
    for index, offset, payload in iter_records(args.file, args.skip_corrupt, stats):
        message = parse(payload, args.file, index, offset)
        if shown < args.records:
            level = record_level(message)
            check_level(message, level, args.file, index)
            version = record_version(message, args.file, index)
            video = decode(message, version, level, args.file, index)
            labels = "none" if video.labels is None else " ".join(map(str, video.labels))
            extra = (f"{video.num_frames} frames" if level == "frame" else "video-level means")
            print(f"record {index}: {level}-level {version.name} id={video.id} labels=[{labels}] "
                  f"{extra}; context keys {sorted(message.context.feature)}")
            shown += 1
    print(f"{args.file}: {stats.records} records, {stats.skipped} skipped as corrupt")


def _download(args):
    from yt8m.input.download import download, download_and_convert, split_shard

    if args.delete_input and not args.convert:
        raise Yt8mError("--delete-input deletes the shards once converted, so it needs --convert")
    if args.convert:
        download_and_convert(args.partition, args.shard, args.parts, args.mirror, args.input,
                             args.features, workers=args.workers, num_folds=args.folds,
                             skip_corrupt=args.skip_corrupt, delete_input=args.delete_input,
                             progress=not args.quiet, report=_features_summary)
        return
    for shard in split_shard(args.shard, args.parts):
        target = download(args.partition, shard, args.mirror, args.input)
    print(f"shards of {args.partition} (part {args.shard}) are in {target}/; next: make features")


def _bench(args):
    from yt8m.bench import model_throughput, run_benchmarks

    if args.scale:
        from yt8m.bench import _machine
        from yt8m.bench.scale import scale_table
        from yt8m.fileio import write_text

        sizes = tuple(int(n) for n in args.sizes.split(","))
        table, _ = scale_table(sizes)
        text = (f"Machine: {_machine()}\n\nMethod: `yt8m.bench.scale` (each stage alone in a "
                f"fresh process; peak anonymous memory over the process's start).\n\n{table}\n")
        write_text(args.output if args.output != "features/bench.md" else "features/scale.md",
                   text)
        print(text)
        return
    if args.top_k:
        from yt8m.bench.topk import topk_report
        from yt8m.fileio import write_text

        chosen = args.top_k_ensembles.split(",") if args.top_k_ensembles else None
        text = "\n".join(topk_report(ks=tuple(int(k) for k in args.top_k_values.split(",")),
                                      chosen=chosen))
        write_text(args.output if args.output != "features/bench.md" else "features/topk.md",
                   text)
        print(text)
        return
    if args.train_path:
        from yt8m.bench.train import train_path_report
        from yt8m.fileio import write_text

        text = "\n".join(train_path_report((args.models or "nextvlad").split(","), args.preset,
                                            args.steps, tuple(args.backends.split(","))))
        write_text(args.output if args.output != "features/bench.md" else "features/train.md",
                   text)
        print(text)
        return
    if args.models:
        from yt8m.fileio import write_text
        from yt8m.models.registry import models

        names = list(models()) if args.models == "all" else args.models.split(",")
        text = "\n".join(model_throughput(names, args.preset, args.steps,
                                          mixed_precision=args.mixed_precision))
        write_text(args.output, text)
        print(text)
        return
    run_benchmarks(args.output, quick=args.quick)


def _results_write(args):
    from yt8m.predictions import source_metrics
    from yt8m.submissions import kinetics

    path, info, written = kinetics.write_results(args.source, args.output, args.id,
                                                 force=args.force)
    state = "wrote" if written else "up to date:"
    v = info.get("validate") or {}
    estimate = f"; validate top-1 {v['video_top1']:.4f}" if v else ""
    print(f"{state} {path} ({info['rows']} videos, from {info['source']}{estimate})")
    dataset = info.get("dataset") or source_metrics(args.source).get("dataset")
    solution = Path(dataset or "") / "solution.csv"
    if dataset and solution.is_file():
        result = kinetics.score(kinetics.read_results(path), solution)
        print(f"scored against {solution}: top-1 {result['top1']:.4f}, top-5 "
              f"{result['top5']:.4f} ({result['videos']} videos)")


def _submission_write(args):
    from yt8m.submissions.kaggle import competition_slug
    from yt8m.submissions.kinetics import is_video_source
    from yt8m.submissions.writer import write_submission

    if args.source and is_video_source(args.source):
        return _results_write(args)
    path, info, written = write_submission(
        args.source, args.output, args.id, args.features, args.level, args.input, gz=args.gzip,
        force=args.force, competition=competition_slug(args.competition), roots=args.roots)
    state = "wrote" if written else "up to date:"
    if info.get("source_kind") == "segments":
        print(f"{state} {path} ({info['rows']} classes, {info['segments']} test segments, from "
              f"{info['source']}; out-of-fold MAP@100000 {info['oof']['map']:.4f})")
        answer_key = Path(args.input) / "segment_solution.csv"
        if answer_key.is_file():
            _print_segment_score(path, answer_key, args)
        return
    gap = (info.get("oof") or {}).get("gap")
    estimate = f"; OOF GAP@20 {gap:.5f}" if isinstance(gap, float) else ""
    print(f"{state} {path} ({info['rows']} videos, from {info['source']}{estimate})")
    solution = Path(args.input) / "solution.csv"
    if solution.is_file():
        _print_score(path, solution, args, info.get("classes"))


def _print_segment_score(path, answer_key, args):
    from yt8m.submissions import segments
    from yt8m.submissions.writer import scored_segment_classes

    classes = scored_segment_classes(args.input)
    if classes is None:
        raise Yt8mError(f"{args.input}/segment_label_ids.csv is missing: the scored classes of "
                        f"a segment submission")
    result = segments.score(path, answer_key, classes)
    print(f"scored against {answer_key}: MAP@{result['top_k']} {result['map']:.5f} "
          f"({result['ratings']} rated test segments)")


def _print_score(path, solution, args, num_classes=None):
    from yt8m.submissions import video
    from yt8m.submissions.writer import test_ids

    num_classes = num_classes or test_ids(args.features, args.level)[1] or 3862
    result = video.score(path, solution, num_classes)
    print(f"scored against {solution}: GAP@20 {result['gap']:.5f}, Hit@1 "
          f"{result['hit_at_one']:.5f}, PERR {result['perr']:.5f}, mAP {result['map']:.5f} "
          f"({result['videos']} videos)")


def _submission_check(args):
    from yt8m.submissions.kinetics import check_results, read_results
    from yt8m.submissions.writer import check_file

    if args.file.endswith(".json"):
        data = read_results(args.file)
        problems = check_results(data, max_problems=args.max_problems)
        if problems:
            print("\n".join(problems), file=sys.stderr)
            raise Yt8mError(f"{args.file}: not a valid Kinetics results file")
        print(f"{args.file}: a valid Kinetics results file, {len(data['results'])} videos")
        return
    report = check_file(args.file, args.features, args.level, args.input)
    if not report.ok:
        print(report.format(args.max_problems), file=sys.stderr)
        raise Yt8mError(f"{args.file}: {len(report.problems)} problems in {report.rows} rows")
    print(f"{args.file}: a valid {report.kind}-level submission, {report.rows} rows")


def _submission_score(args):
    from yt8m.submissions.segments import HEADER
    from yt8m.submissions.writer import first_line

    if first_line(args.file) == HEADER:
        return _print_segment_score(args.file, args.segment_solution, args)
    _print_score(args.file, args.solution, args)


def _submission_submit(args):
    from yt8m.submissions import kaggle
    from yt8m.submissions import writer as build

    slug = kaggle.competition_slug(args.competition)
    if not args.sub:
        present = sorted(p.name for p in Path(args.output).glob("*.csv*"))
        raise Yt8mError(f"name the submission to send: make submit SUB=<id> (in {args.output}/: "
                        f"{', '.join(present) or 'none yet'})")
    path = build.resolve(args.sub, args.output)
    report = build.check_file(path, args.features, args.level, args.input)
    if not report.ok:
        print(report.format(20), file=sys.stderr)
        raise Yt8mError(f"{path} is not a valid submission; nothing was submitted")
    if report.kind != kaggle.COMPETITIONS[slug]:
        raise Yt8mError(f"{path} is a {report.kind}-level submission but {slug} takes "
                        f"{kaggle.COMPETITIONS[slug]}-level files")
    message = args.message or build.default_message(path)
    status = kaggle.submit(path, slug, message, dry_run=args.dry_run)
    if status:
        raise Yt8mError(f"the kaggle CLI failed (exit {status}); see its message above")


def _train_video(spec, args):
    from yt8m.models.clip_trainer import train

    metrics, trained = train(spec, args.models, progress=not args.quiet,
                             skip_bad=args.skip_bad_videos)
    state = "trained" if trained else "up to date"
    line = f"{Path(spec).stem}: {state}"
    v = metrics.get("validate")
    if v:
        line += (f"; validate top-1 {v['video_top1']:.4f}, top-5 {v['video_top5']:.4f} per video "
                 f"(per clip {v['clip_top1']:.4f}, {v['clip_top5']:.4f}) over {v['videos']} "
                 f"videos")
    print(line + f" in {metrics['seconds']} s")


def _train(args):
    from yt8m.models.clip_specs import is_video_spec
    from yt8m.models.trainer import train, train_many

    folds = args.fold  # None: every fold
    video = [spec for spec in args.specs if is_video_spec(spec)]
    specs = [spec for spec in args.specs if spec not in video]
    failed = []
    cluster = _join_cluster(args, video)
    if args.jobs > 1 and len(specs) > 1:
        for spec, metrics, trained, error in train_many(specs, args.jobs, folds, args.features,
                                                        args.models, args.distribute,
                                                        args.level):
            if error:
                print(f"{Path(spec).stem}: error: {error}", file=sys.stderr)
                failed.append(spec)
            else:
                _print_trained(spec, metrics, trained)
    else:
        for spec in specs:
            metrics, trained = train(spec, folds, args.features, args.models,
                                     progress=not args.quiet, distribute=args.distribute,
                                     level=args.level)
            if cluster is not None and cluster.process_id:
                print(f"{Path(spec).stem}: process {cluster.process_id} of "
                      f"{cluster.num_processes} trained fold(s) {trained} with the cluster; "
                      f"process 0 wrote the outputs")
            else:
                _print_trained(spec, metrics, trained)
    for spec in video:
        _train_video(spec, args)
    if failed:
        raise Yt8mError(f"{len(failed)} of {len(specs)} specs failed ({', '.join(failed)}); the "
                        f"others are trained, and running the same command again resumes")


def _segments(args):
    from yt8m.models.segments import run

    for spec in args.specs:
        metrics = run(spec, args.features, args.input, args.models, progress=not args.quiet)
        oof = metrics["oof"]
        folds = ", ".join(f"{f['map']:.4f} (video model {f['map_before']:.4f})"
                          for f in metrics["folds"])
        print(f"{Path(spec).stem}: segments out-of-fold MAP@{metrics['top_k']} {oof['map']:.4f} "
              f"over {oof['classes']} classes, {oof['segments']} segments; per fold {folds}")


def _join_cluster(args, video):
    """With --distribute and a cluster in the environment (YT8M_WORKERS and YT8M_PROCESS_ID, or
    TF_CONFIG): join it before the backend computes anything; returns the cluster, or None."""
    if not args.distribute:
        return None
    from yt8m.models.distribution import cluster_from_environment, join_cluster

    cluster = cluster_from_environment()
    if cluster is None:
        return None
    if args.jobs > 1 or video:
        raise Yt8mError("a cluster of processes trains YouTube-8M specs one at a time: drop "
                        "--jobs and the raw-video specs, or unset YT8M_WORKERS")
    join_cluster(cluster)
    return cluster


def _predict(args):
    from yt8m.models.predict import describe, predict

    print(describe(predict(args.source, args.features, args.split, args.which, args.out,
                           args.level, force=args.force, progress=not args.quiet)))


def _specs(args):
    from yt8m.ensembles import load_spec as load_ensemble
    from yt8m.models.clip_specs import is_video_spec
    from yt8m.models.registry import load_spec

    models = [Path(p) for p in args.specs if Path(p).parent.name != "ensembles"]
    ensembles = [Path(p) for p in args.specs if Path(p).parent.name == "ensembles"]
    kept = [p for p in models if not is_video_spec(p)
            and (args.level == "frame" or load_spec(p).level == "video")]
    ids = {p.stem for p in kept}
    kept += [p for p in ensembles if set(load_ensemble(p)["members"]) <= ids]
    print("\n".join(map(str, kept)))


def _print_trained(spec, metrics, trained):
    name = Path(spec).stem
    if metrics is None:
        print(f"{name}: trained fold(s) {trained}; the other folds are still to train")
        return
    oof = metrics["oof"]
    state = "trained" if trained else "up to date"
    print(f"{name}: {state}; OOF GAP@20 {oof['gap']:.4f}, Hit@1 {oof['hit_at_one']:.4f}, "
          f"PERR {oof['perr']:.4f}, mAP {oof['map']:.4f} over {oof['videos']} videos")


def _ensemble(args):
    from yt8m.ensembles import build, summary_line

    for spec in args.specs:
        print(summary_line(build(spec, args.features, args.models, args.out)))


def _compact(args):
    from yt8m.predictions import compact

    for source in args.sources:
        result = compact(source, args.top_k)
        before, after = result["before"], result["after"]
        if not result["rewritten"]:
            print(f"{source}: {after:,} bytes, already the top {args.top_k} logits per video; "
                  f"nothing to do")
            continue
        print(f"{source}: {before:,} -> {after:,} bytes ({before / max(after, 1):.1f}x smaller; "
              f"top {args.top_k} logits per video, {len(result['rewritten'])} part(s) rewritten)")


def _video_rows(roots):
    """(folder, metrics, validate accuracy) of the raw-video models, best video top-1 first."""
    from yt8m.predictions import source_metrics

    rows = []
    for root in roots:
        for path in sorted(Path(root).glob("*/metrics.json")):
            info = source_metrics(path.parent)
            if isinstance(info.get("validate"), dict) and "video_top1" in info["validate"]:
                rows.append((path.parent, info, info["validate"]))
    return sorted(rows, key=lambda row: -row[2]["video_top1"])


def _leaderboard(args):
    from yt8m.predictions import find_sources

    rows = []
    for folder, info in find_sources(args.roots):
        oof = info.get("oof") or {}
        rows.append((folder, info, oof))
    videos = _video_rows(args.roots)
    if not rows and not videos:
        raise Yt8mError(f"nothing trained yet under {', '.join(args.roots)}; run make train-all")
    if videos:
        print(f"{'raw-video source':<28}{'model':<20}{'preset':<8}{'top-1':>8}{'top-5':>8}"
              f"{'clip-1':>8}{'clip-5':>8}{'videos':>8}{'seconds':>9}")
        for folder, info, v in videos:
            print(f"{str(folder):<28}{info['model']:<20}{info['preset']:<8}{v['video_top1']:>8.4f}"
                  f"{v['video_top5']:>8.4f}{v['clip_top1']:>8.4f}{v['clip_top5']:>8.4f}"
                  f"{v['videos']:>8}{info.get('seconds', '-'):>9}")
    if not rows:
        return
    print(f"{'source':<28}{'model':<20}{'preset':<8}{'GAP@20':>8}{'Hit@1':>8}{'PERR':>8}"
          f"{'mAP':>8}{'videos':>8}{'seconds':>9}")
    for folder, info, oof in rows:
        cells = "".join(f"{oof[key]:>8.4f}" if isinstance(oof.get(key), float) else f"{'-':>8}"
                        for key in ("gap", "hit_at_one", "perr", "map"))
        print(f"{str(folder):<28}{info.get('model', '-'):<20}{info.get('preset', '-'):<8}{cells}"
              f"{oof.get('videos', '-'):>8}{info.get('seconds', '-'):>9}")


def _size(args):
    import numpy as np

    from yt8m.models.clip_specs import is_video_spec, load_video_spec, parse_video_spec
    from yt8m.models.registry import load_spec, parse_spec

    named = {"model": args.spec, "preset": args.preset}
    if is_video_spec(args.spec) or args.spec == "stnet":
        spec = load_video_spec(args.spec) if args.spec.endswith(".yaml") \
            else parse_video_spec(named, args.spec)
        model = spec.build(args.num_classes or 400)
    else:
        from yt8m.models import build

        spec = load_spec(args.spec) if Path(args.spec).exists() or args.spec.endswith(".yaml") \
            else parse_spec(named, args.spec)
        model = build(spec, args.num_classes)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    limit = 1024**3
    print(f"{spec.model} ({spec.preset} preset): {trainable:,} trainable parameters, "
          f"{total:,} in all")
    for name, width in (("float32", 4), ("float16", 2)):
        size = total * width
        verdict = "within" if size < limit else "over"
        print(f"  {name} checkpoint: {size / 1e6:,.1f} MB ({size / limit:.1%} of the 2018 "
              f"challenge's 1 GB limit: {verdict})")


def _export(args):
    from yt8m.models.export import export_source

    r = export_source(args.source, out=args.out, which=args.which, dtype=args.dtype,
                      saved_model=False if args.no_saved_model else None, force=args.force)
    verdict = "within" if r["within_limit"] else "over"
    saved = (f"; SavedModel {r['saved_model']} ({r['saved_model_bytes'] / 1e6:,.1f} MB)"
             if r["saved_model"] else "")
    print(f"wrote {r['path']} ({r['bytes'] / 1e6:,.1f} MB, {r['parameters']:,} parameters, "
          f"{verdict} the 1 GB limit){saved}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="yt8m",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            YouTube-8M competition workspace. Data flows left to right, one folder per stage:
              input/ -> features/ -> models/ -> ensembles/ -> submissions/
            Each sub-command builds one stage and skips work that is already done."""))
    parser.add_argument("--version", action="version", version=f"yt8m {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help_text, description):
        p = sub.add_parser(name, help=help_text, description=description,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = command("sample", _sample, "generate the built-in sample competition into input/",
                "Write a small, learnable YouTube-8M competition in the real format: frame-level "
                "train/validate/test shards, vocabulary.csv and the test answer key. "
                "Deterministic from --seed; a no-op when input/ already holds the same sample. "
                "Unset options keep the sample's defaults (yt8m.input.sample.SampleSpec); the "
                "command prints the shards, videos and classes it wrote.")
    p.add_argument("--output", default="input", help="folder to write into")
    for name in SAMPLE_OPTIONS:  # unset: SampleSpec's default
        extra = dict(type=int)
        if name == "version":
            extra = dict(choices=["2017", "2018", "2019"],
                         help="dataset version whose record keys to use")
        elif name == "ordered_classes":
            extra = dict(type=float, help="share of classes (0 to 1) whose evidence is two "
                         "motifs in order, each with a twin that shows them the other way round")
        elif name == "scored_classes":
            extra = dict(type=int, help="--version 2019: the classes whose segments are rated "
                         "(segment_label_ids.csv), at most --num-classes")
        p.add_argument("--" + name.replace("_", "-"), default=argparse.SUPPRESS, **extra)
    p.add_argument("--force", action="store_true", help="regenerate even if present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = command("sample-video", _sample_video,
                "generate the sample raw-video competition into input/kinetics/",
                "Write a small Kinetics-style competition of H.264 videos (official CSV layout, "
                "test answer key in solution.csv) whose six classes differ only in the order of "
                "their frames. Deterministic from --seed; a no-op when it is already there.")
    p.add_argument("--output", default="input/kinetics", help="folder to write into")
    p.add_argument("--seed", type=int, default=400)
    p.add_argument("--train-per-class", type=int, default=40)
    p.add_argument("--validate-per-class", type=int, default=10)
    p.add_argument("--test-per-class", type=int, default=10)
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = command("features", _features, "decode input/ shards into the features/ cache",
                "Convert every shard under INPUT/LEVEL/ into memory-mapped arrays under "
                "FEATURES/LEVEL/ (in parallel; shards already converted and unchanged are "
                "skipped), check ids and labels across shards, write the manifest, and assign "
                "new shards to folds in FEATURES/folds.csv (existing assignments never change).")
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

    p = command("info", _info, "summarize the feature cache",
                "Print videos, frames and labels per split and videos per fold.")
    p.add_argument("--features", default="features")
    p.add_argument("--level", default="frame", choices=["frame", "video"])

    p = command("inspect", _inspect, "show what a TFRecord shard holds",
                "Print the level, dataset version, id, labels and keys of the first records of a "
                "shard, then count all its records (checking every checksum).")
    p.add_argument("file")
    p.add_argument("--records", type=int, default=3, help="records to show")
    p.add_argument("--skip-corrupt", action="store_true")

    p = command("download", _download, "fetch real shards with the official download.py",
                "Run the dataset's official download.py inside input/<level>/ for one partition "
                "(or the m-th of n parts of it with --shard m,n), then fetch vocabulary.csv. "
                "Re-running resumes: shards already there are skipped. With --convert, download "
                "in --parts pieces and build the feature cache after each; with --delete-input "
                "too, each piece's shards are deleted once converted and verified, so the disk "
                "holds the cache plus one piece (about 1x the data, not 2x).")
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

    p = command("bench", _bench, "measure cache, loader, scoring and model throughput",
                "Generate a benchmark competition in a temporary folder, time the cache build "
                "(one worker and the default) against per-record tf.io parsing of the same shards, "
                "time the batch loader at the demo and paper frame counts, the metrics against "
                "a per-class heap implementation, and every demo model's train and inference "
                "steps. Writes Markdown tables with the machine and the method. With --models, "
                "only the model throughput (any preset, backend and precision).")
    p.add_argument("--output", default="features/bench.md")
    p.add_argument("--quick", action="store_true", help="a smaller benchmark, for testing")
    p.add_argument("--models", help="only model throughput: 'all' or comma-separated names "
                                    "(e.g. on a GPU: KERAS_BACKEND=jax yt8m bench --models "
                                    "nextvlad --preset paper --mixed-precision mixed_bfloat16)")
    p.add_argument("--preset", default="demo", choices=["demo", "paper"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--mixed-precision", help="Keras dtype policy, e.g. mixed_bfloat16")
    p.add_argument("--scale", action="store_true",
                   help="instead: every stage's time and peak memory on a synthetic "
                        "competition at two sizes (--sizes), into features/scale.md")
    p.add_argument("--sizes", default="10000,40000", help="labeled videos, comma-separated")
    p.add_argument("--train-path", action="store_true",
                   help="instead: examples/s of the real training path (cache, loader, "
                        "look-ahead feed, compiled fit step) for --models (default nextvlad) at "
                        "--preset, per backend (--backends) and feed, into features/train.md; "
                        "on a GPU: yt8m bench --train-path --preset paper --backends jax")
    p.add_argument("--backends", default="tensorflow,jax",
                   help="Keras backends for --train-path, comma-separated")
    p.add_argument("--top-k", action="store_true",
                   help="instead, in a trained workspace (make all): every ensembles/*.yaml "
                        "built from dense and from top-k (yt8m compact) copies of its members, "
                        "OOF GAP@20 and disk side by side, into features/topk.md")
    p.add_argument("--top-k-values", default="20,50,100,200", help="the K to compare")
    p.add_argument("--top-k-ensembles",
                   help="only these ensemble ids or combiners, comma-separated, e.g. "
                        "mean,weighted to leave out the slower stacker (None: every spec)")

    p = command("train", _train, "train model specs out-of-fold over the shard folds",
                "For each spec (models/<id>.yaml), train every fold not yet trained on the other "
                "folds' labeled videos, keep the epoch with the best GAP@20 on the held-out "
                "fold, predict it and the test split, and when all folds are done write "
                "models/<id>/ out-of-fold and test predictions and metrics.json. Interrupted "
                "folds resume from their last finished epoch; a changed spec retrains. A "
                "raw-video spec (model: stnet) trains on its dataset's train split and writes "
                "validate top-1/top-5 and test scores instead.")
    p.add_argument("specs", nargs="+", help="models/<id>.yaml files")
    p.add_argument("--fold", type=int, action="append",
                   help="train only this fold (repeat for several)")
    p.add_argument("--features", default="features")
    p.add_argument("--models", help="output folder (default: the spec's folder)")
    p.add_argument("--quiet", action="store_true", help="no Keras progress bars")
    p.add_argument("--skip-bad-videos", action="store_true",
                   help="raw-video specs: leave out (and list) videos that are missing, cannot be "
                        "decoded or are shorter than a segment, instead of stopping")
    p.add_argument("--jobs", type=int, default=1,
                   help="YouTube-8M specs trained side by side, one worker process each (on a "
                        "CPU, 2 on two cores trains small models about 1.4x faster; on one GPU "
                        "keep 1)")
    p.add_argument("--distribute", action="store_true",
                   help="data parallel over every local GPU: Keras DataParallel (JAX) or "
                        "tf.distribute.MirroredStrategy (TensorFlow); the batch size must be a "
                        "multiple of the device count. With YT8M_WORKERS=host:port,... and "
                        "YT8M_PROCESS_ID=i set (the same command in every process), one model "
                        "per fold over every process; process 0 alone writes")
    p.add_argument("--level", default="frame", choices=["frame", "video"],
                   help="the cache to train on, features/<level>/: video trains the "
                        "video-level models (video_logistic, video_moe) on the video-level "
                        "features and refuses frame-level ones")

    p = command("segments", _segments, "2019: fine-tune trained specs on rated segments and "
                "score every 5-second segment",
                "For each frame-level spec with a `segments:` section (epochs, learning_rate, "
                "batch_size), after its folds are trained: fine-tune each fold's model on the "
                "rated segments of the other folds' validate videos (only the rated classes "
                "count), score every 5-second segment of its own rated videos (out of fold) and "
                "of the test videos, and write models/<id>/segments/ with the out-of-fold "
                "MAP@100000 over the scored classes (input/segment_label_ids.csv). Finished "
                "folds are kept.")
    p.add_argument("specs", nargs="+", help="models/<id>.yaml files")
    p.add_argument("--features", default="features")
    p.add_argument("--input", default="input", help="where segment_label_ids.csv is")
    p.add_argument("--models", help="output folder (default: the spec's folder)")
    p.add_argument("--quiet", action="store_true", help="no Keras progress bars")

    p = command("predict", _predict, "score a split with a trained model, without retraining",
                "Score the videos of one split of a feature cache (the training cache's test "
                "split, or a cache built from new shards with yt8m features --input NEW "
                "--features NEW_FEATURES) with a trained source's models: the fold models' "
                "mean (as training's test predictions), one fold, or the refit model. Writes "
                "test_* predictions and predict.json (with GAP@20 where the videos are "
                "labeled) into OUT, a source for yt8m submission write --source OUT.")
    p.add_argument("source", help="a trained models/<id> folder")
    p.add_argument("--features", default="features", help="the cache holding the videos")
    p.add_argument("--split", default="test", choices=["train", "validate", "test"])
    p.add_argument("--which", default="mean", help="mean (of the fold models), fold:K or refit")
    p.add_argument("--level", choices=["frame", "video"],
                   help="the cache level (default: the one the source trained on)")
    p.add_argument("--out", help="output folder (default: <source>/predict/<split>-<which>)")
    p.add_argument("--force", action="store_true", help="replace existing predictions")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = command("specs", _specs, "list the specs that train at a level",
                "Print the YouTube-8M model specs among SPECS that train on features/<level>/ "
                "(every one at frame level, the video-level models at video level), then the "
                "ensemble specs (ensembles/<id>.yaml) whose members are all among them: what "
                "make train-all and make ensemble build at LEVEL=video.")
    p.add_argument("specs", nargs="*", help="models/<id>.yaml and ensembles/<id>.yaml files")
    p.add_argument("--level", default="frame", choices=["frame", "video"])

    p = command("ensemble", _ensemble, "blend trained models into ensembles/<id>/",
                "Blend the members' out-of-fold and test logits with the spec's combiner (mean; "
                "weights fitted to maximise OOF GAP@20; or a stacker model per fold; all "
                "honestly cross-fitted over the folds) "
                "and write the blended predictions, metrics.json and report.md.")
    p.add_argument("specs", nargs="+", help="ensembles/<id>.yaml files")
    p.add_argument("--features", default="features")
    p.add_argument("--models", default="models", help="where the member models are")
    p.add_argument("--out", help="output folder (default: the spec's folder)")

    p = command("compact", _compact, "keep only each video's top K logits of a source",
                "Rewrite the dense out-of-fold and test predictions of models/<id> or "
                "ensembles/<id> folders (their fold_<k>/ parts included) as each video's K "
                "highest logits, their classes and a floor every other class reads as: about "
                "2K/classes of the disk. Every metric that reads at most a video's top 20 "
                "classes (GAP@20, Hit@1, PERR, mAP) is unchanged, and so is a submission; "
                "ensembles read the compact form like the dense one, but a blend of compacted "
                "members can score otherwise (`yt8m bench --top-k` measures by how much). A "
                "kill at any moment leaves the predictions readable; run it again to finish.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="models/<id> or ensembles/<id> folders")
    p.add_argument("--top-k", type=int, required=True, metavar="K",
                   help="classes kept per video (at least 20)")

    p = command("leaderboard", _leaderboard, "the out-of-fold scores of everything trained",
                "One table of every trained model (and ensemble) with test predictions, best "
                "OOF GAP@20 first.")
    p.add_argument("--roots", nargs="+", default=["ensembles", "models"])

    p = command("size", _size, "parameters and checkpoint size of a model spec",
                "Build a model spec (models/<id>.yaml, or a zoo model name with --preset) and "
                "print its trainable and total parameters and its float32/float16 checkpoint "
                "size against the 2018 challenge's 1 GB limit.")
    p.add_argument("spec", help="models/<id>.yaml or a model name")
    p.add_argument("--preset", default="paper", choices=["paper", "demo"])
    p.add_argument("--num-classes", type=int, default=None)

    p = command("export", _export, "one self-contained inference model from a trained source",
                "Write a trained models/<id> as one Keras file that needs no spec, folds or "
                "feature cache (load it with yt8m.models.export.load): the mean of every fold "
                "model's logits (its test predictions), one fold's model, or the refit model; "
                "weights in float32 or float16 (the math stays float32). With the TensorFlow "
                "backend a TF SavedModel folder is written beside it. Prints its size against "
                "the 2018 challenge's 1 GB limit; <out>.json records the export.")
    p.add_argument("source", help="a trained models/<id> folder")
    p.add_argument("--which", default="mean", metavar="mean|fold:K|refit",
                   help="the fold models' mean, fold K's model, or the refit model")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="how the weights are stored")
    p.add_argument("--out", help="the .keras file (default: <source>/export/<which>-<dtype>"
                                 ".keras)")
    p.add_argument("--no-saved-model", action="store_true",
                   help="write no TF SavedModel folder beside it")
    p.add_argument("--force", action="store_true", help="replace an existing export")

    p = sub.add_parser("submission", help="write, check, score and submit Kaggle submissions",
                       description="Kaggle submission files under submissions/.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name, func, help_text, description):
        a = actions.add_parser(name, help=help_text, description=description,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        a.set_defaults(func=func)
        a.add_argument("--features", default="features")
        a.add_argument("--level", choices=["frame", "video"],
                       help="the cache whose test videos a submission covers (default: the "
                            "source's level, else frame, else video)")
        a.add_argument("--input", default="input")
        a.add_argument("--output", default="submissions", help="the submissions folder")
        return a

    a = action("write", _submission_write, "write submissions/<id>.csv from test predictions",
               "Write the top-20 label-confidence pairs of every test video from a model's or "
               "ensemble's test logits (default: the best by OOF GAP under ensembles/ and "
               "models/), check the file, and record its provenance in <id>.json. On the sample "
               "competition it is also scored against input/solution.csv.")
    a.add_argument("--source", help="a models/<id> or ensembles/<id> folder; a raw-video "
                                    "model's folder gives submissions/<id>.results.json (the "
                                    "ActivityNet Kinetics results format) instead")
    a.add_argument("--roots", nargs="+", default=["ensembles", "models"],
                   help="where to look for the best source when --source is not given")
    a.add_argument("--id", help="submission id (default: the source's id)")
    a.add_argument("--gzip", action="store_true", help="write <id>.csv.gz")
    a.add_argument("--force", action="store_true", help="replace an existing submission")
    a.add_argument("--competition", default="youtube8m-2018")

    a = action("check", _submission_check, "validate a submission file",
               "Check the header, that every test video appears exactly once, the 20 pairs per "
               "row, label ids against the vocabulary, duplicates, and confidences in [0, 1] "
               "sorted highest first (or the 2019 Class,Segments format). Lists every problem "
               "with its line number.")
    a.add_argument("file")
    a.add_argument("--max-problems", type=int, default=50, help="problems to print")

    a = action("score", _submission_score, "score a submission against an answer key",
               "GAP@20, Hit@1, PERR and mAP of a video-level submission against a "
               "VideoId,Labels CSV (the sample competition writes input/solution.csv); "
               "MAP@100000 of a 2019 Class,Segments submission against a Segment,Class,Rating "
               "CSV (the 2019 sample writes input/segment_solution.csv).")
    a.add_argument("file")
    a.add_argument("--solution", default="input/solution.csv")
    a.add_argument("--segment-solution", default="input/segment_solution.csv")

    a = action("submit", _submission_submit, "send a submission with the kaggle CLI",
               "Check a submission, then run `kaggle competitions submit` for it. Credentials "
               "are the kaggle CLI's own (KAGGLE_API_TOKEN, ~/.kaggle/access_token, "
               "~/.kaggle/kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY); they are never printed.")
    a.add_argument("sub", nargs="?", help="submission id or file")
    a.add_argument("--competition", default="youtube8m-2018",
                   help="Kaggle slug or year: youtube8m (2017), youtube8m-2018, youtube8m-2019")
    a.add_argument("--message", help="submission message (default: source and OOF GAP)")
    a.add_argument("--dry-run", action="store_true", help="print the command instead")
    return parser


def _name(args):
    action = getattr(args, "action", None)
    return f"yt8m {args.command}" + (f" {action}" if action else "")


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except Yt8mError as e:
        print(f"{_name(args)}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # permissions, full disks: name the file, skip the traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"{_name(args)}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{_name(args)}: interrupted; finished work is kept, run the same command "
              f"again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
