"""Build `submissions/<id>.csv` from a model's or ensemble's test predictions, with provenance."""

import datetime
import hashlib
import json
from pathlib import Path

import numpy as np

from .. import __version__, predictions
from ..errors import Yt8mError
from ..fileio import atomic_path, output_lock, write_json
from ..input.vocabulary import read_vocabulary_size
from . import segments, video_level
from .files import is_gzip, open_text


def test_ids(features="features", level=None):
    """The test split's video ids in cache order, or None when there is no cache. `level`
    None: the frame cache, else the video-level one."""
    from ..features.cache import FeatureCache

    for each in [level] if level else ["frame", "video"]:
        try:
            cache = FeatureCache(features, each)
        except Yt8mError:
            continue
        return cache.ids[cache.rows("test")], cache.num_classes
    return None, None


def valid_classes(input_dir="input", num_classes=None):
    """Label ids allowed in a submission: the vocabulary's, else 0..num_classes-1, else None."""
    size = read_vocabulary_size(input_dir)
    size = size if size is not None else num_classes
    return None if size is None else range(size)


def scored_segment_classes(input_dir="input", num_classes=1 << 31):
    """The 2019 scored classes from `input/segment_label_ids.csv` (None when absent)."""
    from ..features.segments import SCORED_CLASSES, scored_classes

    if not (Path(input_dir) / SCORED_CLASSES).is_file():
        return None
    return scored_classes(input_dir, num_classes).tolist()


