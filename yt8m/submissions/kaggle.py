"""Hand a submission file to the kaggle CLI, following its credential conventions.

Credentials are looked up where the kaggle CLI looks, without reading or printing them:
`KAGGLE_API_TOKEN`, `~/.kaggle/access_token`, `KAGGLE_USERNAME` + `KAGGLE_KEY`, and
`kaggle.json` in `KAGGLE_CONFIG_DIR`, `~/.kaggle` or `$XDG_CONFIG_HOME/kaggle`.
"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import Yt8mError

# Kaggle slug -> the submission format it takes.
COMPETITIONS = {"youtube8m": "video", "youtube8m-2018": "video", "youtube8m-2019": "segments"}
ALIASES = {"2017": "youtube8m", "2018": "youtube8m-2018", "2019": "youtube8m-2019"}

SETUP_HELP = """\
no Kaggle credentials found. Set one up the way the kaggle CLI expects, then run this again:
  1. Sign in at https://www.kaggle.com and open Settings > API; create a new API token.
  2. Give it to the CLI in one of these ways (keep the file private: chmod 600):
       export KAGGLE_API_TOKEN=<the token>          or save it to ~/.kaggle/access_token
       save the downloaded kaggle.json as ~/.kaggle/kaggle.json (or in $KAGGLE_CONFIG_DIR)
       export KAGGLE_USERNAME=<user> KAGGLE_KEY=<key>
  3. Accept the rules on https://www.kaggle.com/c/{competition}/rules, or Kaggle refuses the file.
Nothing was submitted."""


def competition_slug(name):
    """The Kaggle slug of a competition name or year; an error lists the supported ones."""
    slug = ALIASES.get(str(name), str(name))
    if slug not in COMPETITIONS:
        known = ", ".join(f"{s} ({y})" for y, s in ALIASES.items())
        raise Yt8mError(f"unknown competition {name!r}; supported: {known}")
    return slug


def credential_source(env=None, home=None):
    """Where the kaggle CLI would find credentials (a description, never the secret), or None."""
    env = os.environ if env is None else env
    home = Path(home or Path.home())
    if env.get("KAGGLE_API_TOKEN"):
        return "the KAGGLE_API_TOKEN environment variable"
    for name in ("access_token", "access_token.txt"):
        if (home / ".kaggle" / name).is_file():
            return f"~/.kaggle/{name}"
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "the KAGGLE_USERNAME and KAGGLE_KEY environment variables"
    folders = []
    if env.get("KAGGLE_CONFIG_DIR"):
        folders.append(Path(env["KAGGLE_CONFIG_DIR"]))
    folders.append(home / ".kaggle")
    folders.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle")
    for folder in folders:
        if (folder / "kaggle.json").is_file():
            return str(folder / "kaggle.json")
    return None


def kaggle_executable():
    beside = Path(sys.executable).parent / "kaggle"
    if beside.is_file():
        return str(beside)
    found = shutil.which("kaggle")
    if not found:
        raise Yt8mError("the kaggle CLI is not installed; run make setup")
    return found


def submit_command(path, competition, message):
    return [kaggle_executable(), "competitions", "submit", "-c", competition, "-f", str(path),
            "-m", message]


def submit(path, competition, message, dry_run=False, env=None, home=None, run=subprocess.run):
    """Submit `path` to `competition` with the kaggle CLI; with `dry_run` only print the command.

    Returns the kaggle CLI's exit status (0 for a dry run).
    """
    command = submit_command(path, competition, message)
    source = credential_source(env, home)
    if dry_run:
        print("would run: " + shlex.join(command))
        print(f"credentials: {'found in ' + source if source else 'none found'}")
        return 0
    if source is None:
        raise Yt8mError(SETUP_HELP.format(competition=competition))
    print(f"submitting {path} to {competition} (credentials from {source})")
    return run(command, check=False).returncode
