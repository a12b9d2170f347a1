"""Build `submissions/<id>.csv` from a model's or ensemble's test predictions, with provenance."""

import datetime
import hashlib
import json
from pathlib import Path

import numpy as np

from .. import __version__, predictions
from ..errors import Yt8mError
from ..features.build import read_vocabulary_size
from ..fileio import write_json
from . import segments, video
from .files import Report, is_gzip, open_text, read_lines


def test_ids(features="features", level="frame"):
    """The test split's video ids in cache order, or None when there is no cache."""
    from ..features.cache import FeatureCache

    try:
        cache = FeatureCache(features, level)
    except Yt8mError:
        return None, None
    return cache.ids[cache.rows("test")], cache.num_classes


def valid_classes(input_dir="input", num_classes=None):
    """Label ids allowed in a submission: the vocabulary's, else 0..num_classes-1, else None."""
    size = read_vocabulary_size(input_dir)
    size = size if size is not None else num_classes
    return None if size is None else range(size)


def scored_segment_classes(input_dir="input"):
    """The 2019 scored classes from `input/segment_label_ids.csv` (None when absent)."""
    path = Path(input_dir) / "segment_label_ids.csv"
    if not path.is_file():
        return None
    lines = read_lines(path, Report(path)) or []
    return [int(line) for number, line in lines if number > 1 and line.strip()]


def check_file(path, features="features", level="frame", input_dir="input"):
    """Validate any submission, choosing the format from its header; returns a `Report`."""
    if first_line(path) == segments.HEADER:
        try:
            known = segment_ids_for_test(features, level)
        except Yt8mError:
            known = None
        return segments.check(path, classes=scored_segment_classes(input_dir), segment_ids=known)
    ids, num_classes = test_ids(features, level)
    report = video.check(path, test_ids=ids, classes=valid_classes(input_dir, num_classes))
    report.kind = "video"
    return report


def first_line(path):
    """The header of a (plain or gzip) text file, or None when it cannot be read."""
    try:
        with open_text(path, "r", gz=is_gzip(path)) as f:
            return f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError, EOFError):
        return None


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_stamp(path):
    stat = Path(path).stat()
    return {"file": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def existing_submission(path, meta_path, source, predictions_path, force=False):
    """The provenance of `path` when it is already up to date with `predictions_path`, else None
    (write it). A file made from an earlier version of the same source may be replaced; one
    made from another source, or edited by hand, is an error unless `force`."""
    if not path.exists() or force:
        return None
    old = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    digest = sha256(path)
    if old.get("predictions") == file_stamp(predictions_path) and old.get("sha256") == digest:
        return old
    if old.get("source") != str(source) or old.get("sha256") != digest:
        raise Yt8mError(f"{path} already exists and was not made from {predictions_path}; pass "
                        f"--force (FORCE=1) to replace it or choose another id")
    return None


def choose_source(source=None, roots=("ensembles", "models")):
    """The source folder: the one given, else the best by OOF GAP among those with test logits."""
    if source:
        return Path(source)
    found = predictions.find_sources(roots)
    if not found:
        raise Yt8mError(
            f"no test predictions under {' or '.join(r + '/' for r in roots)}; train a model "
            f"(make train-all) or blend one (make ensemble) first, or name a folder with SRC=")
    return found[0][0]


def write_submission(source=None, output="submissions", sub_id=None, features="features",
                     level="frame", input_dir="input", gz=False, force=False,
                     competition="youtube8m-2018", top_k=video.TOP_K):
    """Write `<output>/<id>.csv[.gz]` and `<id>.json` from `source`'s test predictions.

    Returns (csv path, provenance dict, written: bool). A submission that exists and was made
    from the same predictions is left as it is; one made from an earlier version of the same
    source (rebuilt since) is replaced; one made from another source, or by hand, is only
    replaced with `force`.
    """
    source = choose_source(source)
    preds = predictions.load(source, "test")
    sub_id = sub_id or source.name
    path = Path(output) / f"{sub_id}.csv{'.gz' if gz else ''}"
    meta_path = Path(output) / f"{sub_id}.json"
    fingerprint = file_stamp(preds.path)
    current = existing_submission(path, meta_path, source, preds.path, force)
    if current:
        return path, current, False
    ids, num_classes = test_ids(features, level)
    logits = preds.logits if ids is None else preds.aligned_to(ids)
    ids = preds.ids if ids is None else ids
    if num_classes is not None and logits.shape[1] != num_classes:
        raise Yt8mError(f"{preds.path}: {logits.shape[1]} classes, the features have {num_classes}")
    rows = video.write(path, ids, logits, top_k=top_k, from_logits=True)
    report = video.check(path, test_ids=ids, classes=valid_classes(input_dir, logits.shape[1]),
                         top_k=min(top_k, logits.shape[1]))
    if not report.ok:
        path.unlink()
        raise Yt8mError("the written submission failed its own check:\n" + report.format(10))
    metrics = predictions.source_metrics(source)
    provenance = {
        "id": sub_id,
        "file": str(path),
        "source": str(source),
        "source_kind": source.parent.name.rstrip("s") or "folder",
        "config_hash": metrics.get("config_hash"),
        "oof": metrics.get("oof"),
        "rows": rows,
        "classes": int(logits.shape[1]),
        "top_k": top_k,
        "competition": competition,
        "predictions": fingerprint,
        "sha256": sha256(path),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "yt8m_version": __version__,
    }
    write_json(meta_path, provenance)
    return path, provenance, True


def resolve(sub, output="submissions"):
    """A submission file from an id (`submissions/<id>.csv[.gz]`) or a path."""
    candidates = [Path(sub), Path(output) / f"{sub}.csv", Path(output) / f"{sub}.csv.gz"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise Yt8mError(f"no submission {sub!r}: looked for {', '.join(map(str, candidates))}; "
                    f"write one with make submission")


def default_message(path):
    """A submission message from the provenance beside `path`."""
    meta = Path(str(path).removesuffix(".gz")).with_suffix(".json")
    if not meta.is_file():
        return f"{Path(path).name} (yt8m {__version__})"
    info = json.loads(meta.read_text())
    gap = (info.get("oof") or {}).get("gap")
    estimate = f", OOF GAP {gap:.5f}" if isinstance(gap, float) else ""
    return f"{info.get('source', path)}{estimate} (yt8m {__version__})"


def segment_ids_for_test(features="features", level="frame"):
    """Every test segment id of the cache (`<id>:<start>`), for 2019 submissions."""
    from ..features.cache import FeatureCache

    cache = FeatureCache(features, level)
    rows = cache.rows("test")
    return segments.segment_ids_of(cache.ids[rows], np.asarray(cache.num_frames)[rows])
