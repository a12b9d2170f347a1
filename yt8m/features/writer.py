"""Build the feature cache: every shard under `input/<level>/` converted once, then a manifest.

`features/<level>/manifest.json` is written last and only when every shard converted, so it always
describes a complete, consistent cache; a failed build leaves the previous manifest in place.
`features/folds.csv` is written just before it, so every labeled shard the manifest lists has a
fold (`FeatureCache` checks this).

With `delete_input` (`yt8m features --delete-input`) each source shard is deleted only after the
manifest and folds that list it are committed and its converted folder was read back against its
checksums; the folder's meta.json then says `source_deleted`, and later builds keep the shard
although its source is gone. A kill at any point therefore leaves every video either in a source
shard or in a verified, listed converted one.
"""

import collections
import concurrent.futures as cf
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

from yt8m import __version__
from yt8m.errors import InputError, Yt8mError
from yt8m.features.cache import MANIFEST, SPLIT_ORDER
from yt8m.features.convert import (
    CACHE_FORMAT,
    FEATURE_DIM,
    conversion_params,
    convert_task,
    is_current,
    mark_source_deleted,
    read_meta,
    same_conversion,
    verify_conversion,
)
from yt8m.features.folds import assign_folds
from yt8m.fileio import (
    die_with_parent,
    ensure_writable,
    output_lock,
    remove_stale_temporaries,
    write_json,
)
from yt8m.input.quantization import MAX_FRAMES
from yt8m.input.schema import (
    FRAME_FEATURES,
    LEVELS,
    VERSIONS,
    check_level,
    parse,
    record_version,
    split_of,
)
from yt8m.input.tfrecord import iter_records, read_first_record
from yt8m.input.vocabulary import read_vocabulary_size


class TooFewShardsForFolds(Yt8mError):
    """Fewer labeled shards than folds: a piece-by-piece download waits for the next piece."""


def list_shards(input_dir, level, cache_dir=None):
    """The `.tfrecord` shards under `input_dir/level/`, train first, then validate, then test.

    Given `cache_dir`, also the shards converted there whose source `--delete-input` deleted
    (their paths do not exist)."""
    folder = Path(input_dir) / level
    shards = sorted(folder.glob("*.tfrecord")) if folder.is_dir() else []
    if cache_dir is not None and Path(cache_dir).is_dir():
        present = {s.stem for s in shards}
        shards += [folder / f"{d.name}.tfrecord" for d in sorted(Path(cache_dir).iterdir())
                   if d.is_dir() and not d.name.startswith(".") and d.name not in present
                   and (read_meta(d) or {}).get("source_deleted")]
    if not shards:
        raise Yt8mError(
            f"no .tfrecord shards under {folder}/ (expected train*.tfrecord, validate*.tfrecord "
            f"and test*.tfrecord); run `make sample` for the sample competition or `make download` "
            f"for the real data")
    unnamed = [s for s in shards if split_of(s) is None]
    if unnamed:
        raise InputError(unnamed[0], "cannot tell its split from the file name; shards are named "
                                     "train*, validate* or test* as the dataset names them")
    return sorted(shards, key=lambda s: (SPLIT_ORDER.index(split_of(s)), s.name))


def _first_message(shard):
    """The first record of `shard`, parsed, reading only that record."""
    payload = read_first_record(shard)
    if payload is None:
        raise InputError(shard, "the file is empty (0 bytes); a YouTube-8M shard holds hundreds "
                                "of videos, re-download it")
    return parse(payload, shard, 0, 0)


def _first_intact_message(shard):
    """The first record of `shard` that is intact and parses, or None (an empty file, a text
    file, a gzip of something else)."""
    for index, offset, payload in iter_records(shard, skip_corrupt=True):
        try:
            return parse(payload, shard, index, offset)
        except InputError:
            continue
    return None


