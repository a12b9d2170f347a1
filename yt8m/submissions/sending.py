"""Choosing and vetting the submission that `yt8m submission submit` sends to Kaggle."""

from pathlib import Path

from yt8m.errors import Yt8mError
from yt8m.submissions.kaggle import COMPETITIONS
from yt8m.submissions.writer import resolve


def submission_to_send(sub, output="submissions"):
    """The file of submission `sub` (an id under `output`, or a path); an error naming the
    submissions in `output` when `sub` is empty."""
    if not sub:
        present = sorted(p.name for p in Path(output).glob("*.csv*"))
        raise Yt8mError(f"name the submission to send: make submit SUB=<id> (in {output}/: "
                        f"{', '.join(present) or 'none yet'})")
    return resolve(sub, output)


def check_competition(path, kind, slug):
    """An error when a `kind`-level submission (video or segments) is not what `slug` takes."""
    if kind != COMPETITIONS[slug]:
        raise Yt8mError(f"{path} is a {kind}-level submission but {slug} takes "
                        f"{COMPETITIONS[slug]}-level files")
