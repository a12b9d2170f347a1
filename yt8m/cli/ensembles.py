"""ensembles/: `yt8m ensemble`."""

from yt8m.cli.common import add_command


def _ensemble(args):
    from yt8m.ensembles import build, summary_line

    for spec in args.specs:
        print(summary_line(build(spec, args.features, args.models, args.out)))


def add_ensemble(sub):
    p = add_command(sub, "ensemble", _ensemble, "blend trained models into ensembles/<id>/",
                    "Blend the members' out-of-fold and test logits with the spec's combiner "
                    "(mean; weights fitted to maximise OOF GAP@20; or a stacker model per fold; "
                    "all honestly cross-fitted over the folds) and write the blended "
                    "predictions, metrics.json and report.md.")
    p.add_argument("specs", nargs="+", help="ensembles/<id>.yaml files")
    p.add_argument("--features", default="features")
    p.add_argument("--models", default="models", help="where the member models are")
    p.add_argument("--out", help="output folder (default: the spec's folder)")


COMMANDS = {"ensemble": add_ensemble}