def detect(shards, level, skip_corrupt=False, deleted=None):
    """Check every shard's first record.

    `deleted` maps the shards whose source `--delete-input` deleted to their meta.json; their
    version is the one they were converted with.
    Returns the dataset version they share, the shards to convert and, with `skip_corrupt`, the
    files skipped for holding no intact record (`{"path", "problem"}` dicts).
    """
    versions, usable, unusable = {}, [], []
    for shard in shards:
        if deleted and shard in deleted:
            versions.setdefault(deleted[shard]["params"]["version"], shard)
            usable.append(shard)
            continue
        try:
            message = _first_message(shard)
        except InputError as e:
            if not skip_corrupt:
                raise
            message = _first_intact_message(shard)
            if message is None:
                unusable.append({"path": str(shard), "problem": f"{e} (no intact record in it)"})
                continue
        check_level(message, level, shard, 0)
        versions.setdefault(record_version(message, shard, 0).name, shard)
        usable.append(shard)
    if not usable:
        raise Yt8mError(f"none of the {len(shards)} shards holds an intact record, for example "
                        f"{unusable[0]['problem']}")
    if "2017" in versions and len(versions) > 1:
        other = next(v for v in versions if v != "2017")
        raise Yt8mError(f"input mixes dataset versions: {versions['2017']} is a 2017 (v1) shard "
                        f"('video_id' key) but {versions[other]} is a {other} shard ('id' key); "
                        f"keep one dataset version in input/")
    # 2019 segment-rated shards come with 2018-style train and test shards.
    version = "2019" if "2019" in versions else next(iter(versions))
    return version, usable, unusable


def build_features(input_dir="input", features_dir="features", level="frame", workers=None,
                   num_folds=None, fold_splits=("train", "validate"), max_frames=MAX_FRAMES,
                   skip_corrupt=False, progress=True, delete_input=False):
    """Convert new or changed shards, then write the fold assignment and the manifest.

    With `delete_input`, then delete each listed source shard whose conversion is verified (see
    the module docstring). One build at a time: a second one on the same `features_dir` fails at
    once, naming the first. Returns the manifest dict (`deleted_now`: sources deleted).
    `workers`: processes converting shards side by side, this one included (default: one per
    core, at most one per shard to convert); the cache is the same whatever their number.
    """
    if level not in LEVELS:
        raise Yt8mError(f"unknown level {level!r}; choose one of {list(LEVELS)}")
    input_dir, features_dir = Path(input_dir), Path(features_dir)
    shards = list_shards(input_dir, level, features_dir / level)
    ensure_writable(features_dir / level)
    ensure_writable(features_dir)  # folds.csv and the lock live here
    # On features/, not features/<level>/: builds of both levels write folds.csv.
    with output_lock(features_dir, f"yt8m features --level {level}"):
        manifest = _build(input_dir, features_dir, level, shards, workers, num_folds,
                          tuple(fold_splits), max_frames, skip_corrupt, progress)
        manifest["deleted_now"] = _delete_sources(features_dir / level, manifest) \
            if delete_input else 0
    _report(manifest, features_dir / level)
    return manifest


def _build(input_dir, features_dir, level, shards, workers, num_folds, fold_splits, max_frames,
           skip_corrupt, progress):
    from ..progress import progress_bar

    cache_dir = features_dir / level
    deleted = {s: read_meta(cache_dir / s.stem) for s in shards if not s.exists()}
    version, shards, unusable = detect(shards, level, skip_corrupt, deleted)
    num_classes = read_vocabulary_size(input_dir) or VERSIONS[version].num_classes
    remove_stale_temporaries(cache_dir)
    params = conversion_params(level, version, num_classes, max_frames)
    stuck = [s for s, meta in deleted.items() if not same_conversion(meta["params"], params)]
    if stuck:
        was = deleted[stuck[0]]["params"]
        raise Yt8mError(
            f"{cache_dir / stuck[0].stem}/ was converted with {was} but this build asks for "
            f"{params}, and its source {stuck[0]} was deleted (--delete-input), so it cannot be "
            f"converted again ({len(stuck)} such shards). Build with the settings it was "
            f"converted with (--max-frames, vocabulary.csv), or download its source again")
    todo = [(s, cache_dir / s.stem, params, skip_corrupt) for s in shards
            if not is_current(cache_dir / s.stem, s, params)]
    errors = []
    started = time.perf_counter()
    bar = progress_bar(total=len(todo), desc=f"features/{level}", unit="shard", progress=progress)
    workers = default_workers(len(todo)) if workers is None else workers
    try:
        results = _convert_all(todo, workers, done=lambda: bar.update(1))
    finally:
        bar.close()
    for source, _meta, error, problem in results:
        if error:
            errors.append(error)
        if problem:
            unusable.append({"path": source, "problem": problem})
    if errors:
        more = f"\n(and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise Yt8mError(f"{len(errors)} of {len(todo)} shards could not be converted; the cache "
                        f"manifest was left as it was:\n" + "\n".join(errors[:10]) + more)
    skipped = {u["path"] for u in unusable}
    shards = [s for s in shards if str(s) not in skipped]
    if not shards:
        raise Yt8mError(f"none of the shards under {input_dir / level}/ holds a usable record; "
                        f"for example {unusable[0]['problem']}")
    manifest = _manifest(cache_dir, shards, params, input_dir, fold_splits, unusable)
    # folds.csv first: if the manifest then cannot be written, the new shards have folds that
    # nothing uses yet (and keep them); the other order would leave cached videos in no fold.
    try:
        assign_folds(features_dir, [(s["name"], s["split"], s["labeled_videos"])
                                    for s in manifest["shards"]], num_folds, fold_splits)
    except Yt8mError as e:
        if "labeled shards for" in str(e):  # folds.assign_folds: fewer shards than folds
            raise TooFewShardsForFolds(str(e)) from None
        raise
    manifest = _write_manifest(cache_dir / MANIFEST, manifest)
    manifest["converted_now"] = len(todo)
    manifest["seconds"] = round(time.perf_counter() - started, 3)
    return manifest


