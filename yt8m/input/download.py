"""Fetch real YouTube-8M shards with the dataset's official `download.py`.

The official way is `curl data.yt8m.org/download.py | partition=2/frame/train mirror=us python`, run
inside the folder that should receive the shards; `shard=m,n` fetches the m-th of n equal parts
(`shard=1,100` is 1%). The script skips shards already there, so an interrupted download resumes.
This module runs that script in `input/<level>/` and fetches the matching `vocabulary.csv`.

`yt8m.features.piecewise` fetches a fraction in pieces and builds the feature cache after each.
"""

import hashlib
import json
import os
import re
import string
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from yt8m.errors import Yt8mError

SCRIPT_URL = "http://data.yt8m.org/download.py"
VOCABULARY_URLS = {
    "2": "https://research.google.com/youtube8m/csv/2/vocabulary.csv",
    "3": "https://research.google.com/youtube8m/csv/2/vocabulary.csv",
}
_PARTITION = re.compile(r"^(?P<v>[123])/(?P<level>frame|video|frame_level|video_level)/"
                        r"(?P<split>train|validate|test)$")
_SHARD = re.compile(r"^(\d+),(\d+)$")


def parse_partition(partition):
    """'2/frame/train' -> ('2', 'frame', 'train'), with a clear error for anything else."""
    m = _PARTITION.match(partition)
    if not m:
        raise Yt8mError(f"bad partition {partition!r}: expected VERSION/LEVEL/SPLIT such as "
                        f"2/frame/train, 2/video/validate or 3/frame/test (versions 1, 2, 3; "
                        f"levels frame, video; splits train, validate, test)")
    return m["v"], ("frame" if m["level"].startswith("frame") else "video"), m["split"]


def check_shard(shard):
    m = _SHARD.match(shard or "")
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        raise Yt8mError(f"bad shard {shard!r}: expected m,n with 1 <= m <= n, e.g. 1,100 for the "
                        f"first hundredth of the partition")
    return shard


def _fetch(url, what):
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as e:
        raise Yt8mError(f"could not fetch {what} from {url} ({e}); check the network, or run the "
                        f"official command by hand inside input/<level>/: curl {SCRIPT_URL} | "
                        f"partition=2/frame/train mirror=us python") from None


def split_shard(shard, parts):
    """The fraction `shard` ('m,n') as `parts` fractions of n*parts that together take exactly its
    files: the official script puts a file in part m of n when md5(name) % n == m - 1, and the
    residues m - 1 + n*k (k < parts) of n*parts are the ones with that remainder mod n."""
    check_shard(shard)
    if parts < 1:
        raise Yt8mError(f"--parts must be at least 1 (got {parts})")
    m, n = map(int, shard.split(","))
    return [f"{m + n * k},{n * parts}" for k in range(parts)]


# The official script saves remote file 'trainAB.tfrecord' as 'train' + the index of 'AB' among
# the two-letter codes over these letters, in 4 digits.
_FILE_LETTERS = string.ascii_lowercase + string.ascii_uppercase + string.digits


def _local_name(remote):
    stem, _, ext = remote.partition(".")
    if len(stem) < 2 or not set(stem[-2:]) <= set(_FILE_LETTERS):
        return remote
    index = _FILE_LETTERS.index(stem[-2]) * len(_FILE_LETTERS) + _FILE_LETTERS.index(stem[-1])
    return f"{stem[:-2]}{index:04d}.{ext}"


def _md5(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _not_downloaded(target, partition, shard):
    """Local names of the files of fraction `shard` that are missing or fail their MD5 after the
    official script ran.

    The script drops a file from `<partition>_download_plan.json` once its MD5 matches and exits
    0 even when one does not (it prints an error and keeps the file in the plan), so the plan
    names the suspects. No readable plan (another version of the script): nothing to report.
    """
    try:
        files = json.loads((target / f"{partition.replace('/', '_')}_download_plan.json")
                           .read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    m, n = map(int, shard.split(","))
    bad = []
    for remote, md5 in files.items():
        if int(hashlib.md5(remote.encode()).hexdigest(), 16) % n != m - 1:
            continue
        names = {_local_name(remote), remote}
        if not any((target / name).is_file() and _md5(target / name) == md5 for name in names):
            bad.append(_local_name(remote))
    return sorted(bad)


def download(partition, shard="1,100", mirror="us", input_dir="input", script_url=None,
             vocabulary_url=None):
    """Download one partition (or a fraction of it) into `input_dir/<level>/`.

    Returns the folder the shards went to.
    """
    script_url = script_url or SCRIPT_URL
    version, level, _split = parse_partition(partition)
    check_shard(shard)
    if mirror not in ("us", "eu", "asia"):
        raise Yt8mError(f"bad mirror {mirror!r}: choose us, eu or asia")
    target = Path(input_dir) / level
    target.mkdir(parents=True, exist_ok=True)
    script = _fetch(script_url, "the official download script")
    env = dict(os.environ, partition=partition, mirror=mirror, shard=shard)
    result = subprocess.run([sys.executable, "-"], input=script, cwd=target, env=env)
    if result.returncode != 0:
        raise Yt8mError(f"the official download script failed (exit {result.returncode}) for "
                        f"partition={partition} shard={shard} mirror={mirror}; it keeps what it "
                        f"finished, so run the same command again to resume")
    bad = _not_downloaded(target, partition, shard)
    if bad:
        raise Yt8mError(f"the official download script did not fetch {len(bad)} files of "
                        f"partition={partition} shard={shard} in {target}/ "
                        f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): they are "
                        f"missing or fail their MD5 (its plan still lists them). Delete those "
                        f"that are there and run the same command again: it fetches them anew")
    vocabulary = Path(input_dir) / "vocabulary.csv"
    url = vocabulary_url or VOCABULARY_URLS.get(version)
    if url and not vocabulary.exists():
        from yt8m.fileio import atomic_path

        with atomic_path(vocabulary) as tmp:
            tmp.write_bytes(_fetch(url, "the vocabulary"))
    return target
