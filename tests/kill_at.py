"""Run the `yt8m` CLI and SIGKILL it at a chosen point: the n-th call of a function.

    python tests/kill_at.py [MODULE:ATTRIBUTE N [after]] -- yt8m-arguments...

kills the process just before (or, with `after`, just after) the N-th call of
`MODULE.ATTRIBUTE` (a function or a method, e.g. `h5py:File.close`), the way a power cut, the
out-of-memory killer or `kill -9` would: no exception, no cleanup, no flushing.
"""

import functools
import importlib
import os
import signal
import sys


def arm(target, n, after=False):
    module_name, _, attribute = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = [0]

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls[0] == n and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    split = sys.argv.index("--")
    if split > 1:  # no kill point: a plain run
        target, n, *flags = sys.argv[1:split]
        arm(target, int(n), after="after" in flags)
    from yt8m.cli import main

    sys.exit(main(sys.argv[split + 1:]))
