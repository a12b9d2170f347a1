"""models/: `yt8m train`, `segments`, `predict`, `specs`, `compact`, `leaderboard`, `size` and
`export`."""

import sys
from pathlib import Path

from yt8m.cli.common import add_command
from yt8m.errors import Yt8mError


def _print_trained(spec, metrics, trained):
    name = Path(spec).stem
    if metrics is None:
        print(f"{name}: trained fold(s) {trained}; the other folds are still to train")
        return
    oof = metrics["oof"]
    state = "trained" if trained else "up to date"
    print(f"{name}: {state}; OOF GAP@20 {oof['gap']:.4f}, Hit@1 {oof['hit_at_one']:.4f}, "
          f"PERR {oof['perr']:.4f}, mAP {oof['map']:.4f} over {oof['videos']} videos")


def _train_clips(spec, args):
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
    from yt8m.models.selection import split_clip_specs
    from yt8m.models.train_specs import join_training_cluster, train_specs

    specs, clips = split_clip_specs(args.specs)
    cluster = join_training_cluster(args.distribute, args.jobs, clips)
    failed = []
    for spec, metrics, trained, error in train_specs(
            specs, args.fold, args.features, args.models, jobs=args.jobs,
            distribute=args.distribute, level=args.level, progress=not args.quiet):
        if error:
            print(f"{Path(spec).stem}: error: {error}", file=sys.stderr)
            failed.append(spec)
        elif cluster is not None and cluster.process_id:
            print(f"{Path(spec).stem}: process {cluster.process_id} of "
                  f"{cluster.num_processes} trained fold(s) {trained} with the cluster; "
                  f"process 0 wrote the outputs")
        else:
            _print_trained(spec, metrics, trained)
    for spec in clips:
        _train_clips(spec, args)
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


def _predict(args):
    from yt8m.models.predict import describe, predict

    print(describe(predict(args.source, args.features, args.split, args.which, args.out,
                           args.level, force=args.force, progress=not args.quiet)))


def _specs(args):
    from yt8m.ensembles.levels import specs_at_level

    print("\n".join(map(str, specs_at_level(args.specs, args.level))))


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


def _print_clip_table(rows):
    print(f"{'raw-video source':<28}{'model':<20}{'preset':<8}{'top-1':>8}{'top-5':>8}"
          f"{'clip-1':>8}{'clip-5':>8}{'videos':>8}{'seconds':>9}")
    for folder, info, v in rows:
        print(f"{str(folder):<28}{info['model']:<20}{info['preset']:<8}{v['video_top1']:>8.4f}"
              f"{v['video_top5']:>8.4f}{v['clip_top1']:>8.4f}{v['clip_top5']:>8.4f}"
              f"{v['videos']:>8}{info.get('seconds', '-'):>9}")


def _print_oof_table(rows):
    print(f"{'source':<28}{'model':<20}{'preset':<8}{'GAP@20':>8}{'Hit@1':>8}{'PERR':>8}"
          f"{'mAP':>8}{'videos':>8}{'seconds':>9}")
    for folder, info, oof in rows:
        cells = "".join(f"{oof[key]:>8.4f}" if isinstance(oof.get(key), float) else f"{'-':>8}"
                        for key in ("gap", "hit_at_one", "perr", "map"))
        print(f"{str(folder):<28}{info.get('model', '-'):<20}{info.get('preset', '-'):<8}{cells}"
              f"{oof.get('videos', '-'):>8}{info.get('seconds', '-'):>9}")


def _leaderboard(args):
    from yt8m.models.leaderboard import leaderboard

    clips, rows = leaderboard(args.roots)
    if clips:
        _print_clip_table(clips)
    if rows:
        _print_oof_table(rows)


def _size(args):
    from yt8m.models.size import CHECKPOINT_DTYPES, LIMIT_BYTES, model_size

    size = model_size(args.spec, args.preset, args.num_classes)
    print(f"{size.model} ({size.preset} preset): {size.trainable:,} trainable parameters, "
          f"{size.total:,} in all")
    for name, width in CHECKPOINT_DTYPES:
        checkpoint = size.checkpoint_bytes(width)
        verdict = "within" if checkpoint < LIMIT_BYTES else "over"
        print(f"  {name} checkpoint: {checkpoint / 1e6:,.1f} MB ({checkpoint / LIMIT_BYTES:.1%} "
              f"of the 2018 challenge's 1 GB limit: {verdict})")


def _export(args):
    from yt8m.models.export import export_source

    r = export_source(args.source, out=args.out, which=args.which, dtype=args.dtype,
                      saved_model=False if args.no_saved_model else None, force=args.force)
    verdict = "within" if r["within_limit"] else "over"
    saved = (f"; SavedModel {r['saved_model']} ({r['saved_model_bytes'] / 1e6:,.1f} MB)"
             if r["saved_model"] else "")
    print(f"wrote {r['path']} ({r['bytes'] / 1e6:,.1f} MB, {r['parameters']:,} parameters, "
          f"{verdict} the 1 GB limit){saved}")


