"""submissions/: `yt8m submission write`, `check`, `score` and `submit` (and the Kinetics
results files that `write` makes from a raw-video model)."""

import argparse
import sys

from yt8m.errors import Yt8mError


def _print_video_score(solution, result):
    print(f"scored against {solution}: GAP@20 {result['gap']:.5f}, Hit@1 "
          f"{result['hit_at_one']:.5f}, PERR {result['perr']:.5f}, mAP {result['map']:.5f} "
          f"({result['videos']} videos)")


def _print_segment_score(answer_key, result):
    print(f"scored against {answer_key}: MAP@{result['top_k']} {result['map']:.5f} "
          f"({result['ratings']} rated test segments)")


def _results_write(args):
    from yt8m.submissions import kinetics
    from yt8m.submissions.scoring import results_answer_key, score_results

    path, info, written = kinetics.write_results(args.source, args.output, args.id,
                                                 force=args.force)
    state = "wrote" if written else "up to date:"
    v = info.get("validate") or {}
    estimate = f"; validate top-1 {v['video_top1']:.4f}" if v else ""
    print(f"{state} {path} ({info['rows']} videos, from {info['source']}{estimate})")
    solution = results_answer_key(args.source, info)
    if solution is not None:
        result = score_results(path, solution)
        print(f"scored against {solution}: top-1 {result['top1']:.4f}, top-5 "
              f"{result['top5']:.4f} ({result['videos']} videos)")


def _segments_written(path, info, state, args):
    from yt8m.submissions.scoring import answer_key, score_segments

    print(f"{state} {path} ({info['rows']} classes, {info['segments']} test segments, from "
          f"{info['source']}; out-of-fold MAP@100000 {info['oof']['map']:.4f})")
    key = answer_key(args.input, segment=True)
    if key is not None:
        _print_segment_score(key, score_segments(path, key, args.input))


def _submission_write(args):
    from yt8m.submissions.kaggle import competition_slug
    from yt8m.submissions.kinetics import is_clip_source
    from yt8m.submissions.scoring import answer_key, score_videos
    from yt8m.submissions.writer import write_submission

    if args.source and is_clip_source(args.source):
        return _results_write(args)
    path, info, written = write_submission(
        args.source, args.output, args.id, args.features, args.level, args.input, gz=args.gzip,
        force=args.force, competition=competition_slug(args.competition), roots=args.roots)
    state = "wrote" if written else "up to date:"
    if info.get("source_kind") == "segments":
        return _segments_written(path, info, state, args)
    gap = (info.get("oof") or {}).get("gap")
    estimate = f"; OOF GAP@20 {gap:.5f}" if isinstance(gap, float) else ""
    print(f"{state} {path} ({info['rows']} videos, from {info['source']}{estimate})")
    solution = answer_key(args.input)
    if solution is not None:
        _print_video_score(solution, score_videos(path, solution, args.features, args.level,
                                                  info.get("classes")))


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
    from yt8m.submissions.scoring import is_segment_submission, score_segments, score_videos

    if is_segment_submission(args.file):
        _print_segment_score(args.segment_solution,
                             score_segments(args.file, args.segment_solution, args.input))
        return
    _print_video_score(args.solution,
                       score_videos(args.file, args.solution, args.features, args.level))


def _submission_submit(args):
    from yt8m.submissions import kaggle
    from yt8m.submissions.sending import check_competition, submission_to_send
    from yt8m.submissions.writer import check_file, default_message

    slug = kaggle.competition_slug(args.competition)
    path = submission_to_send(args.sub, args.output)
    report = check_file(path, args.features, args.level, args.input)
    if not report.ok:
        print(report.format(20), file=sys.stderr)
        raise Yt8mError(f"{path} is not a valid submission; nothing was submitted")
    check_competition(path, report.kind, slug)
    status = kaggle.submit(path, slug, args.message or default_message(path),
                           dry_run=args.dry_run)
    if status:
        raise Yt8mError(f"the kaggle CLI failed (exit {status}); see its message above")


def _add_action(actions, name, func, help_text, description):
    """Add `yt8m submission <name>` with the options every action shares."""
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


def _add_write(actions):
    a = _add_action(actions, "write", _submission_write,
                    "write submissions/<id>.csv from test predictions",
                    "Write the top-20 label-confidence pairs of every test video from a model's "
                    "or ensemble's test logits (default: the best by OOF GAP under ensembles/ "
                    "and models/), check the file, and record its provenance in <id>.json. On "
                    "the sample competition it is also scored against input/solution.csv.")
    a.add_argument("--source", help="a models/<id> or ensembles/<id> folder; a raw-video "
                                    "model's folder gives submissions/<id>.results.json (the "
                                    "ActivityNet Kinetics results format) instead")
    a.add_argument("--roots", nargs="+", default=["ensembles", "models"],
                   help="where to look for the best source when --source is not given")
    a.add_argument("--id", help="submission id (default: the source's id)")
    a.add_argument("--gzip", action="store_true", help="write <id>.csv.gz")
    a.add_argument("--force", action="store_true", help="replace an existing submission")
    a.add_argument("--competition", default="youtube8m-2018")


def _add_check(actions):
    a = _add_action(actions, "check", _submission_check, "validate a submission file",
                    "Check the header, that every test video appears exactly once, the 20 pairs "
                    "per row, label ids against the vocabulary, duplicates, and confidences in "
                    "[0, 1] sorted highest first (or the 2019 Class,Segments format). Lists "
                    "every problem with its line number.")
    a.add_argument("file")
    a.add_argument("--max-problems", type=int, default=50, help="problems to print")


def _add_score(actions):
    a = _add_action(actions, "score", _submission_score,
                    "score a submission against an answer key",
                    "GAP@20, Hit@1, PERR and mAP of a video-level submission against a "
                    "VideoId,Labels CSV (the sample competition writes input/solution.csv); "
                    "MAP@100000 of a 2019 Class,Segments submission against a "
                    "Segment,Class,Rating CSV (the 2019 sample writes "
                    "input/segment_solution.csv).")
    a.add_argument("file")
    a.add_argument("--solution", default="input/solution.csv")
    a.add_argument("--segment-solution", default="input/segment_solution.csv")


def _add_submit(actions):
    a = _add_action(actions, "submit", _submission_submit,
                    "send a submission with the kaggle CLI",
                    "Check a submission, then run `kaggle competitions submit` for it. "
                    "Credentials are the kaggle CLI's own (KAGGLE_API_TOKEN, "
                    "~/.kaggle/access_token, ~/.kaggle/kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY); "
                    "they are never printed.")
    a.add_argument("sub", nargs="?", help="submission id or file")
    a.add_argument("--competition", default="youtube8m-2018",
                   help="Kaggle slug or year: youtube8m (2017), youtube8m-2018, youtube8m-2019")
    a.add_argument("--message", help="submission message (default: source and OOF GAP)")
    a.add_argument("--dry-run", action="store_true", help="print the command instead")


def add_submission(sub):
    p = sub.add_parser("submission", help="write, check, score and submit Kaggle submissions",
                       description="Kaggle submission files under submissions/.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in (_add_write, _add_check, _add_score, _add_submit):
        add(actions)


COMMANDS = {"submission": add_submission}
