"""Stored predictions: logits aligned to the feature cache's rows, ids beside them.

A model or ensemble folder (`models/<id>/`, `ensembles/<id>/`) holds, per part, either the dense
form

    <part>_logits.npy         (videos, classes) float16 logits, memory-mapped on load
    <part>_ids.npy            (videos,) video ids, same order

or the compact top-k form (a model spec's `predictions: {top_k: K}`, or `compact`), about
2K/classes of the size:

    <part>_topk_logits.npy    (videos, K) float16 (float32 for a fold's parts, which are
                              scored): each video's K highest logits, best first
    <part>_topk_classes.npy   (videos, K) int16/int32: their classes
    <part>_floor.npy          (videos,) the value every other class reads as: the video's
                              (K+1)-th highest logit, or just below the K-th where they tie,
                              so that no class outside the kept ones outranks or ties a kept
                              one (of tied classes, the lowest ids are kept)
    <part>_topk.json          {"num_classes", "top_k"}
    <part>_ids.npy

`load` reads either; the top-k form's `.logits` is a `TopKLogits`, which gives dense float32 rows
for any row selection, so every reader that works chunk by chunk reads both alike; `compact`
(`yt8m compact`) rewrites a trained folder's dense parts in the top-k form. `part` is
`oof` (out-of-fold rows of the labeled folds) or `test`. `metrics.json` beside them carries the
source's scores (`{"oof": {"gap": ...}, "config_hash": ...}`).
"""

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import Yt8mError
from .fileio import atomic_path, output_lock, write_json

# Rows per chunk where predictions are streamed: 16 MB of float32 (32 MB of float64) at 3862
# classes. 8192 rows made a training run's test mean peak near 1 GB (a few float64 copies of a
# chunk), for no measurable speed-up.
CHUNK_ROWS = 1024
# GAP@20 and the submission read a video's 20 best classes: a top-k store needs at least those.
MIN_TOP_K = 20


def locate(ids, among):
    """The index of each of `ids` in the array `among` (-1 where absent), found by sorting
    rather than through a dict of Python strings (a few bytes per video, not a few hundred)."""
    ids, among = np.asarray(ids), np.asarray(among)
    if not len(among):
        return np.full(len(ids), -1)
    order = np.argsort(among, kind="stable")
    found = order[np.searchsorted(among, ids, sorter=order).clip(max=len(among) - 1)]
    return np.where(among[found] == ids, found, -1)


@dataclass
class Predictions:
    ids: np.ndarray
    logits: np.ndarray
    path: Path

    def __len__(self):
        return len(self.ids)

    def aligned_to(self, ids):
        """Logits reordered to `ids`; an error names missing and unexpected ids."""
        ids = np.asarray(ids)
        if len(ids) == len(self.ids) and np.array_equal(ids, self.ids):
            return self.logits
        at = locate(ids, self.ids)
        missing = ids[at < 0]
        present = np.zeros(len(self.ids), bool)
        present[at[at >= 0]] = True
        extra = np.sort(self.ids[~present])
        if len(missing) or len(extra):
            raise Yt8mError(
                f"{self.path}: predictions do not cover the expected videos: {len(missing)} "
                f"missing (e.g. {', '.join(missing[:3].tolist()) or '-'}), {len(extra)} "
                f"unexpected (e.g. {', '.join(extra[:3].tolist()) or '-'}); rebuild them "
                f"against the current features")
        return self.logits[at]


class TopKLogits:
    """(videos, classes) logits stored as each row's top K plus a floor, read as dense float32
    rows: `logits[rows]` for a slice, an index array or an int; `len`, `shape`, `dtype`."""

    def __init__(self, values, classes, floor, num_classes):
        self.values, self.classes, self.floor = values, classes, floor
        self.shape = (len(floor), int(num_classes))
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        if isinstance(rows, tuple):
            rows, columns = rows
            return self[rows][:, columns] if np.ndim(rows) else self[rows][columns]
        if np.isscalar(rows):
            return self[np.array([rows])][0]
        floor = np.asarray(self.floor[rows], np.float32)
        out = np.repeat(floor[:, None], self.shape[1], axis=1)
        np.put_along_axis(out, np.asarray(self.classes[rows], np.int64),
                          np.asarray(self.values[rows], np.float32), axis=1)
        return out

    def __array__(self, dtype=None, copy=None):
        dense = self[slice(None)]
        return dense if dtype is None else dense.astype(dtype)


