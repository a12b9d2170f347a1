"""Where a workspace's stage folders are, for the notebooks and anything else not run by Make.

The workspace is `$YT8M_WORKSPACE` when set, else the nearest of the current folder and its
parents that holds both `input/` and `models/` (a notebook started in `notebooks/` finds the
workspace above it).
"""

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import Yt8mError

ENVIRONMENT_VARIABLE = "YT8M_WORKSPACE"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def input(self):
        return self.root / "input"

    @property
    def features(self):
        return self.root / "features"

    @property
    def models(self):
        return self.root / "models"

    @property
    def ensembles(self):
        return self.root / "ensembles"

    @property
    def submissions(self):
        return self.root / "submissions"


def _is_workspace(folder):
    return (folder / "input").is_dir() and (folder / "models").is_dir()


def workspace(root=None):
    """The `Workspace` at `root`, `$YT8M_WORKSPACE` or above the current folder."""
    if root is None and os.environ.get(ENVIRONMENT_VARIABLE):
        root = os.environ[ENVIRONMENT_VARIABLE]
    if root is not None:
        root = Path(root).resolve()
        if not _is_workspace(root):
            raise Yt8mError(f"{root}: not a workspace (expected input/ and models/ in it)")
        return Workspace(root)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if _is_workspace(folder):
            return Workspace(folder)
    raise Yt8mError(f"no workspace (a folder with input/ and models/) at or above {here}; "
                    f"run from the workspace or set {ENVIRONMENT_VARIABLE}")