def add_train(sub):
    p = add_command(sub, "train", _train, "train model specs out-of-fold over the shard folds",
                    "For each spec (models/<id>.yaml), train every fold not yet trained on the "
                    "other folds' labeled videos, keep the epoch with the best GAP@20 on the "
                    "held-out fold, predict it and the test split, and when all folds are done "
                    "write models/<id>/ out-of-fold and test predictions and metrics.json. "
                    "Interrupted folds resume from their last finished epoch; a changed spec "
                    "retrains. A raw-video spec (model: stnet) trains on its dataset's train "
                    "split and writes validate top-1/top-5 and test scores instead.")
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


def add_segments(sub):
    p = add_command(sub, "segments", _segments,
                    "2019: fine-tune trained specs on rated segments and score every 5-second "
                    "segment",
                    "For each frame-level spec with a `segments:` section (epochs, "
                    "learning_rate, batch_size), after its folds are trained: fine-tune each "
                    "fold's model on the rated segments of the other folds' validate videos "
                    "(only the rated classes count), score every 5-second segment of its own "
                    "rated videos (out of fold) and of the test videos, and write "
                    "models/<id>/segments/ with the out-of-fold MAP@100000 over the scored "
                    "classes (input/segment_label_ids.csv). Finished folds are kept.")
    p.add_argument("specs", nargs="+", help="models/<id>.yaml files")
    p.add_argument("--features", default="features")
    p.add_argument("--input", default="input", help="where segment_label_ids.csv is")
    p.add_argument("--models", help="output folder (default: the spec's folder)")
    p.add_argument("--quiet", action="store_true", help="no Keras progress bars")


def add_predict(sub):
    p = add_command(sub, "predict", _predict,
                    "score a split with a trained model, without retraining",
                    "Score the videos of one split of a feature cache (the training cache's "
                    "test split, or a cache built from new shards with yt8m features --input NEW "
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


def add_specs(sub):
    p = add_command(sub, "specs", _specs, "list the specs that train at a level",
                    "Print the YouTube-8M model specs among SPECS that train on "
                    "features/<level>/ (every one at frame level, the video-level models at "
                    "video level), then the ensemble specs (ensembles/<id>.yaml) whose members "
                    "are all among them: what make train-all and make ensemble build at "
                    "LEVEL=video.")
    p.add_argument("specs", nargs="*", help="models/<id>.yaml and ensembles/<id>.yaml files")
    p.add_argument("--level", default="frame", choices=["frame", "video"])


def add_compact(sub):
    p = add_command(sub, "compact", _compact, "keep only each video's top K logits of a source",
                    "Rewrite the dense out-of-fold and test predictions of models/<id> or "
                    "ensembles/<id> folders (their fold_<k>/ parts included) as each video's K "
                    "highest logits, their classes and a floor every other class reads as: "
                    "about 2K/classes of the disk. Every metric that reads at most a video's "
                    "top 20 classes (GAP@20, Hit@1, PERR, mAP) is unchanged, and so is a "
                    "submission; ensembles read the compact form like the dense one, but a "
                    "blend of compacted members can score otherwise (`yt8m bench --top-k` "
                    "measures by how much). A kill at any moment leaves the predictions "
                    "readable; run it again to finish.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="models/<id> or ensembles/<id> folders")
    p.add_argument("--top-k", type=int, required=True, metavar="K",
                   help="classes kept per video (at least 20)")


def add_leaderboard(sub):
    p = add_command(sub, "leaderboard", _leaderboard,
                    "the out-of-fold scores of everything trained",
                    "One table of every trained model (and ensemble) with test predictions, "
                    "best OOF GAP@20 first.")
    p.add_argument("--roots", nargs="+", default=["ensembles", "models"])


def add_size(sub):
    p = add_command(sub, "size", _size, "parameters and checkpoint size of a model spec",
                    "Build a model spec (models/<id>.yaml, or a zoo model name with --preset) "
                    "and print its trainable and total parameters and its float32/float16 "
                    "checkpoint size against the 2018 challenge's 1 GB limit.")
    p.add_argument("spec", help="models/<id>.yaml or a model name")
    p.add_argument("--preset", default="paper", choices=["paper", "demo"])
    p.add_argument("--num-classes", type=int, default=None)


def add_export(sub):
    p = add_command(sub, "export", _export,
                    "one self-contained inference model from a trained source",
                    "Write a trained models/<id> as one Keras file that needs no spec, folds or "
                    "feature cache (load it with yt8m.models.export.load): the mean of every "
                    "fold model's logits (its test predictions), one fold's model, or the refit "
                    "model; weights in float32 or float16 (the math stays float32). With the "
                    "TensorFlow backend a TF SavedModel folder is written beside it. Prints its "
                    "size against the 2018 challenge's 1 GB limit; <out>.json records the "
                    "export.")
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


COMMANDS = {"train": add_train, "segments": add_segments, "predict": add_predict,
            "specs": add_specs, "compact": add_compact, "leaderboard": add_leaderboard,
            "size": add_size, "export": add_export}