def default_workers(shards):
    """Processes to convert `shards` shards with: one per core this process may run on, at most
    one per shard."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, shards))


def _convert_all(todo, workers, done):
    """`convert_task` of every task of `todo`, in its order; `done()` is called as each ends.

    With `workers` > 1 this process converts too, taking tasks from the end of the list, while
    `workers - 1` spawned processes take them from the front, one at a time and only once they
    are up: starting one takes about half a second (Python, numpy, protobuf), which this process
    spends converting instead of waiting for it. Results come back in `todo`'s order, so the
    order of the build's errors and skipped files does not depend on which process was first.
    """
    results = [None] * len(todo)
    if workers <= 1 or len(todo) <= 1:
        for i, task in enumerate(todo):
            results[i] = convert_task(task)
            done()
        return results
    pending = collections.deque(enumerate(todo))
    spawned = min(workers, len(todo)) - 1
    pool = cf.ProcessPoolExecutor(max_workers=spawned,
                                  mp_context=multiprocessing.get_context("spawn"),
                                  initializer=die_with_parent, initargs=(os.getpid(),))
    # First a trivial call into the conversion module (index None): it returns once the process
    # is up and has imported what converting takes, and only then is the process given a shard.
    running = {pool.submit(same_conversion, None, None): None for _ in range(spawned)}
    finished = False
    try:
        while pending or any(i is not None for i in running.values()):
            for future in [f for f in running if f.done()]:
                i = running.pop(future)
                if i is not None:
                    results[i] = future.result()
                    done()
                if pending:
                    i, task = pending.popleft()
                    running[pool.submit(convert_task, task)] = i
            if pending:
                i, task = pending.pop()
                results[i] = convert_task(task)
                done()
            elif running:
                cf.wait(running, return_when=cf.FIRST_COMPLETED)
        finished = True
    finally:
        # After an error, wait for the shards being converted (they write into the cache); when
        # all is done, do not wait for processes still starting up.
        pool.shutdown(wait=not finished, cancel_futures=True)
    return results


def _delete_source(path):
    """Delete one source shard (a function of its own: the crash tests kill the build here)."""
    os.unlink(path)


def _delete_sources(cache_dir, manifest):
    """Delete the source of every shard `manifest` lists (already committed, with folds.csv)
    whose converted folder verifies; return how many were deleted.

    meta.json is marked `source_deleted` before the unlink: a kill between the two leaves a
    source whose stamp still matches, which the next build treats as current.
    """
    deleted = 0
    for entry in manifest["shards"]:
        source = Path(entry["source"])
        if not source.exists():
            continue  # deleted by an earlier build
        verify_conversion(cache_dir / entry["name"], source)
        mark_source_deleted(cache_dir / entry["name"])
        try:
            _delete_source(source)
        except OSError as e:
            raise Yt8mError(f"{source}: cannot delete it ({e.strerror or e}); its conversion is "
                            f"verified and listed in {cache_dir / MANIFEST}. Make "
                            f"{source.parent}/ writable, or delete the file yourself") from None
        deleted += 1
    return deleted


def _report(manifest, cache_dir):
    """Print what the manifest records beyond the CLI's summary: files skipped whole, damage
    counted in bytes, videos without frames."""
    for skipped in manifest["skipped_files"]:
        print(f"warning: skipped (--skip-corrupt): {skipped['problem']}", file=sys.stderr)
    if manifest["skipped_bytes"]:
        shards = sum(1 for s in manifest["shards"] if s["skipped_bytes"])
        print(f"warning: {manifest['skipped_bytes']} damaged bytes in {shards} shards were "
              f"skipped, holding an unknown number of records (listed per shard in "
              f"{cache_dir}/<shard>/meta.json)", file=sys.stderr)
    if manifest["zero_frame_videos"]:
        print(f"note: {manifest['zero_frame_videos']} videos have no frames; they are kept (the "
              f"real test split has such videos) and their frames are all padding",
              file=sys.stderr)


def _zero_frame_videos(folder, meta):
    if "zero_frame_videos" in meta:
        return meta["zero_frame_videos"]
    if not (folder / "frame_offsets.npy").exists():  # a video-level shard
        return 0
    # converted before the count was recorded
    return int(np.count_nonzero(np.diff(np.load(folder / "frame_offsets.npy")) == 0))


def _manifest(cache_dir, shards, params, input_dir, fold_splits, skipped_files):
    entries, ids, owner = [], [], []
    for i, shard in enumerate(shards):
        folder = cache_dir / shard.stem
        meta = json.loads((folder / "meta.json").read_text())
        entries.append({
            "name": shard.stem, "split": split_of(shard), "source": str(shard),
            "videos": meta["videos"], "labeled_videos": meta["labeled_videos"],
            "frames": meta["frames"], "skipped_records": meta["skipped_records"],
            "skipped_bytes": meta.get("skipped_bytes", 0),
            "truncated_videos": meta["truncated_videos"],
            "zero_frame_videos": _zero_frame_videos(folder, meta),
            "crc32c": meta["source"]["crc32c"],
        })
        shard_ids = np.load(folder / "ids.npy")
        ids.append(shard_ids)
        owner.append(np.full(len(shard_ids), i))
    ids, owner = np.concatenate(ids), np.concatenate(owner)
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        a, b = order[dup[0]], order[dup[0] + 1]
        raise InputError(shards[owner[b]], f"video id '{ids[b]}' is also in {shards[owner[a]]}; "
                                           f"each video must appear in one shard only (were the "
                                           f"same files downloaded twice under other names?)")
    orphans = sorted({p.name for p in cache_dir.iterdir() if p.is_dir()
                      and not p.name.startswith(".")} - {s.stem for s in shards})
    totals = {}
    for e in entries:
        t = totals.setdefault(e["split"], {"shards": 0, "videos": 0, "labeled_videos": 0,
                                           "frames": 0})
        for key in ("videos", "labeled_videos", "frames"):
            t[key] += e[key]
        t["shards"] += 1
    return {
        "format": CACHE_FORMAT, "yt8m_version": __version__, **params,
        "feature_sizes": dict(FRAME_FEATURES), "feature_dim": FEATURE_DIM,
        "input": str(input_dir), "fold_splits": list(fold_splits), "shards": entries,
        "totals": totals,
        "skipped_records": sum(e["skipped_records"] for e in entries),
        "skipped_bytes": sum(e["skipped_bytes"] for e in entries),
        "skipped_files": skipped_files,
        "zero_frame_videos": sum(e["zero_frame_videos"] for e in entries),
        "orphaned_shards": orphans,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _write_manifest(path, manifest):
    if path.is_file():  # unchanged: keep the file, so that Make sees nothing new downstream
        old = json.loads(path.read_text())
        if {k: v for k, v in old.items() if k != "created"} == \
                {k: v for k, v in manifest.items() if k != "created"}:
            return old
    try:
        write_json(path, manifest)
    except OSError as e:
        raise Yt8mError(f"{path}: cannot write the cache manifest ({e.strerror or e}); the "
                        f"previous one was left in place, and folds.csv already holds the folds "
                        f"of the new shards (they keep them). Make {path.parent}/ writable or free "
                        f"space on it, then run the same command again") from None
    return manifest
