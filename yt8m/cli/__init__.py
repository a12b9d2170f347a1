"""The `yt8m` command: one sub-command per stage of the workspace. The Makefile calls it.

Each stage's module (`input`, `features`, `bench`, `models`, `ensembles`, `submissions`) adds its
own sub-commands, whose handlers call the stage's API and print the result; this module puts
them together and turns errors into one line and an exit status.
"""

import argparse
import sys
import textwrap

from yt8m import __version__
from yt8m.cli import bench, ensembles, features, models, submissions
from yt8m.cli import input as input_stage
from yt8m.errors import Yt8mError

STAGES = (input_stage, features, bench, models, ensembles, submissions)

# the order `yt8m --help` lists the sub-commands in
COMMAND_ORDER = ("sample", "sample-video", "features", "info", "inspect", "download", "bench",
                 "train", "segments", "predict", "specs", "ensemble", "compact", "leaderboard",
                 "size", "export", "submission")


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
    adders = {name: add for stage in STAGES for name, add in stage.COMMANDS.items()}
    for name in sorted(adders, key=COMMAND_ORDER.index):  # a command missing there fails here
        adders[name](sub)
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