def check_file(path, features="features", level=None, input_dir="input"):
    """Validate any submission, choosing the format from its header; returns a `Report`. A
    provenance `<id>.json` beside it that does not describe it is an error (`provenance`)."""
    provenance(path)
    if first_line(path) == segments.HEADER:
        try:
            known = segment_ids_for_test(features, level)
        except Yt8mError:
            known = None
        return segments.check(path, classes=scored_segment_classes(input_dir), segment_ids=known)
    ids, num_classes = test_ids(features, level)
    report = video_level.check(path, test_ids=ids, classes=valid_classes(input_dir, num_classes))
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
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_stamp(path):
    stat = Path(path).stat()
    return {"file": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def provenance_path(path):
    """The provenance `<id>.json` of a submission `<id>.csv[.gz]` or `<id>.results.json` (None
    for other names)."""
    name = Path(path).name
    for suffix in (".csv.gz", ".csv", ".results.json"):
        if name.endswith(suffix):
            return Path(path).with_name(name.removesuffix(suffix) + ".json")
    return None


def read_provenance(meta_path):
    """The provenance dict in `meta_path` ({} when there is none)."""
    if meta_path is None or not Path(meta_path).is_file():
        return {}
    try:
        return json.loads(Path(meta_path).read_text())
    except ValueError as e:
        raise Yt8mError(f"{meta_path}: not valid JSON ({e}); delete it and write the submission "
                        f"again") from None


def describes(info, path, digest=None):
    """Whether the provenance `info` records the file `path` as it is now (size and sha256)."""
    size = Path(path).stat().st_size
    return info.get("bytes", size) == size and info.get("sha256") == (digest or sha256(path))


def record_provenance(meta_path, info, tmp, path):
    """Write `info` to `meta_path` for the file finished at `tmp`, before the caller moves it onto
    `path`; returns it with the new file's size and sha256 and the sha256 of the file it replaces.

    A write stopped between the two renames leaves the old file beside a provenance that does not
    describe it: readers refuse the pair (`provenance`) and the next write rebuilds both
    (`existing_submission`)."""
    info = dict(info, bytes=Path(tmp).stat().st_size, sha256=sha256(tmp),
                replaces_sha256=sha256(path) if Path(path).is_file() else None)
    write_json(meta_path, info)
    return info


def provenance(path):
    """The provenance beside the submission `path` ({} when there is none); an error naming both
    files when it does not describe `path` as it is."""
    meta_path = provenance_path(path)
    info = read_provenance(meta_path)
    if info and Path(path).is_file() and not describes(info, path):
        raise Yt8mError(
            f"{meta_path} does not describe {path} (another size or sha256: a submission write "
            f"stopped between the two files, or {Path(path).name} was edited since); run `yt8m "
            f"submission write --source {info.get('source')} --id {info.get('id')}` to rebuild "
            f"both, or delete {meta_path} to use the file as it is")
    return info


def existing_submission(path, meta_path, source, predictions_path, force=False):
    """The provenance of `path` when it is already up to date with `predictions_path`, else None
    (write it). A file made from an earlier version of the same source may be replaced, and so
    may the old file a write that stopped between the file and its provenance left; one made
    from another source, or edited by hand, is an error unless `force`."""
    if not path.exists() or force:
        return None
    old = read_provenance(meta_path)
    digest = sha256(path)
    if describes(old, path, digest):
        if old.get("predictions") == file_stamp(predictions_path):
            return old
        if old.get("source") == str(source):
            return None
        raise Yt8mError(f"{path} already exists and was made from {old.get('source')}, not "
                        f"{predictions_path}; pass --force (FORCE=1) to replace it or choose "
                        f"another id")
    if old.get("replaces_sha256") == digest:  # a write stopped between its two renames
        return None
    raise Yt8mError(f"{path} already exists and {meta_path} does not describe it (edited by "
                    f"hand, or not written by yt8m); pass --force (FORCE=1) to replace it or "
                    f"choose another id")


def choose_source(source=None, roots=("ensembles", "models")):
    """The source folder: the one given, else the best by OOF GAP among those with test logits.

    A distilled student's OOF score flatters it (its teacher's OOF rows of the other folds come
    from models that saw the held-out fold's labels), so a student is chosen only when no other
    source has test logits; name it with `source` to submit it anyway."""
    if source:
        return Path(source)
    found = predictions.find_sources(roots)
    if not found:
        raise Yt8mError(
            f"no test predictions under {' or '.join(r + '/' for r in roots)}; train a model "
            f"(make train-all) or blend one (make ensemble) first, or name a folder with SRC=")
    comparable = [item for item in found if not item[1].get("teacher")]
    return (comparable or found)[0][0]


def write_submission(source=None, output="submissions", sub_id=None, features="features",
                     level=None, input_dir="input", gz=False, force=False,
                     competition="youtube8m-2018", top_k=video_level.TOP_K,
                     roots=("ensembles", "models")):
    """Write `<output>/<id>.csv[.gz]` and `<id>.json` from `source`'s test predictions.

    Returns (csv path, provenance dict, written: bool). A submission that exists and was made
    from the same predictions is left as it is; one made from an earlier version of the same
    source (rebuilt since) is replaced; one made from another source, or by hand, is only
    replaced with `force`.
    """
    from .kaggle import COMPETITIONS

    if COMPETITIONS.get(competition) == "segments":
        return write_segment_submission(source, output, sub_id, features, input_dir, gz, force,
                                        competition, roots)
    source = choose_source(source, roots)
    sub_id = sub_id or source.name
    path = Path(output) / f"{sub_id}.csv{'.gz' if gz else ''}"
    meta_path = Path(output) / f"{sub_id}.json"
    with output_lock(output, f"yt8m submission write {sub_id}"):  # one writer per folder
        preds = predictions.load(source, "test")
        fingerprint = file_stamp(preds.path)
        current = existing_submission(path, meta_path, source, preds.path, force)
        if current:
            return path, current, False
        level = level or predictions.source_metrics(source).get("level")
        ids, num_classes = test_ids(features, level)
        logits = preds.logits if ids is None else aligned_rows(preds, ids)
        ids = preds.ids if ids is None else ids
        if num_classes is not None and logits.shape[1] != num_classes:
            raise Yt8mError(f"{preds.path}: {logits.shape[1]} classes, the features have "
                            f"{num_classes}")
        # the CSV is checked at a temporary path, then <id>.json goes first and the CSV after
        # it (`record_provenance`)
        with atomic_path(path, ".tmp.gz" if gz else ".tmp") as tmp:
            rows = video_level.write(tmp, ids, logits, top_k=top_k, from_logits=True)
            report = video_level.check(tmp, test_ids=ids,
                                 classes=valid_classes(input_dir, logits.shape[1]),
                                 top_k=min(top_k, logits.shape[1]))
            if not report.ok:
                report.path = path
                raise Yt8mError("the written submission failed its own check:\n" +
                                report.format(10))
            metrics = predictions.source_metrics(source)
            info = record_provenance(meta_path, {
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
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "yt8m_version": __version__,
            }, tmp, path)
    return path, info, True


class RowView:
    """Rows `index` of a (memory-mapped) array, read only when sliced: `view[a:b]` is
    `array[index[a:b]]`, so a reordered copy of the whole array (8.5 GB of float16 logits at
    1.1M test videos) is never made."""

    def __init__(self, array, index):
        self.array, self.index = array, index
        self.shape = (len(index), *array.shape[1:])

    def __len__(self):
        return len(self.index)

    def __getitem__(self, rows):
        return self.array[self.index[rows]]


def aligned_rows(preds, ids):
    """`preds.logits` in the order of `ids` as a `RowView`, with `aligned_to`'s errors."""
    # aligned_to on a column of row numbers gives the order without touching the logits
    rows = predictions.Predictions(preds.ids, np.arange(len(preds))[:, None], preds.path)
    return RowView(preds.logits, rows.aligned_to(ids)[:, 0])


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
    info = provenance(path)
    if not info:
        return f"{Path(path).name} (yt8m {__version__})"
    oof = info.get("oof") or {}
    gap = oof.get("gap")
    estimate = f", OOF GAP {gap:.5f}" if isinstance(gap, float) else ""
    if info.get("source_kind") == "segments" and isinstance(oof.get("map"), float):
        estimate = f", OOF MAP@100000 {oof['map']:.5f}"
    return f"{info.get('source', path)}{estimate} (yt8m {__version__})"


def segment_ids_for_test(features="features", level=None):
    """Every test segment id of the cache (`<id>:<start>`), for 2019 submissions."""
    from ..features.cache import FeatureCache
    from ..features.segments import segment_ids

    cache = FeatureCache(features, level or "frame")
    return segment_ids(cache, cache.rows("test"))


def segment_source(source=None, roots=("ensembles", "models")):
    """The folder of 2019 segment scores: `<source>/segments` (or `source` itself), else the
    best by out-of-fold MAP among `<root>/<id>/segments/`."""
    from ..features.segments import FOLDER

    if source:
        for folder in (Path(source) / FOLDER, Path(source)):
            if predictions.exists(folder, "test") and (folder / "metrics.json").is_file():
                return folder
        raise Yt8mError(f"{source} holds no segment scores ({FOLDER}/test_logits.npy and "
                        f"metrics.json); run `yt8m segments` for its spec first")
    found = []
    for root in roots:
        for folder in sorted(Path(root).glob(f"*/{FOLDER}")):
            if predictions.exists(folder, "test") and (folder / "metrics.json").is_file():
                found.append((predictions.source_metrics(folder)["oof"]["map"], str(folder)))
    if not found:
        raise Yt8mError(f"no segment scores under {' or '.join(r + '/' for r in roots)}; give "
                        f"a frame-level spec a `segments:` section and run `make segments "
                        f"MODEL=<id>` first, or name a folder with SRC=")
    return Path(max(found)[1])


def write_segment_submission(source=None, output="submissions", sub_id=None,
                             features="features", input_dir="input", gz=False, force=False,
                             competition="youtube8m-2019", roots=("ensembles", "models")):
    """Write `<output>/<id>.csv[.gz]` (`Class,Segments`) and `<id>.json` from a source's test
    segment scores; (csv path, provenance, written) as `write_submission`."""
    folder = segment_source(source, roots)
    sub_id = sub_id or f"{folder.parent.name}_segments"
    path = Path(output) / f"{sub_id}.csv{'.gz' if gz else ''}"
    meta_path = Path(output) / f"{sub_id}.json"
    with output_lock(output, f"yt8m submission write {sub_id}"):
        preds = predictions.load(folder, "test")
        current = existing_submission(path, meta_path, folder, preds.path, force)
        if current:
            return path, current, False
        metrics = predictions.source_metrics(folder)
        classes = metrics["scored_classes"]
        known = segment_ids_for_test(features)
        if len(known) != len(preds.ids) or not np.array_equal(np.asarray(preds.ids), known):
            raise Yt8mError(f"{preds.path}: its {len(preds.ids)} segments are not the "
                            f"{len(known)} test segments of {features}/ in order; run `yt8m "
                            f"segments` again after the cache changed")
        with atomic_path(path, ".tmp.gz" if gz else ".tmp") as tmp:
            rows = segments.write(tmp, known, preds.logits, classes)
            report = segments.check(tmp, classes=scored_segment_classes(input_dir) or classes,
                                    segment_ids=known)
            if not report.ok:
                report.path = path
                raise Yt8mError("the written submission failed its own check:\n" +
                                report.format(10))
            info = record_provenance(meta_path, {
                "id": sub_id, "file": str(path), "source": str(folder),
                "source_kind": "segments", "config_hash": metrics.get("config_hash"),
                "oof": metrics.get("oof"), "rows": rows, "classes": len(classes),
                "segments": int(len(known)), "competition": competition,
                "predictions": file_stamp(preds.path),
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "yt8m_version": __version__,
            }, tmp, path)
    return path, info, True
