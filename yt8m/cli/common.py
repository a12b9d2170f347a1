"""What the stages' sub-commands share: how each one's parser is made."""

import argparse


def add_command(sub, name, func, help_text, description):
    """Add sub-command `name`, run by `func(args)`, whose help lists every option's default."""
    p = sub.add_parser(name, help=help_text, description=description,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.set_defaults(func=func)
    return p
