"""Progress output: live bars on a terminal only, so that a log file or a pipe gets lines, not a
bar's redraws."""

import sys

from tqdm import tqdm


def progress_bar(iterable=None, progress=True, **kwargs):
    """A tqdm bar, drawn only when `progress` is set and standard error is a terminal (tqdm's
    `disable=None`); otherwise a silent one, which still iterates and counts."""
    return tqdm(iterable, disable=None if progress else True, **kwargs)


def fit_verbosity(progress):
    """Keras `fit`'s `verbose`: a live bar on a terminal, one line per epoch into a file or a
    pipe, nothing without `progress`."""
    if not progress:
        return 0
    return 1 if sys.stdout.isatty() else 2
