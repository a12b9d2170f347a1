"""`yt8m bench`: throughput and scale measurements, reported as Markdown under notebooks/."""

from yt8m.cli.common import add_command


def _ints(text):
    return tuple(int(n) for n in text.split(","))


def _bench(args):
    """Without --output, each measurement writes its own report (`yt8m.bench.reports.REPORTS`)."""
    from yt8m.bench import reports, run_benchmarks

    output = args.output
    if args.scale:
        text = reports.write_scale_report(_ints(args.sizes), output)
    elif args.top_k:
        chosen = args.top_k_ensembles.split(",") if args.top_k_ensembles else None
        text = reports.write_topk_report(_ints(args.top_k_values), chosen, output)
    elif args.train_path:
        text = reports.write_train_path_report((args.models or "nextvlad").split(","),
                                               args.preset, args.steps,
                                               args.backends.split(","), output)
    elif args.models:
        names = None if args.models == "all" else args.models.split(",")
        text = reports.write_throughput_report(names, args.preset, args.steps,
                                               args.mixed_precision, output)
    else:
        run_benchmarks(output or reports.REPORTS["bench"], quick=args.quick)
        return
    print(text)


def add_bench(sub):
    p = add_command(sub, "bench", _bench, "measure cache, loader, scoring and model throughput",
                    "Generate a benchmark competition in a temporary folder, time the cache "
                    "build (one worker and the default) against per-record tf.io parsing of the "
                    "same shards, time the batch loader at the demo and paper frame counts, the "
                    "metrics against a per-class heap implementation, and every demo model's "
                    "train and inference steps. Writes Markdown tables with the machine and the "
                    "method. With --models, only the model throughput (any preset, backend and "
                    "precision).")
    p.add_argument("--output")
    p.add_argument("--quick", action="store_true", help="a smaller benchmark, for testing")
    p.add_argument("--models", help="only model throughput: 'all' or comma-separated names "
                                    "(e.g. on a GPU: KERAS_BACKEND=jax yt8m bench --models "
                                    "nextvlad --preset paper --mixed-precision mixed_bfloat16)")
    p.add_argument("--preset", default="demo", choices=["demo", "paper"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--mixed-precision", help="Keras dtype policy, e.g. mixed_bfloat16")
    p.add_argument("--scale", action="store_true",
                   help="instead: every stage's time and peak memory on a synthetic "
                        "competition at two sizes (--sizes), into notebooks/scale.md")
    p.add_argument("--sizes", default="10000,40000", help="labeled videos, comma-separated")
    p.add_argument("--train-path", action="store_true",
                   help="instead: examples/s of the real training path (cache, loader, "
                        "look-ahead feed, compiled fit step) for --models (default nextvlad) at "
                        "--preset, per backend (--backends) and feed, into notebooks/train.md; "
                        "on a GPU: yt8m bench --train-path --preset paper --backends jax")
    p.add_argument("--backends", default="tensorflow,jax",
                   help="Keras backends for --train-path, comma-separated")
    p.add_argument("--top-k", action="store_true",
                   help="instead, in a trained workspace (make all): every ensembles/*.yaml "
                        "built from dense and from top-k (yt8m compact) copies of its members, "
                        "OOF GAP@20 and disk side by side, into notebooks/topk.md")
    p.add_argument("--top-k-values", default="20,50,100,200", help="the K to compare")
    p.add_argument("--top-k-ensembles",
                   help="only these ensemble ids or combiners, comma-separated, e.g. "
                        "mean,weighted to leave out the slower stacker (None: every spec)")


COMMANDS = {"bench": add_bench}