def paths(directory, part, top_k=False):
    """The files of one part: (logits, ids), or (values, classes, floor, ids) with `top_k`."""
    directory = Path(directory)
    if top_k:
        return (*(directory / f"{part}_{name}.npy" for name in ("topk_logits", "topk_classes",
                                                                "floor")),
                directory / f"{part}_topk.json", directory / f"{part}_ids.npy")
    return directory / f"{part}_logits.npy", directory / f"{part}_ids.npy"


def exists(directory, part):
    """Whether `directory` holds `part` predictions, in either form."""
    return bool(files(directory, part))


def files(directory, part):
    """The files of `part` in the form `directory` holds it (empty when it holds neither)."""
    for top_k in (False, True):
        found = paths(directory, part, top_k)
        if all(p.is_file() for p in found):
            return found
    return ()


class _TopKWriter:
    """Item assignment of dense float32 rows, stored as top-k values, classes and floor."""

    def __init__(self, values, classes, floor):
        self.values, self.classes, self.floor = values, classes, floor
        self.k = values.shape[1]
        self.shape = (len(floor), None)

    def __len__(self):
        return len(self.floor)

    def __setitem__(self, rows, block):
        # chosen in the stored precision, so the ties are those a reader will see
        k, stored = self.k, self.values.dtype.type
        block = np.asarray(block).astype(stored, copy=False).astype(np.float32, copy=False)
        if block.shape[1] > k:  # the K+1 highest, unordered, then the K best sorted
            part = np.argpartition(-block, k, axis=1)[:, :k + 1]
        else:
            part = np.broadcast_to(np.arange(block.shape[1]), block.shape).copy()
        top = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((part, -top), axis=1)  # best first, lower class id on ties
        part, top = np.take_along_axis(part, order, 1), np.take_along_axis(top, order, 1)
        floor = np.float32(-np.inf)
        if block.shape[1] > k:
            kth, after = top[:, k - 1], top[:, k]
            # a tie across the K-th place: argpartition kept any of the tied classes; keep the
            # lowest ids, as the metrics rank ties
            tied = np.flatnonzero(after == kth)
            if len(tied):
                sub, value = block[tied], kth[tied, None]
                above, equal = sub > value, sub == value
                need = k - above.sum(axis=1, keepdims=True)
                keep = above | (equal & (np.cumsum(equal, axis=1) <= need))
                best = np.nonzero(keep)[1].reshape(len(tied), k)
                values = np.take_along_axis(sub, best, 1)
                order = np.lexsort((best, -values), axis=1)
                part[tied, :k] = np.take_along_axis(best, order, 1)
                top[tied, :k] = np.take_along_axis(values, order, 1)
            # strictly below every kept value: a class read at the floor never ties a kept one
            floor = np.where(after < kth, after.astype(stored),
                             np.nextafter(kth.astype(stored), stored(-np.inf)))
        self.values[rows] = top[:, :k]
        self.classes[rows] = part[:, :k]
        self.floor[rows] = floor


def _remove_other_form(directory, part, top_k):
    for path in paths(directory, part, not top_k)[:-1]:  # never the ids, which both share
        path.unlink(missing_ok=True)


def save(directory, part, ids, logits, dtype=np.float16):
    """Write one part as float16 logits plus ids (each file atomically, ids last).

    `dtype=np.float32` keeps full precision for intermediate parts that are scored later.
    """
    ids = np.asarray(ids).astype(str)
    logits = np.asarray(logits)
    if logits.ndim != 2 or len(logits) != len(ids):
        raise Yt8mError(f"{len(ids)} ids for logits of shape {logits.shape}")
    if len(set(ids.tolist())) != len(ids):
        raise Yt8mError(f"{part} predictions repeat video ids")
    logits_path, ids_path = paths(directory, part)
    for path, array in ((logits_path, logits.astype(dtype)), (ids_path, ids)):
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, array)
    _remove_other_form(directory, part, top_k=False)


@contextlib.contextmanager
def writer(directory, part, ids, num_classes, dtype=np.float16, top_k=None):
    """Yield a (len(ids), num_classes) array to fill at its final rows, in row blocks of float32
    logits; on success it becomes the part's files (flushed, renamed, the ids last), like `save`.

    Dense: a memory-mapped `<part>_logits.npy` of `dtype`. `top_k`: each assigned block is
    reduced to its rows' top K and floor (the top-k form, values and floor of `dtype`). Memory
    stays that of a block: the files live in the page cache, not in the process.
    """
    ids = np.asarray(ids).astype(str)
    if len(np.unique(ids)) != len(ids):
        raise Yt8mError(f"{part} predictions repeat video ids")
    n = len(ids)
    targets = paths(directory, part, bool(top_k))
    if top_k:
        k = min(int(top_k), num_classes - 1)
        class_dtype = np.int16 if num_classes <= np.iinfo(np.int16).max else np.int32
        shapes = [((n, k), dtype), ((n, k), class_dtype), ((n,), dtype)]
    else:
        shapes = [((n, num_classes), dtype)]
    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_path(path, suffix=".npy"))
                       for path in targets if path.suffix == ".npy" and path != targets[-1]]
        arrays = [np.lib.format.open_memmap(tmp, mode="w+", dtype=d, shape=shape)
                  for tmp, (shape, d) in zip(temporaries, shapes)]
        yield _TopKWriter(*arrays) if top_k else arrays[0]
        for array, tmp in zip(arrays, temporaries):
            array.flush()
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        del arrays
    if top_k:
        write_json(targets[3], {"num_classes": int(num_classes), "top_k": k})
    with atomic_path(targets[-1]) as tmp, open(tmp, "wb") as f:
        np.save(f, ids)
    _remove_other_form(directory, part, bool(top_k))


def chunks(n, size=CHUNK_ROWS):
    """Row slices of `size` covering range(n)."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def load(directory, part):
    """Read one part, dense or top-k (memory-mapped); errors say what is missing or
    inconsistent."""
    logits_path, ids_path = paths(directory, part)
    if not logits_path.is_file() and all(p.is_file() for p in paths(directory, part, True)):
        return _load_top_k(directory, part)
    for path in (logits_path, ids_path):
        if not path.is_file():
            raise Yt8mError(f"{path}: no {part} predictions here; train or blend this source first")
    ids = _read(ids_path, directory)
    logits = _read(logits_path, directory, mmap_mode="r")
    if logits.ndim != 2 or len(logits) != len(ids):
        raise Yt8mError(
            f"{logits_path}: shape {logits.shape} does not match the {len(ids)} ids in {ids_path}"
        )
    return Predictions(ids=ids, logits=logits, path=logits_path)


def _load_top_k(directory, part):
    values_path, classes_path, floor_path, meta_path, ids_path = paths(directory, part, True)
    ids = _read(ids_path, directory)
    values, classes, floor = (_read(p, directory, mmap_mode="r")
                              for p in (values_path, classes_path, floor_path))
    if not (len(values) == len(classes) == len(floor) == len(ids)) or \
            values.shape != classes.shape:
        raise Yt8mError(f"{values_path}: the top-k files of {part} disagree in shape with each "
                        f"other or with the {len(ids)} ids in {ids_path}; write them again")
    try:
        num_classes = int(json.loads(meta_path.read_text())["num_classes"])
    except (ValueError, KeyError, TypeError) as e:
        raise Yt8mError(f"{meta_path}: unreadable ({e}); retrain or re-blend {directory} to "
                        f"write it again") from None
    return Predictions(ids=ids, logits=TopKLogits(values, classes, floor, num_classes),
                       path=values_path)


def _read(path, directory, **kwargs):
    """np.load, with a damaged or truncated file (numpy's errors name none) named."""
    try:
        return np.load(path, **kwargs)
    except (ValueError, EOFError, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:  # permissions and the like
            raise
        raise Yt8mError(f"{path}: truncated or damaged ({e}); retrain or re-blend {directory} "
                        f"to write it again") from None


def compact(directory, top_k, parts=("oof", "test")):
    """Rewrite a model's or ensemble's predictions in the top-k form; returns
    {"before": bytes, "after": bytes, "rewritten": [(folder, part), ...]}.

    The parts of `directory` and of its `fold_<k>/` subfolders (read only when the folds are
    assembled again, and the bulk of a model's disk) are streamed chunk by chunk through `writer`,
    each in its own precision, under the folder's `output_lock`. A kill at any moment leaves
    every part readable in one form or the other, and a rerun finishes the job. A top-k part is
    kept when it holds `top_k` classes, rewritten when it holds more, and refused when it holds
    fewer (the others are gone). With `top_k` >= 20, every metric that reads at most a video's
    top 20 (GAP@20, Hit@1, mAP; PERR for videos of at most `top_k` labels) is what the dense
    part gives, to the last bit.

    A model's `metrics.json` records the new form as `predictions.top_k`, keeping the form its
    spec asked for as `compacted_from`, so that `yt8m train` of the unchanged spec leaves the
    compacted files alone. Its time stamp is kept: the scores it records are unchanged, so Make
    does not rebuild what was blended from it.
    """
    directory, top_k = Path(directory), int(top_k)
    if not directory.is_dir():
        raise Yt8mError(f"{directory}: no such folder; name a models/<id> or ensembles/<id> "
                        f"folder that holds predictions")
    if top_k < MIN_TOP_K:
        raise Yt8mError(f"--top-k {top_k}: keep at least {MIN_TOP_K} classes per video (GAP@20 "
                        f"and a submission read a video's top 20)")
    folders = [directory, *sorted(p for p in directory.glob("fold_*") if p.is_dir())]
    with output_lock(directory, f"yt8m compact {directory}"):
        for folder in folders:
            for part in parts:
                _remove_temporaries(folder, part)
        found = [(folder, part) for folder in folders for part in parts if exists(folder, part)]
        if not any(folder == directory for folder, _ in found):
            raise Yt8mError(f"{directory}: no {' or '.join(parts)} predictions here; train or "
                            f"blend it first")
        todo = [(folder, part) for folder, part in found if _needs_compacting(folder, part, top_k)]
        before = sum(p.stat().st_size for f, part in found for p in files(f, part))
        for folder, part in todo:
            source = load(folder, part)
            logits = source.logits
            dtype = logits.values.dtype if isinstance(logits, TopKLogits) else logits.dtype
            with writer(folder, part, source.ids, logits.shape[1], dtype, top_k) as out:
                for chunk in chunks(len(source), 1024):  # a few float32 copies of each chunk
                    out[chunk] = logits[chunk]
        after = sum(p.stat().st_size for f, part in found for p in files(f, part))
        _record_form(directory, top_k)
    return {"before": before, "after": after, "rewritten": todo}


def _needs_compacting(folder, part, top_k):
    """Whether `part` must be rewritten to hold `top_k` classes; an error when it holds fewer."""
    stored = load(folder, part).logits
    if not isinstance(stored, TopKLogits):
        return True
    kept, wanted = stored.values.shape[1], min(top_k, stored.shape[1] - 1)
    if kept < wanted:
        raise Yt8mError(f"{folder}: its {part} predictions keep only each video's top {kept} "
                        f"classes; the others are gone, so it cannot be compacted to {top_k} "
                        f"(use --top-k {kept} or less, or train it again)")
    return kept > wanted


def _remove_temporaries(folder, part):
    """Delete the temporaries a killed writer of `part` left in `folder` (the caller holds the
    folder's lock, so no writer is running)."""
    for path in {*paths(folder, part), *paths(folder, part, top_k=True)}:
        for leftover in path.parent.glob(f".{path.name}.*"):
            leftover.unlink(missing_ok=True)


def _record_form(directory, top_k):
    path = Path(directory) / "metrics.json"
    metrics = source_metrics(directory)
    store = metrics.get("predictions")
    if not isinstance(store, dict) or store.get("top_k") == top_k:
        return
    stat = path.stat()
    metrics["predictions"] = {**store, "top_k": top_k,
                              "compacted_from": store.get("compacted_from", store.get("top_k"))}
    write_json(path, metrics)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def non_finite_rows(logits, chunk_rows=4096):
    """How many rows of `logits` hold a NaN or an infinity, read `chunk_rows` rows at a time (a
    memory-mapped array is never loaded whole)."""
    return sum(int((~np.isfinite(logits[start:start + chunk_rows])).any(axis=1).sum())
               for start in range(0, len(logits), chunk_rows))


def source_metrics(directory):
    """The source's metrics.json as a dict ({} when there is none)."""
    path = Path(directory) / "metrics.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise Yt8mError(f"{path}: not valid JSON ({e})") from None


def find_sources(roots=("ensembles", "models")):
    """(folder, metrics.json dict) of the folders under `roots` holding test predictions, best
    OOF GAP first (unscored last)."""
    found = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if exists(folder, "test"):
                found.append((folder, source_metrics(folder)))

    def gap(item):
        return (item[1].get("oof") or {}).get("gap")

    found.sort(key=lambda item: (gap(item) is None, -(gap(item) or 0.0)))
    return found
